"""Turn evidence and a decision into a Slack message (Block Kit plus a plain-text fallback).

The message is the product's face: one alert per failed run, read on a phone, so it leads with the
verdict in plain words ("Retrying in 2 min: 3 models hit a Snowflake lock conflict") and keeps the
policy detail (``Decision.reason``) and the failed nodes below it.

Blocks are built with slack-sdk's block models, which validate their own limits, and the renderer
stays within Slack's (50 blocks, 3,000 characters per section, 150 per header) by truncating with
"…and N more" instead of failing a post: an alert that cannot be posted is worse than a short one.

Escaping. Slack reads ``&``, ``<`` and ``>`` as control characters in mrkdwn text objects and in the
top-level ``text`` (``<!channel>``, ``<@U123>``, ``<https://…|label>``), so every piece of text taken
from a webhook (schedule, branch, commands), a log or an artifact (node names, owners, messages,
excerpts, notes, the adapter) goes through ``escape`` (``&amp;``, ``&lt;``, ``&gt;``, Slack's rules:
https://api.slack.com/reference/surfaces/formatting#escaping) when it is put into mrkdwn; the
mentions (``<@U…>``, ``<!subteam^S…>``) and run links this module builds itself are not. The functions
that compose sentences (``verdict_line``, ``describe_failures``) return raw text, escaped once where
it is rendered, so a sentence handed back through ``status_override`` is not escaped twice.
Texts from callers that already hold run links (``simple_message``) keep exactly those links.
Header blocks are ``plain_text``, which Slack does not parse for mentions or links (and shows
entities literally), so the schedule name goes there unescaped. Lone surrogates, which no JSON
encoder can turn into UTF-8, become U+FFFD in every string of a message.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from triage.artifacts import scalar_text
from triage.models import Decision, Evidence, Failure, Reason

if TYPE_CHECKING:
    from triage.history import NodeHistory

RUN_LINK = "https://app.paradime.io/bolt/run_id/{run_id}"
MAX_BLOCKS = 50
MAX_SECTION = 2900  # below Slack's 3,000 so an appended "…and N more" still fits
MAX_CONTEXT = 2000  # a context element is small print; Slack allows 3,000
MAX_HEADER = 150
MAX_TEXT = 3000  # the fallback is a notification line; Slack allows 40,000
MAX_CATEGORIES = 10  # sections of failed nodes; more would not be read on a phone
MAX_NODES_PER_CATEGORY = 5
MAX_EXCERPT = 280
MAX_INCIDENT_RUNS = 30

EMOJI = {
    "retrying": ":repeat:",
    "not_retried": ":no_entry:",
    "recovered": ":white_check_mark:",
    "gave_up": ":x:",
    "unknown": ":warning:",
    "needs_human": ":warning:",
    "error": ":warning:",
    "info": ":information_source:",
    "incident": ":rotating_light:",
}

#: How people write the warehouse a dbt adapter talks to.
WAREHOUSES = {
    "snowflake": "Snowflake", "bigquery": "BigQuery", "databricks": "Databricks", "spark": "Spark",
    "postgres": "Postgres", "redshift": "Redshift", "duckdb": "DuckDB", "trino": "Trino", "athena": "Athena",
    "starburst": "Starburst", "sqlserver": "SQL Server", "fabric": "Fabric", "synapse": "Synapse",
    "mysql": "MySQL", "clickhouse": "ClickHouse", "oracle": "Oracle", "teradata": "Teradata",
}

# What a group of failures did, after a subject such as "3 models" or "`dbt deps"`: (singular, plural).
# {wh} is the warehouse as a noun ("Snowflake" / "the warehouse"), {kind} as an adjective ("Snowflake" /
# "warehouse") and {a} its article. resource_limit is in both directions: a busy warehouse may pass,
# a quota or out-of-memory will not.
TRANSIENT_PHRASES = {
    "connection": ("could not reach {wh}", "could not reach {wh}"),
    "timeout": ("timed out in {wh}", "timed out in {wh}"),
    "lock_conflict": ("hit {a} {kind} lock conflict", "hit {a} {kind} lock conflict"),
    "rate_limit": ("hit {a} {kind} rate limit", "hit {a} {kind} rate limit"),
    "warehouse_unavailable": ("failed because {wh} was unavailable", "failed because {wh} was unavailable"),
    "auth_expired": ("failed because the {kind} session expired", "failed because the {kind} session expired"),
    "internal_error": ("hit an internal {kind} error", "hit an internal {kind} error"),
    "resource_limit": ("found {wh} at capacity", "found {wh} at capacity"),
}
DETERMINISTIC_PHRASES = {
    "sql_error": ("has a SQL error", "have SQL errors"),
    "missing_object": ("references a missing table or view", "reference a missing table or view"),
    "permission": ("was denied access", "were denied access"),
    "data_test": ("failed", "failed"),
    "compilation": ("failed to compile", "failed to compile"),
    "contract": ("breaks its model contract", "break their model contracts"),
    "resource_limit": ("exceeded {a} {kind} resource limit", "exceeded {a} {kind} resource limit"),
    "config": ("has a configuration error", "have configuration errors"),
    "dependency": ("could not resolve the dbt packages", "could not resolve the dbt packages"),
}
UNKNOWN_PHRASES = {
    "unknown": ("failed with an error no rule recognises", "failed with errors no rule recognises"),
}
PHRASES = {"transient": TRANSIENT_PHRASES, "conditional": TRANSIENT_PHRASES, "deterministic": DETERMINISTIC_PHRASES,
           "unknown": UNKNOWN_PHRASES}

#: The far end of an infrastructure command, named instead of the warehouse.
INFRA_TARGETS = {"dbt deps": ("the package hub", "package hub"), "git clone": ("the git host", "git host")}

NOUNS = {"model": "model", "test": "test", "seed": "seed", "snapshot": "snapshot", "unit_test": "unit test",
         "source": "source", "operation": "hook", "function": "function"}

#: Failures that decide the verdict come first in the message.
VERDICT_ORDER = {"deterministic": 0, "unknown": 1, "conditional": 2, "transient": 3}

#: Decisions where history (not the message) stopped the retry: the headline says what repeated.
HISTORY_REASONS = {
    Reason.SAME_ERROR_HISTORY: "{detail}",
    Reason.FAILED_SAME_ON_RETRY: "failed the same way on retry: likely not transient",
    Reason.REPEATED_PREVIOUS_RUN: "failed the same way in the previous run of the schedule",
    Reason.LIMIT_REPEATED: "hit its configured limit ({detail}) again, as in the previous run",
}

INCIDENT_NOUNS = {
    "connection": "connection failures", "timeout": "timeouts", "lock_conflict": "lock conflicts",
    "rate_limit": "rate limits", "warehouse_unavailable": "outages", "auth_expired": "expired sessions",
    "internal_error": "internal errors", "resource_limit": "capacity limits",
}
STATUS_WORDS = {"recovered": "recovered", "retrying": "retrying", "gave_up": "gave up",
                "not_retried": "not retried", "unknown": "unknown",
                "needs_human": "needs a human"}


@dataclass
class SlackMessage:
    text: str  # the notification / fallback text
    blocks: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class IncidentRun:
    """One run caught in a warehouse-wide incident; ``status`` is one of STATUS_WORDS."""

    schedule: str | None
    run_id: int
    status: str
    detail: str = ""


# --- escaping ---------------------------------------------------------------------------------------

def escape(text: str) -> str:
    """Text from outside (a webhook, a log, an artifact) made literal for Slack mrkdwn.

    Also inside code spans and code blocks: Slack's escaping rule covers the whole text object and it
    parses ``<!channel>``/``<@U…>`` before any formatting, and ``&lt;`` inside a code block shows as
    ``<``, so escaping there changes nothing a reader sees and closes the hole.
    """
    return scalar_text(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


#: A run link exactly as ``run_link`` writes it: the only markup kept in caller-supplied text.
_RUN_LINK_RE = re.compile("(<" + re.escape(RUN_LINK).replace(r"\{run_id\}", r"\d{1,20}") + r"\|run \d{1,20}>)")


def _escape_keeping_links(text: str) -> str:
    """``escape``, except for run links built by ``run_link`` (callers compose notes with them)."""
    parts = _RUN_LINK_RE.split(text)
    return "".join(part if i % 2 else escape(part) for i, part in enumerate(parts))


def _clean(value: Any) -> Any:
    """Every string of a Block Kit structure without lone surrogates (iterative: no recursion limit)."""
    root = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = scalar_text(item)
        elif isinstance(item, dict):
            stack.extend((item, k) for k in item)
        elif isinstance(item, list):
            stack.extend((item, i) for i in range(len(item)))
    return root[0]


# --- small words -----------------------------------------------------------------------------------

def run_link(run_id: int) -> str:
    return f"<{RUN_LINK.format(run_id=run_id)}|run {run_id}>"


def warehouse_name(adapter: str | None) -> str | None:
    """``snowflake`` -> ``Snowflake``; an adapter we do not know keeps its own name, capitalised."""
    if not adapter:
        return None
    return WAREHOUSES.get(adapter.strip().lower(), adapter.strip().capitalize())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _wait(seconds: float) -> str:
    if seconds <= 0:
        return "now"
    if seconds < 60:
        return f"in {seconds:g}s"
    return f"in {max(1, round(seconds / 60))} min"


def _duration(seconds: float) -> str:
    """``252`` -> ``4m 12s``: short enough for a context line."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _run_duration(evidence: Evidence) -> str | None:
    """From the earliest command start to the latest end; None when the commands do not tell."""
    starts = [c.start for c in evidence.commands if c.start]
    ends = [c.end for c in evidence.commands if c.end]
    try:
        seconds = (max(ends) - min(starts)).total_seconds() if starts and ends else -1
    except TypeError:  # naive and aware datetimes mixed: no duration rather than no message
        return None
    return _duration(seconds) if seconds >= 0 else None


