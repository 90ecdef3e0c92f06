"""Turn evidence and a decision into a Slack message (Block Kit plus a plain-text fallback).

Blocks are built with slack-sdk's block models, which validate their own limits, and
the renderer keeps within Slack's (50 blocks, 3,000 characters per section) by
truncating with "and N more" instead of failing a post.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import ContextBlock, DividerBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from triage.models import Decision, Evidence, Failure

RUN_LINK = "https://app.paradime.io/bolt/run_id/{run_id}"
MAX_SECTION = 2900  # below Slack's 3,000 so an appended "and N more" still fits
MAX_NODES_PER_CATEGORY = 8
MAX_EXCERPT = 280

EMOJI = {
    "retrying": ":repeat:",
    "not_retried": ":no_entry:",
    "recovered": ":white_check_mark:",
    "gave_up": ":x:",
    "unknown": ":warning:",
    "error": ":warning:",
    "info": ":information_source:",
}


@dataclass
class SlackMessage:
    text: str  # the notification / fallback text
    blocks: list[dict[str, Any]] = field(default_factory=list)


def run_link(run_id: int) -> str:
    return f"<{RUN_LINK.format(run_id=run_id)}|run {run_id}>"


def _wait(seconds: float) -> str:
    if seconds <= 0:
        return "now"
    if seconds < 90:
        return f"in {seconds:g}s"
    return f"in {round(seconds / 60)} min"


def verdict_line(decision: Decision, attempt_of_run: int) -> tuple[str, str]:
    """(status, sentence) for a triaged failed run."""
    if decision.action in ("retry", "trigger"):
        what = "Triggering the schedule again" if decision.action == "trigger" else "Retrying"
        return "retrying", f"{what} {_wait(decision.backoff_seconds)} (retry {decision.attempt}): {decision.reason}"
    if attempt_of_run > 0:
        return "gave_up", f"Failed again on retry {attempt_of_run}; not retrying: {decision.reason}"
    return "not_retried", f"Not retrying: {decision.reason}"


def _trim(text: str, limit: int) -> str:
    text = text.strip().replace("```", "'''")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _node_label(f: Failure) -> str:
    if not f.node:
        return f"`{f.command}` (log)"
    label = f"`{f.node.split('.', 2)[-1] if f.node.count('.') >= 2 else f.node}`"
    return label + (f" · owner {f.owner}" if f.owner else "")


def _category_section(category: str, failures: list[Failure]) -> str:
    c = failures[0].classification
    rule = f" · rule `{c.rule}`" if c.rule else ""
    lines = [f"*{category}* — {c.verdict}{rule} · {len(failures)} failed"]
    for f in failures[:MAX_NODES_PER_CATEGORY]:
        excerpt = _trim(f.classification.excerpt or f.message, MAX_EXCERPT)
        lines.append(f"• {_node_label(f)}\n```{excerpt}```" if excerpt else f"• {_node_label(f)}")
    text = "\n".join(lines)
    hidden = len(failures) - MAX_NODES_PER_CATEGORY
    while len(text) > MAX_SECTION and len(lines) > 2:
        lines.pop()
        hidden += 1
        text = "\n".join(lines)
    if hidden > 0:
        text += f"\n_…and {hidden} more_"
    return text[:3000]


def triage_message(schedule: str | None, evidence: Evidence, decision: Decision | None, attempt_of_run: int,
                   branch: str | None = None, status_override: tuple[str, str] | None = None) -> SlackMessage:
    """The story's first message (or a retry run's reply); ``status_override`` re-renders it later."""
    if status_override is None and decision is None:
        raise ValueError("a decision or a status_override is needed")
    status, sentence = status_override or verdict_line(decision, attempt_of_run)
    name = schedule or "Bolt run"
    blocks: list[Any] = [HeaderBlock(text=_trim(f"{name} failed", 140))]
    context = [run_link(evidence.run_id)]
    if attempt_of_run:
        context.append(f"retry {attempt_of_run}")
    if branch:
        context.append(f"branch `{branch}`")
    if evidence.adapter:
        context.append(evidence.adapter)
    failed_cmds = ", ".join(f"`{c.command}`" for c in evidence.failed_commands[:3])
    if failed_cmds:
        context.append(f"failed: {failed_cmds}")
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=" · ".join(context))]))
    blocks.append(SectionBlock(text=MarkdownTextObject(text=f"{EMOJI[status]} *{_trim(sentence, 2800)}*")))

    groups: dict[str, list[Failure]] = defaultdict(list)
    for f in evidence.failures:
        groups[f.classification.category].append(f)
    if groups:
        blocks.append(DividerBlock())
    ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    for category, failures in ordered[:40]:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_category_section(category, failures))))
    if len(ordered) > 40:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=f"_…and {len(ordered) - 40} more categories_")))

    extras = []
    if evidence.warnings:
        extras.append(f"{len(evidence.warnings)} warning(s), not failures")
    if evidence.skipped:
        extras.append(f"{evidence.skipped} node(s) skipped")
    extras.extend(evidence.notes[:3])
    if extras:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_trim(" · ".join(extras), 2900))]))

    text = f"{EMOJI[status]} {name} — run {evidence.run_id}: {sentence}"
    return SlackMessage(text=_trim(text, 3000), blocks=[b.to_dict() for b in blocks[:50]])


def simple_message(status: str, title: str, body: str) -> SlackMessage:
    """A short note: a thread reply (retry started, recovered) or "could not triage"."""
    text = f"{EMOJI[status]} {title}" + (f": {body}" if body else "")
    blocks = [SectionBlock(text=MarkdownTextObject(text=_trim(f"{EMOJI[status]} *{title}*\n{body}", 2900)))]
    return SlackMessage(text=_trim(text, 3000), blocks=[b.to_dict() for b in blocks])
