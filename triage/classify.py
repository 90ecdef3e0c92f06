"""Rule engine: is a failed dbt node's message transient, conditional or deterministic?

The rules are data, not code: ``triage/defaults/rules.yaml`` ships with the product and a site may layer its
own file on top, so a data engineer can read, fix and extend them without a release. A rule is a
*code table entry* (``kind`` + ``codes``: SQLSTATEs, vendor numbers, error classes, HTTP statuses, found
by ``triage.codes``) or a *phrase* (a Python regex), with a verdict (``transient`` | ``conditional`` |
``deterministic``), a category, an optional cap on the retries it deserves and the ``source`` its
meaning comes from. Codes come first because a vendor's code means the same thing in every wording
and wrapper; phrases cover what carries no code.

Precedence (``_rank``)
    1. Deterministic evidence beats everything else in the same message. A message that shows a
       lock wait *and* a syntax error fails again once the lock clears: retrying it burns warehouse
       money and hides the real bug, so one deterministic match is enough to refuse the retry. The
       exception: a SQLSTATE or a SQL Server severity level alone does not outrank a vendor's own code
       (drivers put catch-all states such as Microsoft ODBC's 42000 on errors whose native number is
       retryable; see ``_rank``).
    2. Then a vendor's own code or class beats a generic SQLSTATE or HTTP status, which beats a
       phrase: ``000625 (57014)`` is Snowflake's lock-waiters error, not any cancelled query.
    3. Then the more cautious verdict: conditional (one retry at most) beats transient.
    4. Then file order: it names the rule, the category and the retry cap reported.
    5. A message no rule matches is ``Classification(verdict="unknown", category="unknown")``.
       Unknown is not transient: the caller decides what to do with it, never this module.

Adapters
    Adapter names are lower-cased, a leading ``dbt-`` is dropped and aliases fold onto one family:
    ``spark`` -> ``databricks``; ``fabric``, ``synapse`` -> ``sqlserver``; ``athena``,
    ``starburst`` -> ``trino``. A rule that lists ``adapters`` fires only for those families; a rule
    without them fires for every adapter (dbt-core's own messages, network errors, generic SQL).
    When the adapter is unknown (``None``) the adapter-specific rules fire as well: we do not know
    the warehouse, the vendor codes and phrases they match are distinctive, and dropping them would
    turn known deterministic errors into "unknown" just because metadata was missing.

Layering
    ``RuleSet.load(shipped, site, ...)`` reads the files in order. A later rule with an existing name
    replaces the earlier one *in place* (same position, so precedence does not shift); a new name is
    appended; ``{name: x, enabled: false}`` removes rule ``x``. Names must be unique within one file.
    Patterns are compiled once, at load; every problem is a ``ConfigError`` naming file and key.

Cost
    Every applicable rule scans the whole text (phrases twice for a message with line breaks, once
    unwrapped): with the shipped rules that is several seconds per MB in CPython's ``re``. Run-results
    messages are tiny and logs are passed as their error blocks (``triage.dbt_log``); do not pass
    megabytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from triage.codes import Code, CodeKind, code_matches, configured_limit, extract
from triage.errors import ConfigError
from triage.models import Classification

VERDICTS: tuple[str, ...] = ("transient", "conditional", "deterministic")

#: How much a verdict weighs when several rules match one message: the most cautious one wins.
SEVERITY: dict[str, int] = {"deterministic": 0, "conditional": 1, "transient": 2}

#: Allowed categories per verdict. ``resource_limit`` exists on both sides: a full queue clears on
#: its own (transient), a bytes-billed guard or a memory limit for the query's shape does not.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "transient": (
        "connection",
        "timeout",
        "lock_conflict",
        "rate_limit",
        "warehouse_unavailable",
        "auth_expired",
        "internal_error",
        "resource_limit",
    ),
    "deterministic": (
        "sql_error",
        "missing_object",
        "permission",
        "data_test",
        "compilation",
        "contract",
        "resource_limit",
        "config",
        "dependency",
    ),
}
#: A conditional failure is load or the query itself: the transient categories, judged with one retry.
CATEGORIES["conditional"] = CATEGORIES["transient"]

#: Adapters that produce the same error texts, folded onto one name.
ADAPTER_ALIASES: dict[str, str] = {
    "spark": "databricks",
    "fabric": "sqlserver",
    "synapse": "sqlserver",
    "athena": "trino",
    "starburst": "trino",
}

#: The rule set that ships with the product; ``RuleSet.load()`` without paths reads it.
#: libyaml's safe loader when PyYAML was built with it: rules.yaml loads in ~4 ms instead of ~36 ms,
#: which every worker process and ``triage classify`` pays at start-up. Same documents, same errors.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "defaults" / "rules.yaml"

#: Longest excerpt we keep: enough for a Slack line, short enough not to leak a whole log.
EXCERPT_LIMIT = 240

#: Phrases are also tried with line breaks unwrapped in texts up to this size (a message, not a log).
UNWRAP_LIMIT = 64_000

#: Codes are looked for in the first 200 kB of a message (a log excerpt may be long; codes come early).
CODE_SCAN_LIMIT = 200_000

#: run_results resource types whose ``fail`` status means "the data test found rows".
TEST_RESOURCE_TYPES = frozenset({"test", "unit_test"})

_RULE_KEYS = ("name", "adapters", "pattern", "kind", "codes", "verdict", "category", "max_retries", "description",
              "source", "enabled", "fallback")
_REQUIRED_KEYS = ("name", "verdict", "category")
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")


def normalize_adapter(name: str | None) -> str | None:
    """Fold an adapter name onto its family (``"dbt-Spark"`` -> ``"databricks"``); ``None`` stays unknown."""
    if name is None:
        return None
    key = name.strip().lower()
    if key.startswith("dbt-"):
        key = key[len("dbt-") :]
    if not key:
        return None
    return ADAPTER_ALIASES.get(key, key)


@dataclass(frozen=True)
class Rule:
    """One compiled rule: a phrase (``pattern``) or a code table entry (``kind`` + ``codes``).

    ``adapters`` is empty when the rule applies to every adapter; ``source`` names the vendor page or
    connector file the entry was taken from, so a reader can check it (and ``triage classify`` shows it).
    """

    name: str
    verdict: str
    category: str
    pattern: re.Pattern[str] | None = None
    adapters: frozenset[str] = frozenset()
    max_retries: int | None = None
    description: str = ""
    kind: CodeKind | None = None
    codes: tuple[str, ...] = ()
    source: str = ""
    #: A last resort: tried only when no other rule matches, in file order (``_rank``). For general wording
    #: ("timed out", "does not exist") that says something when nothing more specific was recognised.
    fallback: bool = False

    def applies_to(self, adapter: str | None) -> bool:
        """True when the rule may fire for this (already normalised) adapter; unknown adapter = all fire."""
        return not self.adapters or adapter is None or adapter in self.adapters

    def find(self, found: _Codes) -> tuple[str, int, int, str | None] | None:
        """Where the rule matches the message: (the text matched in, start, end, the code), or None.

        A phrase is tried on the message as it is, then with its line breaks unwrapped: dbt and the
        connectors wrap long warehouse messages ("Resources exceeded during\nquery execution").
        """
        if self.kind is not None:
            code = found.first(self.kind, self.codes)
            return (found.text, code.start, code.end, str(code)) if code else None
        assert self.pattern is not None
        for text in (found.text,) if found.unwrapped is found.text else (found.text, found.unwrapped):
            match = self.pattern.search(text)
            if match:
                return (text, match.start(), match.end(), None)
        return None


_WRAP = re.compile(r"[ \t]*\r?\n[ \t]*")


class _Codes:
    """The codes of one message, extracted once per kind on first use."""

    def __init__(self, text: str):
        self.text = text
        # Unwrapped lines are tried only for message-sized texts: a log is passed as error blocks anyway.
        self.unwrapped = _WRAP.sub(" ", text) if "\n" in text and len(text) <= UNWRAP_LIMIT else text
        self._by_kind: dict[CodeKind, dict[str, Code]] = {}

    def first(self, kind: CodeKind, listed: tuple[str, ...]) -> Code | None:
        if kind not in self._by_kind:
            table: dict[str, Code] = {}
            for code in extract(self.text[:CODE_SCAN_LIMIT], frozenset({kind})):
                table.setdefault(code.value, code)
            self._by_kind[kind] = table
        table = self._by_kind[kind]
        hits = [table[c] for c in listed if not c.endswith("*") and c in table]
        hits += [code for c in listed if c.endswith("*") for v, code in table.items() if code_matches(v, c)]
        return min(hits, key=lambda c: c.start) if hits else None


@dataclass(frozen=True)
class RuleSet:
    """An ordered, immutable collection of rules; order matters for precedence (see module docstring)."""

    rules: tuple[Rule, ...]

    @classmethod
    def load(cls, *paths: str | Path) -> RuleSet:
        """Read rule files in order, later ones overriding earlier ones; no path = the shipped rules."""
        merged: dict[str, Rule] = {}
        for path in paths or (DEFAULT_RULES_PATH,):
            _merge(merged, _read_rules_file(Path(path)), origin=str(path))
        return cls(tuple(merged.values()))

    @classmethod
    def from_dicts(cls, items: list[dict], origin: str = "<memory>") -> RuleSet:
        """Build a rule set from already-parsed rule mappings (tests, or rules kept elsewhere)."""
        merged: dict[str, Rule] = {}
        _merge(merged, items, origin=origin)
        return cls(tuple(merged.values()))

    def get(self, name: str) -> Rule | None:
        """The rule with this name, or None."""
        return next((rule for rule in self.rules if rule.name == name), None)

    @cached_property
    def by_precedence(self) -> tuple[Rule, ...]:
        """The rules in the order ``classify`` tries them. A rule's rank (``_rank``) depends on the rule
        and its place only, so the first rule that matches is the best one: the rest need not run."""
        ranked = sorted(((_rank(rule, index), rule) for index, rule in enumerate(self.rules)), key=lambda p: p[0])
        return tuple(rule for _, rule in ranked)


def classify(
    message: str, *, adapter: str | None, rules: RuleSet, source: str = "run_results"
) -> Classification:
    """Judge one failure message (see the module docstring for precedence and adapter handling)."""
    text = _bounded(message or "")
    family = normalize_adapter(adapter)
    found = _Codes(text)
    for rule in rules.by_precedence:
        if rule.applies_to(family) and (hit := rule.find(found)) is not None:
            return _classification(rule, hit, source)
    return Classification(verdict="unknown", category="unknown", excerpt=error_block(text), source=source,
                          code=_first_code(text))


#: A message longer than this is judged on its head and tail only. Warehouses put the error first and
#: dbt puts its summary last; what lies between in a message that long is compiled SQL or a data dump,
#: and reading all of it costs seconds per megabyte (a 50 MB message would hold a worker for minutes).
MAX_CLASSIFIED_CHARS = 64 * 1024
_TAIL_CHARS = 16 * 1024


def _bounded(text: str) -> str:
    if len(text) <= MAX_CLASSIFIED_CHARS:
        return text
    return text[: MAX_CLASSIFIED_CHARS - _TAIL_CHARS] + "\n…\n" + text[-_TAIL_CHARS:]


#: Generic code kinds: a vendor's own number or class says more than a SQLSTATE or an HTTP status.
_GENERIC_KINDS = frozenset({CodeKind.SQLSTATE, CodeKind.HTTP, CodeKind.SEVERITY})

#: Generic kinds whose deterministic verdict does not outrank a vendor's retryable code: a SQLSTATE class
#: and a SQL Server severity level are shared by the retryable numbers of their class too (3960 is Level 16).
_CLASS_KINDS = frozenset({CodeKind.SQLSTATE, CodeKind.SEVERITY})


def _rank(rule: Rule, index: int) -> tuple[int, int, int, int]:
    """Lower wins. Deterministic evidence first, whatever else matched (a wrong retry costs money);
    then a vendor-specific code, a generic code (SQLSTATE, HTTP), a phrase; then the more cautious
    verdict (conditional before transient); then file order.

    One exception to "deterministic first": a deterministic verdict that rests on a SQLSTATE only does
    not beat a vendor's own code for the same message. Drivers put catch-all states on messages whose
    vendor number says more: Microsoft's ODBC driver reports
    SQLSTATE 42000 ("syntax error or access violation") for most SQL Server errors, including the
    snapshot-isolation conflicts 3960/3961 that SqlClient and EF Core retry. A vendor code that is
    itself deterministic, a deterministic phrase or HTTP status (a 403 inside a connector's own error
    number is still a 403), still beats everything.

    A ``fallback`` rule (general wording: "timed out", "does not exist") comes after all of them, in
    file order whatever its verdict: it speaks only when nothing more specific was recognised, and then
    the strongest wording, written first, decides."""
    if rule.fallback:  # after every other rule, whatever its verdict; among fallbacks, file order
        return (4, 0, 0, index)
    tier = 2 if rule.kind is None else (1 if rule.kind in _GENERIC_KINDS else 0)
    # 0: deterministic (vendor code, phrase, HTTP); 1: a vendor's retryable code; 2: deterministic from a
    # SQLSTATE; 3: any other retryable evidence.
    primary = ((2 if rule.kind in _CLASS_KINDS else 0) if rule.verdict == "deterministic"
               else (1 if tier == 0 else 3))
    return (primary, tier, SEVERITY[rule.verdict], index)


def classify_node(
    status: str,
    resource_type: str | None,
    message: str | None,
    *,
    adapter: str | None,
    rules: RuleSet,
    source: str = "run_results",
) -> Classification:
    """Judge one run_results node.

    A test with status ``fail`` found failing rows: that is the data speaking, deterministic whatever
    its message says. Status ``warn`` is not a failure at all (reported, never retried). Anything
    else (``error``, ``runtime error``) is judged by its message.
    """
    state = (status or "").strip().lower()
    kind = (resource_type or "").strip().lower() or None
    if state == "warn" or (state == "fail" and (kind is None or kind in TEST_RESOURCE_TYPES)):
        return Classification(
            verdict="deterministic",
            category="data_test",
            rule="dbt_test_warning" if state == "warn" else "dbt_test_failure",
            excerpt=_first_line(message or ""),
            source=source,
        )
    return classify(message or "", adapter=adapter, rules=rules, source=source)


def excerpt_around(text: str, start: int, end: int, limit: int = EXCERPT_LIMIT) -> str:
    """The line(s) holding ``text[start:end]``, trimmed to ``limit`` characters with the match kept.

    Trimmed sides are marked with "…". A match longer than ``limit`` keeps its beginning.
    """
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    if line_end == -1:
        line_end = len(text)
    line = text[line_start:line_end].replace("\n", " ").replace("\r", " ")
    if len(line) <= limit:
        return line.strip()
    start, end = start - line_start, end - line_start
    room = limit - 2 - (end - start)  # context we can afford besides the match and two "…" marks
    if room <= 0:
        return line[start : start + limit - 1] + "…"
    right = min(len(line) - end, room - min(start, room // 2))
    left = min(start, room - right)
    head = "…" if start - left > 0 else ""
    tail = "…" if end + right < len(line) else ""
    return head + line[start - left : end + right] + tail


def _classification(rule: Rule, hit: tuple[str, int, int, str | None], source: str) -> Classification:
    text, start, end, code = hit
    max_retries = 1 if rule.verdict == "conditional" else rule.max_retries
    # A code opens the vendor's message, which often goes on below it: keep the lines after it.
    line_start = text.rfind("\n", 0, start) + 1
    excerpt = error_block(text[line_start:]) if code else excerpt_around(text, start, end)
    return Classification(
        verdict=rule.verdict,
        category=rule.category,
        rule=rule.name,
        excerpt=excerpt,
        source=source,
        max_retries=max_retries,
        code=code or _first_code(text),
        reference=rule.source,
        limit=configured_limit(text) if rule.verdict in ("conditional", "transient") else None,
        evidence=evidence_of(rule),
    )


def evidence_of(rule: Rule) -> str:
    """``vendor_code``, ``generic_code`` (SQLSTATE, HTTP status) or ``phrase``: what a verdict rests on.

    A vendor's own number or class names one failure; a SQLSTATE class or an HTTP status is shared by
    many failures (a 503 from a proxy in front of a wrong host, 08001 for a wrong host name), and a
    phrase may sit in a message whose real error is elsewhere. triage.decide.retry_cap budgets by it.
    """
    if rule.kind is None:
        return "phrase"
    return "generic_code" if rule.kind in _GENERIC_KINDS else "vendor_code"


def _first_code(text: str) -> str | None:
    """The first numeric-family code of a message (for display when no table entry used one)."""
    codes = [c for c in extract(text[:CODE_SCAN_LIMIT]) if c.kind not in (CodeKind.NAME, CodeKind.SEVERITY)]
    return str(codes[0]) if codes else None


#: Lines that only announce an error ("Encountered an error:", "Database Error in model x (path)"):
#: alone in Slack they tell a human nothing, so an unknown failure shows the lines after them too.
_HEADER_LINE = re.compile(
    r"(?i)^(?:\S+\s+)?(?:Encountered an error(?: while [^:]*)?:|(?:Database|Runtime|Compilation|Parsing|Dependency)"
    r" Error(?: in \w+ \S+(?: \([^)]*\))?)?:?|Failure in \w+ \S+(?: \([^)]*\))?|Completed with \d+ errors?.*)$")


def error_block(text: str, limit: int = EXCERPT_LIMIT) -> str:
    """The error itself for a human: the first lines that are not mere headers, joined, ``limit`` long.

    Used where no rule matched, so there is no matched part to show: Slack then shows what the
    warehouse said, not "Encountered an error:".
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    body = [line for line in lines if not _HEADER_LINE.match(line)] or lines
    joined = " ".join(body)
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def _first_line(text: str) -> str:
    """First non-blank line, trimmed: a hint for humans when no match tells us where to look."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:EXCERPT_LIMIT]
    return ""


# --------------------------------------------------------------------------- loading and validation


def _read_rules_file(path: Path) -> list[Any]:
    """The ``rules:`` list of one YAML file, or a ConfigError saying what is wrong with the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read rules file: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=SafeLoader)  # noqa: S506 (a safe loader: libyaml's when built)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise ConfigError(f"{path}: top level must be a mapping with a 'rules:' list")
    extra = sorted(str(key) for key in data if key != "rules")
    if extra:
        raise ConfigError(f"{path}: unknown top-level key {extra[0]!r} (only 'rules' is allowed)")
    return data["rules"]