_PARTIAL_ENTITY_RE = re.compile(r"&(?:a(?:m(?:p)?)?|l(?:t)?|g(?:t)?)?$")


def _trim(text: str, limit: int) -> str:
    """At most ``limit`` characters, "…" marking a cut; a cut never leaves half an ``&amp;``."""
    text = text.strip()
    return text if len(text) <= limit else _PARTIAL_ENTITY_RE.sub("", text[: limit - 1]) + "…"


def _one_line(text: str, limit: int) -> str:
    return _trim(" ".join(text.split()), limit)


def _code(text: str) -> str:
    """An excerpt for a code block, escaped (see ``escape``): a ``` inside would end the block early."""
    return escape(_trim(text.replace("```", "'''"), MAX_EXCERPT))


def _short_node(node: str) -> str:
    """``model.shop.stg_orders`` -> ``stg_orders``; a test also loses its hash suffix."""
    parts = node.split(".")
    if len(parts) < 3:
        return node
    if parts[0] == "test" and len(parts) >= 4:
        parts = parts[:-1]
    return ".".join(parts[2:])


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=_trim(text, MAX_SECTION) or " "))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=_trim(text, MAX_CONTEXT) or " ")])


def _header(text: str) -> HeaderBlock:
    return HeaderBlock(text=PlainTextObject(text=_one_line(text, MAX_HEADER) or "Bolt run", emoji=True))


def _message(text: str, blocks: list[Block]) -> SlackMessage:
    """``to_dict`` runs slack-sdk's validation, so a block that breaks a rule fails here, in tests."""
    return SlackMessage(text=scalar_text(_one_line(text, MAX_TEXT)),
                        blocks=_clean([b.to_dict() for b in blocks[:MAX_BLOCKS]]))


# --- the verdict in one sentence -------------------------------------------------------------------

def _by_category(failures: Sequence[Failure]) -> list[tuple[str, list[Failure]]]:
    """Failures grouped by category, the ones that decide first, then the biggest groups."""
    groups: dict[str, list[Failure]] = {}
    for f in failures:
        groups.setdefault(f.classification.category, []).append(f)
    return sorted(groups.items(),
                  key=lambda kv: (VERDICT_ORDER.get(kv[1][0].classification.verdict, 3), -len(kv[1]), kv[0]))


def _subject(failures: Sequence[Failure], category: str) -> tuple[str, int]:
    """("3 models and 1 test", 4): nodes counted by resource type, log-only failures by command."""
    noun_of = {"test": "data test"} if category == "data_test" else {}
    nodes = Counter(noun_of.get(f.resource_type or "", NOUNS.get(f.resource_type or "", "node"))
                    for f in failures if f.node)
    commands = sorted({f.command for f in failures if not f.node})
    parts = [_plural(n, noun) for noun, n in nodes.most_common()]
    if len(commands) == 1:
        parts.append(f"`{commands[0]}`")
    elif commands:
        parts.append(f"{len(commands)} commands")
    return " and ".join(parts), sum(nodes.values()) + len(commands)