def _merge(merged: dict[str, Rule], items: Any, origin: str) -> None:
    """Apply one file's entries to ``merged`` (a dict keeps order, and replacing a key keeps its place)."""
    if not isinstance(items, list):
        raise ConfigError(f"{origin}: top level must be a mapping with a 'rules:' list")
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"{origin}: rules[{index}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: must be a mapping, got {type(item).__name__}")
        unknown = sorted(str(key) for key in item if key not in _RULE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(_RULE_KEYS)})")
        name = _check_name(item, where)
        if name in seen:
            raise ConfigError(f"{where}.name: duplicate rule name {name!r} in this file")
        seen.add(name)
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}.enabled: must be true or false, got {enabled!r}")
        if not enabled:
            if name not in merged:
                raise ConfigError(f"{where}.enabled: cannot disable {name!r}: no earlier file defines it")
            del merged[name]
            continue
        merged[name] = _build_rule(item, where, name)


def _check_name(item: Mapping[str, Any], where: str) -> str:
    if "name" not in item:
        raise ConfigError(f"{where}: missing key 'name'")
    name = item["name"]
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}.name: {name!r} is not a snake_case name (a-z, 0-9, _)")
    return name


def _build_rule(item: Mapping[str, Any], where: str, name: str) -> Rule:
    for key in _REQUIRED_KEYS:
        if key not in item:
            raise ConfigError(f"{where}: missing key {key!r}")

    verdict = item["verdict"]
    if verdict not in VERDICTS:
        raise ConfigError(f"{where}.verdict: {verdict!r} is not one of {', '.join(VERDICTS)}")
    category = item["category"]
    if category not in CATEGORIES[verdict]:
        allowed = ", ".join(CATEGORIES[verdict])
        raise ConfigError(f"{where}.category: {category!r} is not one of {allowed} (for a {verdict} rule)")

    pattern, kind, codes = item.get("pattern"), item.get("kind"), item.get("codes")
    if (pattern is None) == (codes is None):
        raise ConfigError(f"{where}: give either 'pattern' (a phrase) or 'kind' and 'codes' (a code table entry)")
    fallback = item.get("fallback", False)
    if not isinstance(fallback, bool):
        raise ConfigError(f"{where}.fallback: must be true or false, got {fallback!r}")
    return Rule(
        name=name,
        verdict=verdict,
        category=category,
        pattern=_compile(pattern, where) if pattern is not None else None,
        adapters=_adapters(item.get("adapters"), where),
        max_retries=_max_retries(item.get("max_retries"), verdict, where),
        description=_description(item.get("description"), where),
        kind=_kind(kind, where) if codes is not None else None,
        codes=_codes(codes, where) if codes is not None else (),
        source=_text(item.get("source"), f"{where}.source"),
        fallback=fallback,
    )