def _clause(category: str, failures: Sequence[Failure], adapter: str | None) -> str:
    """``3 models hit a Snowflake lock conflict``."""
    verdict = failures[0].classification.verdict
    forms = (PHRASES.get(verdict, {}).get(category) or TRANSIENT_PHRASES.get(category)
             or DETERMINISTIC_PHRASES.get(category) or (f"failed ({category})", f"failed ({category})"))
    subject, count = _subject(failures, category)
    wh = warehouse_name(adapter)
    noun, kind = (wh, wh) if wh else ("the warehouse", "warehouse")
    commands = {f.command.strip() for f in failures}
    for prefix, target in INFRA_TARGETS.items():
        if all(not f.node and f.command.strip().startswith(prefix) for f in failures) and len(commands) == 1:
            noun, kind = target
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    return f"{subject} " + forms[0 if count == 1 else 1].format(wh=noun, kind=kind, a=article)


def describe_failures(failures: Sequence[Failure], adapter: str | None) -> str:
    """What went wrong, in plain words: one clause per category, the two most telling ones."""
    groups = _by_category(failures)
    text = "; ".join(_clause(category, group, adapter) for category, group in groups[:2])
    if len(groups) > 2:
        more = len(groups) - 2
        text += f" (+{more} more {'category' if more == 1 else 'categories'})"
    return text


def _policy(decision: Decision) -> str:
    """The part of a policy reason worth a headline; the rest stays in the "why" line."""
    if decision.code is Reason.PAUSED:
        return decision.detail or decision.reason
    return "retry budget spent" if decision.code is Reason.BUDGET_SPENT else decision.reason


def paused_clause(reason: str, until: datetime) -> str:
    """``automatic retries paused (warehouse incident) until 2026-12-04 03:00 UTC``: what a run's
    story says when a retry was due while an operator had paused them (``Reason.PAUSED``)."""
    when = until.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"automatic retries paused ({reason or 'no reason given'}) until {when}"


def _cause(decision: Decision, evidence: Evidence | None) -> str:
    """Why the decision, from the failures when they are the reason, else from ``decision.reason``.

    Mirrors the order of ``triage.decide``: deterministic failures win, then unrecognised ones
    (reason code UNRECOGNISED), then the policy (budget, caps, cancelled …).
    """
    if evidence is None:
        if decision.action != "none":
            return decision.detail or decision.reason
        return _policy(decision)
    failures = evidence.failures
    if decision.action in ("retry", "trigger"):
        if failures:
            cause = describe_failures(failures, evidence.adapter)
            if decision.code is Reason.CONDITIONAL:
                cause += " (one retry only: this may be the load or the query itself)"
            return cause
        commands = ", ".join(f"`{c.command}`" for c in evidence.failed_commands[:3])
        return f"{commands} failed" if commands else decision.reason
    if evidence.state == "CANCELED":
        return decision.reason
    deterministic = [f for f in failures if f.classification.verdict == "deterministic"]
    if deterministic:
        return describe_failures(deterministic, evidence.adapter)
    unknown = [f for f in failures if f.classification.verdict == "unknown"]
    if unknown and decision.code is Reason.UNRECOGNISED:
        return describe_failures(unknown, evidence.adapter)
    if decision.code in HISTORY_REASONS and failures:
        said = HISTORY_REASONS[decision.code].format(detail=decision.detail)
        return f"{describe_failures(failures, evidence.adapter)}, and {said}"
    return _policy(decision)


def _said(reason: str, sentence: str) -> bool:
    """True when the verdict line already says ``reason`` (a policy reason becomes the headline itself)."""
    def words(text: str) -> str:
        return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
    return bool(reason) and words(reason) in words(sentence)


def recovered_nodes_sentence(nodes: Sequence[str], flaky: Sequence[NodeHistory]) -> str:
    """What passed on the retry. "flaky" only for nodes that meet ``NodeHistory.is_flaky`` (several
    recoveries, most retries recovered): one recovery is a recovery, not a pattern."""
    flaky_names = {h.node for h in flaky}
    plain = [_short_node(n) for n in nodes if n not in flaky_names]
    parts = []
    if plain:
        more = f" and {len(plain) - 10} more" if len(plain) > 10 else ""
        parts.append(f"{', '.join(plain[:10])}{more} passed on retry")
    if flaky:
        parts.append("flaky: " + ", ".join(h.describe() for h in flaky[:5]))
    return "; ".join(parts)


def verdict_line(decision: Decision, attempt_of_run: int, *, evidence: Evidence | None = None) -> tuple[str, str]:
    """(status, sentence) for a triaged failed run, e.g. ("retrying", "Retrying in 2 min: …").

    With ``evidence`` the sentence names what failed; without it, it falls back on
    ``decision.reason`` (callers that only kept the decision).
    """
    cause = _cause(decision, evidence)
    again = f"Failed again on retry {attempt_of_run} — " if attempt_of_run > 0 else ""
    if decision.action in ("retry", "trigger"):
        what = "Triggering the schedule again" if decision.action == "trigger" else "Retrying"
        if again:
            what = what[0].lower() + what[1:]
        return "retrying", f"{again}{what} {_wait(decision.backoff_seconds)}: {cause}"
    if again:
        return "gave_up", f"{again}not retrying: {cause}"
    return "not_retried", f"Not retrying: {cause}"


# --- the alert -------------------------------------------------------------------------------------

def _node_entry(f: Failure) -> str:
    label = f"`{escape(_short_node(f.node))}`" if f.node else f"`{escape(f.command)}` (log)"
    if f.owner:
        label += f" · owner {escape(f.owner)}"
    if f.failures:
        label += f" · {_plural(f.failures, 'failing row')}"
    excerpt = _code(f.classification.excerpt or f.message)
    label = "• " + _one_line(label, 300)
    return f"{label}\n```{excerpt}```" if excerpt else label


def _category_section(category: str, failures: list[Failure]) -> str:
    """Bold category, verdict and rule(s), then the nodes; cut with "…and N more" to fit a section."""
    rules = sorted({f.classification.rule for f in failures if f.classification.rule})
    head = f"*{escape(category)}* · {escape(failures[0].classification.verdict)}"
    if rules:
        head += " · rule " + ", ".join(f"`{escape(r)}`" for r in rules[:3])
        head += f" +{len(rules) - 3}" if len(rules) > 3 else ""
    codes = sorted({f.classification.code for f in failures if f.classification.code})
    if codes:  # the vendor's own code: what a human searches the vendor's documentation for
        head += " · code " + ", ".join(f"`{escape(c.split(':', 1)[-1])}`" for c in codes[:3])
    lines = [_one_line(f"{head} · {len(failures)} failed", 400)]
    for f in failures[:MAX_NODES_PER_CATEGORY]:
        entry = _node_entry(f)
        if len("\n".join([*lines, entry])) > MAX_SECTION - 40:
            break
        lines.append(entry)
    hidden = len(failures) - (len(lines) - 1)
    if hidden > 0:
        lines.append(f"_…and {hidden} more_")
    return "\n".join(lines)


def _run_facts(evidence: Evidence, attempt_of_run: int, origin: int | None, branch: str | None,
               commit: str | None) -> str:
    facts = [run_link(evidence.run_id) if evidence.run_id else "preview (no run id)"]
    if attempt_of_run:
        facts.append(f"retry {attempt_of_run} of {run_link(origin)}" if origin is not None
                     else f"retry {attempt_of_run}")
    if branch and commit:
        facts.append(f"branch `{escape(branch)}` @ `{escape(commit[:7])}`")
    elif branch or commit:
        facts.append(f"branch `{escape(branch)}`" if branch else f"commit `{escape(commit[:7])}`")
    took = _run_duration(evidence)
    if took:
        facts.append(took)
    failed = evidence.failed_commands
    if failed:
        more = f" +{len(failed) - 3}" if len(failed) > 3 else ""
        facts.append("failed: " + ", ".join(f"`{escape(c.command)}`" for c in failed[:3]) + more)
    if evidence.adapter:
        facts.append(escape(warehouse_name(evidence.adapter) or evidence.adapter))
    return " · ".join(facts)