def _kind(value: Any, where: str) -> CodeKind:
    try:
        return CodeKind(value)
    except ValueError:
        allowed = ", ".join(k.value for k in CodeKind)
        raise ConfigError(f"{where}.kind: {value!r} is not one of {allowed} (required with 'codes')") from None


def _codes(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, (str, int)):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(c, (str, int)) and str(c).strip()
                                                            for c in value):
        raise ConfigError(f"{where}.codes: must be a non-empty list of codes, e.g. ['40001', '08*']")
    return tuple(str(c).strip() for c in value)


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be text")
    return value.strip()


def _compile(pattern: Any, where: str) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"{where}.pattern: must be a non-empty string")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{where}.pattern: invalid regex: {exc}") from None
    if compiled.search("") is not None:
        raise ConfigError(f"{where}.pattern: matches the empty string, so it would match every message")
    return compiled


def _adapters(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(a, str) and a.strip() for a in value):
        raise ConfigError(f"{where}.adapters: must be a list of adapter names, e.g. [snowflake]")
    return frozenset(family for family in map(normalize_adapter, value) if family)


def _max_retries(value: Any, verdict: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}.max_retries: must be a whole number >= 0, got {value!r}")
    if verdict == "deterministic":
        raise ConfigError(f"{where}.max_retries: only a transient rule can allow retries")
    if verdict == "conditional" and value > 1:
        raise ConfigError(f"{where}.max_retries: a conditional rule allows at most 1 retry")
    return value


def _description(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{where}.description: must be text")
    return value.strip()