def _cc(mentions: Sequence[str], limit: int = 1000) -> str:
    """``cc <@U1> <@U2>``: whole mentions only (a cut one would not notify), then "+N more"."""
    shown: list[str] = []
    for m in mentions:
        if len("cc " + " ".join([*shown, m])) > limit:
            break
        shown.append(m)
    more = f" +{len(mentions) - len(shown)} more" if len(shown) < len(mentions) else ""
    return f"cc {' '.join(shown)}{more}" if mentions else ""


def triage_message(schedule: str | None, evidence: Evidence, decision: Decision | None, attempt_of_run: int,
                   branch: str | None = None, status_override: tuple[str, str] | None = None, *,
                   origin: int | None = None, commit: str | None = None,
                   mentions: Sequence[str] = ()) -> SlackMessage:
    """The story's first message (or a retry run's reply); ``status_override`` re-renders it later.

    ``origin`` is the run a retry run retries (for "retry N of run …"); ``mentions`` are Slack mention
    strings (``<@U123>``) put near the top and in the fallback text, so that they notify.
    """
    if status_override is None and decision is None:
        raise ValueError("a decision or a status_override is needed")
    status, sentence = status_override or verdict_line(decision, attempt_of_run, evidence=evidence)
    emoji = EMOJI.get(status, EMOJI["unknown"])
    name = schedule or "Bolt run"
    cc = _cc(mentions)

    blocks: list[Block] = [
        _header(f"{emoji} {name}"),
        _context(_run_facts(evidence, attempt_of_run, origin, branch, commit)),
        _section(f"*{escape(_one_line(sentence, MAX_SECTION - 10))}*"),
    ]
    if decision is not None and not _said(decision.reason, sentence):  # never the same sentence twice
        why = f"why: {escape(decision.reason)}" + (f" · next: retry {decision.attempt}" if decision.attempt else "")
        blocks.append(_context(why))
    elif decision is not None and decision.attempt:
        blocks.append(_context(f"next: retry {decision.attempt}"))
    if cc:
        blocks.append(_section(cc))

    groups = _by_category(evidence.failures)
    if groups:
        blocks.append(DividerBlock())
    for category, failures in groups[:MAX_CATEGORIES]:
        blocks.append(_section(_category_section(category, failures)))
    if len(groups) > MAX_CATEGORIES:
        hidden = groups[MAX_CATEGORIES:]
        blocks.append(_section(f"_…and {len(hidden)} more categories "
                               f"({sum(len(g) for _, g in hidden)} failures)_"))

    extras = []
    if evidence.warnings:
        extras.append(f"{_plural(len(evidence.warnings), 'warning')} (not failures)")
    if evidence.skipped:
        extras.append(f"{evidence.skipped} skipped")
    extras.extend(escape(_one_line(note, 300)) for note in evidence.notes[:3])
    if len(evidence.notes) > 3:
        extras.append(f"+{len(evidence.notes) - 3} more notes")
    if extras:
        blocks.append(_context(" · ".join(extras)))

    run = f" — run {evidence.run_id}" if evidence.run_id else ""
    text = _one_line(f"{emoji} {escape(name)}{run}: {escape(sentence)}", MAX_TEXT - len(cc) - 1)
    return _message(f"{text} {cc}" if cc else text, blocks)


def simple_message(status: str, title: str, body: str, *, mentions: Sequence[str] = ()) -> SlackMessage:
    """A short note: a thread reply (retry started, recovered) or "could not triage" (with mentions)."""
    emoji = EMOJI.get(status, EMOJI["info"])
    cc = _cc(mentions)
    title, body = _escape_keeping_links(title), _escape_keeping_links(body)
    text = f"{emoji} {title}" + (f": {body}" if body else "") + (f" {cc}" if cc else "")
    blocks: list[Block] = [_section(f"{emoji} *{title}*\n{body}")]
    if cc:
        blocks.append(_context(cc))
    return _message(text, blocks)


# --- storm control and repeats ---------------------------------------------------------------------

def incident_message(category: str, adapter: str | None, runs: Sequence[IncidentRun]) -> SlackMessage:
    """ONE message for a warehouse-wide problem (many schedules, same transient category), updated as
    runs recover, instead of an alert per schedule."""
    wh = warehouse_name(adapter)
    what = INCIDENT_NOUNS.get(category, f"{category.replace('_', ' ')} failures")
    title = f"{wh} {what}" if wh else what[:1].upper() + what[1:]
    schedules = len({r.schedule or f"run {r.run_id}" for r in runs})
    header = f"{EMOJI['incident']} {title} across {_plural(schedules, 'schedule')}"

    counts = Counter(r.status for r in runs)
    order = [*STATUS_WORDS, *sorted(set(counts) - set(STATUS_WORDS))]
    summary = escape(", ".join(f"{counts[s]} {STATUS_WORDS.get(s, s)}" for s in order if counts[s]) or "no runs yet")

    lines = []
    for r in runs[:MAX_INCIDENT_RUNS]:
        line = f"{EMOJI.get(r.status, EMOJI['unknown'])} *{escape(r.schedule or 'Bolt run')}* · " \
               f"{run_link(r.run_id)} · {escape(STATUS_WORDS.get(r.status, r.status))}" \
               + (f" — {escape(r.detail)}" if r.detail else "")
        lines.append(_one_line(line, 500))
    if len(runs) > MAX_INCIDENT_RUNS:
        lines.append(f"_…and {len(runs) - MAX_INCIDENT_RUNS} more runs_")

    blocks: list[Block] = [_header(header), _section(f"*{summary}*"),
                           _context(f"category `{escape(category)}`" + (f" · {escape(wh)}" if wh else ""))]
    if lines:
        blocks.append(DividerBlock())
    chunk: list[str] = []
    for line in lines:  # as many runs per section as fit
        if chunk and len("\n".join([*chunk, line])) > MAX_SECTION:
            blocks.append(_section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(_section("\n".join(chunk)))
    return _message(f"{escape(header)}: {summary}", blocks)


def repeat_message(schedule: str | None, evidence: Evidence, decision: Decision, previous_run: int,
                   count: int) -> SlackMessage:
    """A compact thread reply for a deterministic failure that repeats, posted under the previous alert
    instead of a new top-level message (the channel already knows)."""
    status, sentence = verdict_line(decision, 0, evidence=evidence)
    emoji = EMOJI.get(status, EMOJI["unknown"])
    title = f"Failed again the same way ({_ordinal(count)} time)"
    blocks: list[Block] = [
        _section(f"{emoji} *{title}:* {run_link(evidence.run_id)}\n{escape(_one_line(sentence, MAX_SECTION - 300))}"),
        _context(f"previous alert: {run_link(previous_run)} · why: {escape(decision.reason)}"),
    ]
    return _message(f"{emoji} {escape(schedule or 'Bolt run')}: {title}: run {evidence.run_id} — {escape(sentence)}",
                    blocks)


# --- offline preview -------------------------------------------------------------------------------

def preview(paths: list[str], rules=None, *, schedule: str | None = None, adapter: str | None = None,
            run_id: int | None = None) -> SlackMessage:
    """The first alert the service would post for these files (run_results.json, optional dbt log and
    manifest.json), so a user can see it in Block Kit Builder before wiring anything.

    Raises ArtifactError for unreadable input or when the files hold no single run to show.
    """
    from triage.classify import RuleSet
    from triage.errors import ArtifactError
    from triage.explain import explain

    reports, notes = explain(paths, rules if rules is not None else RuleSet.load(), adapter=adapter)
    if len(reports) != 1:
        found = f"{len(reports)} runs" if reports else "no run_results.json or dbt log"
        raise ArtifactError(f"slack-preview shows one run: found {found} in {', '.join(map(str, paths))}")
    report = reports[0]
    evidence = report.evidence
    owners = {node: getattr(info, "owner", None) for node, info in report.owners.items()}
    evidence.failures = [f if f.owner or not owners.get(f.node or "") else replace(f, owner=owners[f.node])
                         for f in evidence.failures]
    evidence.notes.extend(notes)
    evidence.run_id = run_id or 0  # 0: no run to link to (the context line says "preview")
    return triage_message(schedule, evidence, report.decision, 0)
