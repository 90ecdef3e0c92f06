"""Read what a dbt command left behind: ``run_results.json`` first, the console log as a fallback.

run_results.json is the precise source (one entry per node, with its status and error
message), so it is read tolerantly: dbt has changed the file across schema versions
(v2 in dbt 0.20 … v6 in dbt 1.8+), Fusion (dbt 2.0 preview) omits fields, and a triage
service must not fail because a field it does not need is missing or new. What cannot
be read is said in ``RunResults.notes`` rather than guessed.

When the file is missing or stale (dbt died before running any node: connection
failure, ``dbt deps`` failure, a compilation error at parse time), the only evidence
is the log, so ``extract_log_errors`` finds dbt's error blocks in it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from typing import Any

from triage.errors import ArtifactError
from triage.models import FAILED_STATUSES

#: Newest run-results schema this module was written against; newer ones are read with a note.
LATEST_SCHEMA = 6
#: Oldest schema read at all. v1 (dbt 0.19) has no ``failures`` field and allows an integer ``message``.
OLDEST_SCHEMA = 2
#: A log error message is cut to this many characters (the classifier needs the start, Slack the gist).
MAX_MESSAGE_CHARS = 1000
#: Deepest nesting of arrays/objects read in run_results.json (dbt writes about 6; ``args.vars`` may add
#: a few). Deeper files are refused before ``json.loads``, which would recurse out (RecursionError)
#: somewhere near 1,000 levels, less on a deep call stack.
MAX_JSON_DEPTH = 256


# --------------------------------------------------------------------------- run_results.json


@dataclass(frozen=True)
class NodeResult:
    """One entry of ``results``: a node dbt ran (or skipped) and how it ended."""

    unique_id: str
    resource_type: str
    name: str
    status: str
    message: str | None
    failures: int | None
    relation_name: str | None
    execution_time: float | None
    adapter_response: dict = field(default_factory=dict, hash=False)  # {} when absent; not hashed (a dict)

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


@dataclass(frozen=True)
class RunResults:
    """A parsed run_results.json; ``notes`` says what the file could not tell."""

    schema_version: int | None
    dbt_version: str | None
    generated_at: datetime | None  # naive UTC
    invocation_id: str | None
    command: str | None
    results: tuple[NodeResult, ...]
    notes: tuple[str, ...] = ()
    adapter_type: str | None = None  # metadata.adapter_type, when dbt wrote one

    @property
    def failed(self) -> tuple[NodeResult, ...]:
        return tuple(n for n in self.results if n.failed)

    @property
    def warned(self) -> tuple[NodeResult, ...]:
        return tuple(n for n in self.results if n.status == "warn")

    @property
    def skipped(self) -> tuple[NodeResult, ...]:
        return tuple(n for n in self.results if n.status == "skipped")

    def counts(self) -> dict[str, int]:
        """Number of nodes by status, e.g. ``{"error": 17, "skipped": 398, …}``."""
        return dict(Counter(n.status for n in self.results))

    def is_stale(self, command_start: datetime | None) -> bool:
        """True when the file was written before the command started, i.e. by an earlier command.

        The commands of a Bolt run share one working directory, so a command that dies
        before dbt writes its artifacts leaves the previous command's ``target/`` file behind.
        Without a start time there is nothing to compare with (trust the file); without
        ``generated_at`` the file cannot prove it is fresh (distrust it).
        """
        if command_start is None:
            return False
        if self.generated_at is None:
            return True
        if command_start.tzinfo is not None:
            command_start = command_start.astimezone(timezone.utc).replace(tzinfo=None)
        return self.generated_at < command_start


_SCHEMA_RE = re.compile(r"/dbt/([a-z_-]+)/v(\d+)\.json$")
_ISO_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _parse_time(value: Any) -> datetime | None:
    """ISO 8601 to naive UTC. Hand-rolled: Fusion writes nanoseconds, which Python 3.10 rejects."""
    if not isinstance(value, str):
        return None
    m = _ISO_RE.match(value.strip())
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    try:
        dt = datetime(year, month, day, hour, minute, second, micro)
    except ValueError:
        return None
    tz = m.group(8)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        dt -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return dt


_JSON_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS_RE = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_nesting_exceeds(text: str, limit: int) -> bool:
    """True when the JSON ``text`` nests arrays/objects more than ``limit`` deep.

    A linear scan without recursion, at C speed (regular expressions, ``accumulate``): string
    literals are removed first (brackets inside strings do not count), then everything but
    brackets; the deepest running sum of ``+1`` per opening and ``-1`` per closing bracket is the
    nesting depth. Meant to run before ``json.loads``; for text that is not valid JSON the answer
    is approximate (the parser then says what is wrong with it).
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKETS_RE.sub("", _JSON_STRING_RE.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit


def _decode(raw: bytes | str | dict) -> dict:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ArtifactError(
                f"run_results.json is not UTF-8 text: {exc.reason} at byte {exc.start}"
            ) from None
    if not isinstance(raw, str):
        raise ArtifactError(f"run_results.json must be bytes, text or a dict, got {type(raw).__name__}")
    if not raw.strip():
        raise ArtifactError("run_results.json is empty")
    too_deep = ArtifactError(f"run_results.json is nested too deeply (more than {MAX_JSON_DEPTH} levels of "
                             "arrays/objects): not a dbt artifact")
    if json_nesting_exceeds(raw, MAX_JSON_DEPTH):
        raise too_deep
    try:
        data = json.loads(raw)
    except RecursionError:  # the scan above should have caught it; a RecursionError must never escape
        raise too_deep from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            f"run_results.json is not valid JSON: {exc.msg}"
            f" at line {exc.lineno} column {exc.colno} (char {exc.pos})"
        ) from None
    if not isinstance(data, dict):
        raise ArtifactError(f"run_results.json must be a JSON object, got {_json_type(data)}")
    return data


def _schema_version(metadata: dict, notes: list[str]) -> int | None:
    """The run-results schema number; other artifacts and pre-0.20 files are refused."""
    url = metadata.get("dbt_schema_version")
    if url is None:
        notes.append("metadata.dbt_schema_version missing: read as the current schema")
        return None
    m = _SCHEMA_RE.search(str(url))
    if not m:
        raise ArtifactError(f"unsupported schema {url!r}: not a dbt run-results schema URL")
    kind, version = m.group(1), int(m.group(2))
    if kind != "run-results":
        raise ArtifactError(f"unsupported schema {url}: a {kind} artifact, not run-results")
    if version < OLDEST_SCHEMA:
        raise ArtifactError(
            f"unsupported run-results schema v{version} (dbt 0.19 or older):"
            f" only v{OLDEST_SCHEMA} and later are read"
        )
    return version


def _resource_and_name(unique_id: str) -> tuple[str, str]:
    """``test.pkg.not_null_orders_id.5fb22c2710`` → ("test", "not_null_orders_id").

    Generic tests end with a 10-hex-digit hash and versioned models with ``v2``; the
    name is what dbt prints in its log (``Failure in test not_null_orders_id``).
    """
    parts = unique_id.split(".")
    if len(parts) < 2:
        return "unknown", unique_id
    resource_type, last = parts[0], parts[-1]
    is_hash = len(last) == 10 and all(c in "0123456789abcdef" for c in last)
    if resource_type == "test" and len(parts) >= 4 and is_hash:
        return resource_type, parts[-2]
    if resource_type == "model" and len(parts) >= 4 and last[:1] == "v" and last[1:].isdigit():
        return resource_type, f"{parts[-2]}.{last}"
    return resource_type, last


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def scalar_text(text: str) -> str:
    """``text`` with every lone surrogate (``"\\ud800"`` in JSON decodes to one) replaced by U+FFFD,
    so that it can be encoded as UTF-8: for Redis keys, the store and Slack."""
    return _SURROGATE_RE.sub("\ufffd", text)


def _node(i: int, r: Any) -> NodeResult:
    if not isinstance(r, dict):
        raise ArtifactError(f"results[{i}] is not an object (got {_json_type(r)})")
    uid = r.get("unique_id")
    if not isinstance(uid, str) or not uid:
        raise ArtifactError(f'results[{i}] has no "unique_id"')
    uid = scalar_text(uid)
    status = r.get("status")
    if not isinstance(status, str) or not status:
        raise ArtifactError(f'results[{i}] ({uid}) has no "status"')
    resource_type, name = _resource_and_name(uid)
    message = r.get("message")
    exec_time = r.get("execution_time")
    if isinstance(exec_time, bool) or not isinstance(exec_time, (int, float)):
        exec_time = None
    relation = r.get("relation_name")
    response = r.get("adapter_response")
    return NodeResult(
        unique_id=uid,
        resource_type=resource_type,
        name=name,
        status=status.lower(),
        message=None if message is None else scalar_text(message if isinstance(message, str) else str(message)),
        failures=_int_or_none(r.get("failures")),
        relation_name=scalar_text(relation) if isinstance(relation, str) else None,
        execution_time=None if exec_time is None else float(exec_time),
        adapter_response=response if isinstance(response, dict) else {},
    )


def parse_run_results(raw: bytes | str | dict, *, max_nodes: int = 100_000) -> RunResults:
    """Parse a run_results.json (bytes, text or an already decoded dict).

    Raises ``ArtifactError`` only when the file is not a run-results file at all (not JSON,
    not an object, no ``results`` list, a result that is not an object or has no
    ``unique_id``/``status``, another artifact's or a pre-0.20 schema, more than
    ``max_nodes`` results). Anything else missing is tolerated and noted.
    """
    data = _decode(raw)
    notes: list[str] = []

    metadata = data.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ArtifactError(f'run_results.json "metadata" must be an object, got {_json_type(metadata)}')
    # The schema first: a manifest.json handed over by mistake should say so, not "no results".
    schema = _schema_version(metadata, notes) if metadata else None
    if "results" not in data:
        raise ArtifactError('run_results.json has no "results" list')
    results = data["results"]
    if not isinstance(results, list):
        raise ArtifactError(f'run_results.json "results" must be a list, got {_json_type(results)}')
    if len(results) > max_nodes:
        raise ArtifactError(f"run_results.json has {len(results)} results, more than max_nodes={max_nodes}")

    if not metadata:
        notes.append("no metadata: schema, dbt version and generation time unknown")
    dbt_version = metadata.get("dbt_version") if isinstance(metadata.get("dbt_version"), str) else None
    shown = dbt_version or "unknown version"
    if schema is not None and schema < 4:
        notes.append(
            f"schema v{schema} (dbt {shown}) predates dbt 1.0: read status, message and failures; "
            "relation_name and compiled code are not in it"
        )
    elif schema is not None and schema > LATEST_SCHEMA:
        notes.append(f"schema v{schema} is newer than v{LATEST_SCHEMA}: read the fields v{LATEST_SCHEMA} has")
    if dbt_version and dbt_version.split(".", 1)[0].isdigit() and int(dbt_version.split(".", 1)[0]) >= 2:
        notes.append(f"Fusion (dbt {dbt_version}): no failures count for tests, no compiled code")

    generated_at = _parse_time(metadata.get("generated_at"))
    if metadata and generated_at is None:
        shown_at = metadata.get("generated_at")
        notes.append(f"metadata.generated_at {shown_at!r} unreadable: cannot tell if stale")

    args = data.get("args")
    which = args.get("which") if isinstance(args, dict) else None
    invocation = metadata.get("invocation_id")
    adapter_type = metadata.get("adapter_type")

    return RunResults(
        schema_version=schema,
        dbt_version=dbt_version,
        generated_at=generated_at,
        invocation_id=invocation if isinstance(invocation, str) else None,
        command=which if isinstance(which, str) else None,
        results=tuple(_node(i, r) for i, r in enumerate(results)),
        notes=tuple(notes),
        adapter_type=adapter_type.lower() if isinstance(adapter_type, str) and adapter_type else None,
    )


# --------------------------------------------------------------------------- adapter

_BIGQUERY_KEYS = frozenset({"bytes_processed", "bytes_billed", "slot_ms", "job_id", "location", "project_id"})
#: Snowflake connector errors: a 6-digit code and the SQLSTATE, "002003 (42S02): …".
#: (MySQL's look alike but have 4 digits: "1064 (42000): …".)
_SNOWFLAKE_ERROR_RE = re.compile(r"(?<!\d)\d{6} \([0-9A-Z]{5}\): ")
#: Fusion prefixes a warehouse error with the adapter's name: "[Snowflake] 002003 (02000): …".
_FUSION_PREFIX_RE = re.compile(r"\[(Snowflake|BigQuery|Databricks|Redshift|Postgres)\] ")


def _adapter_from_response(r: dict) -> tuple[int, str] | None:
    """(strength, adapter) for one adapter_response; the strongest over the file wins."""
    if not r:
        return None
    if _BIGQUERY_KEYS.intersection(r):
        return 3, "bigquery"
    if "query_id" in r:
        if "query" in r:
            return 3, "trino"  # TrinoAdapterResponse carries the SQL text too
        return (3, "snowflake") if "code" in r else (2, "databricks")
    message, code = r.get("_message"), r.get("code")
    if "rows_affected" in r and code is None and message == "SUCCESS":
        return 2, "redshift"
    if (
        "rows_affected" in r
        and isinstance(code, str)
        and isinstance(message, str)
        and code == " ".join(p for p in message.split() if not p.isdigit())
    ):
        return 1, "postgres"
    return None


def adapter_from_run_results(rr_raw_or_parsed: RunResults | bytes | str | dict) -> str | None:
    """Best-effort guess of the warehouse a run_results.json came from (lowercase dbt adapter type).

    run_results.json does not name its adapter (no sample has ``metadata.adapter_type``;
    it is used when present). The signals, strongest first, as seen in the samples and
    in the adapters' ``get_response``:

    * reliable: BigQuery's ``bytes_processed``/``job_id``/``slot_ms``/``location``
      (2moonyo, yu-iskw); Snowflake's ``query_id`` together with ``code`` ("SUCCESS");
      Databricks' ``query_id`` without ``code`` (devrafael26, ``{"_message": "OK", "query_id": …}``);
      dbt-redshift ≥1.5's ``{"_message": "SUCCESS", "rows_affected": n}``;
    * reliable for Snowflake when every node failed (empty adapter_response): the
      connector's error format ``002003 (42S02): …`` (3fid, AnusaraSen, AshHimself) and
      Fusion's ``[Snowflake]`` prefix (Ajcamara);
    * weak: ``code`` equal to ``_message`` without its numbers plus ``rows_affected`` is
      Postgres's shape (AnalyticsByRussell) but also older Redshift's and dbt 1.0 BigQuery
      seeds' (yu-iskw), so it only counts when nothing stronger is in the file;
    * from source only: dbt-trino's ``query`` + ``query_id``;
    * none: ``{"_message": "OK"}`` alone (DuckDB, also Spark/older Databricks), ``{}``,
      and Fusion's ``{"rows_affected": 0}``; MySQL and DuckDB samples therefore give None.

    Raw input is parsed first, so it raises ``ArtifactError`` as ``parse_run_results`` does.
    """
    rr = rr_raw_or_parsed if isinstance(rr_raw_or_parsed, RunResults) else parse_run_results(rr_raw_or_parsed)
    if rr.adapter_type:
        return rr.adapter_type
    best: tuple[int, str] | None = None
    for node in rr.results:
        found = _adapter_from_response(node.adapter_response)
        if found and (best is None or found[0] > best[0]):
            best = found
            if best[0] == 3:
                return best[1]
    if best and best[0] >= 2:
        return best[1]
    for node in rr.failed:
        text = node.message or ""
        m = _FUSION_PREFIX_RE.search(text)
        if m:
            return m.group(1).lower()
        if _SNOWFLAKE_ERROR_RE.search(text):
            return "snowflake"
    return best[1] if best else None


# --------------------------------------------------------------------------- log fallback

_ANSI_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: hyperlinks, titles
    r"|\x1b[@-Z\\-_]"  # two-byte escapes
    r"|\[\d{1,3}(?:;\d{1,3})*m"  # colour codes that lost their ESC byte: "[0m12:01:02"
)


def strip_ansi(text: str) -> str:
    """Remove terminal escape codes (dbt colours its console output unless ``--no-use-colors``).

    Also removes bare ``[0m``/``[31m`` left when a log pipeline drops the ESC byte,
    as seen in logs relayed by orchestrators.
    """
    return _ANSI_RE.sub("", text)


@dataclass(frozen=True)
class LogError:
    """An error block found in a dbt log."""

    title: str
    node: str | None
    message: str


# A line's prefix that is not the message: dbt 1.x console "12:01:02  ", dbt log file
# "12:01:02.123456 [error] [Thread-1  ]: ", Fusion file "12:01:02.123 [info ]: ",
# dbt 0.x "12:01:02 | ", optionally after a platform's ISO timestamp (or a relay's stray space).
_TS_RE = re.compile(
    r"^[ \t]*(?:\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})? ?)?"
    r"\d{2}:\d{2}:\d{2}(?:\.\d+)?(?: \[\s*\w+\s*\](?: \[[^\]]*\])?: ?| \| ?|  |\s*$)"
)
_ENCOUNTERED_RE = re.compile(r"^(?P<title>Encountered an error(?: while [^:]*)?:)\s*(?P<rest>.*)$")
_NODE_HEADER_RE = re.compile(
    r"^(?P<kind>(?:Database|Runtime|Compilation|Dependency|Parsing|Internal) Error|Failure)"
    r" in (?P<rtype>\w+) (?P<name>[^\s(]+)(?: \(.*\))?:?$"
)
_UNHANDLED_RE = re.compile(r"^Unhandled error while executing (?P<target>\S+)")
_PLAIN_HEADER_RE = re.compile(r"^>?(?:Database|Runtime|Compilation|Dependency|Parsing|Internal) Error$")
_FUSION_ERROR_RE = re.compile(r"^error: (?P<code>dbt\d+): ?(?P<rest>.*)$")
# dbt progress and summary lines: they end an error block, never belong to one.
_STATUS_RE = re.compile(
    r"^(?:Done\. PASS=|Finished running|Completed with \d+ |Completed successfully|Running with dbt|"
    r"Registered adapter|Found \d+ |Concurrency: |\d+ of \d+ |Nothing to do|Exited because|Warning in |"
    r"\[WARNING\]|WARNING: |Skipping due to|Failing early|Cancell?ing|CANCEL |Finished '|dbt-fusion |"
    r"(?:Succeeded|Failed|Passed|Skipped|Warned|Errored) \[)"
)
_TRACEBACK = "Traceback (most recent call last):"
_CHAINED = (
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)
_ADAPTER_RE = re.compile(r"Registered adapter: (\w+)=")


@dataclass
class _Block:
    title: str
    node: str | None
    encountered: bool
    lines: list[str] = field(default_factory=list)

    def done(self) -> LogError:
        message = "\n".join(s for s in (ln.strip() for ln in self.lines) if s)
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 1].rstrip() + "…"
        return LogError(self.title, self.node, message)


def _header(text: str) -> _Block | None:
    """A block for a line that opens one, else None. ``text`` is stripped."""
    m = _ENCOUNTERED_RE.match(text)
    if m:
        return _with_rest(_Block(m.group("title"), None, encountered=True), m.group("rest"))
    m = _NODE_HEADER_RE.match(text)
    if m:
        return _Block(text, m.group("name"), encountered=False)
    m = _UNHANDLED_RE.match(text)
    if m:
        return _Block(text, _resource_and_name(m.group("target"))[1], encountered=False)
    if _PLAIN_HEADER_RE.match(text):
        return _Block(text.lstrip(">"), None, encountered=False)
    m = _FUSION_ERROR_RE.match(text)
    if m:
        return _with_rest(_Block(f"error: {m.group('code')}", None, encountered=False), m.group("rest"))
    return None


def _with_rest(block: _Block, rest: str) -> _Block:
    """Text on the header's own line is the message's first line, and may name the node."""
    if rest:
        block.lines.append(rest)
        m = _NODE_HEADER_RE.match(rest)
        if m:
            block.node = m.group("name")
    return block


def _split(text: str) -> list[tuple[str, bool]]:
    """Lines without ANSI codes or timestamp prefixes, each with whether it had a timestamp."""
    out = []
    for line in strip_ansi(text).splitlines():
        m = _TS_RE.match(line)
        out.append((line[m.end():].rstrip(), True) if m else (line.rstrip(), False))
    return out


def extract_log_errors(text: str, *, max_chars: int = 5_000_000) -> list[LogError]:
    """dbt's error blocks in a command's log, deduplicated, in order of appearance.

    Used when run_results.json is missing or stale, so the log is all there is. A block
    starts at ``Encountered an error:``, ``<Kind> Error in <type> <name> (<path>)``,
    ``Failure in test …``, a bare ``Database Error``/``Runtime Error``/``Compilation Error``,
    or Fusion's ``error: dbtNNNN:``, and runs until a blank line followed by an
    unindented one, a dbt progress/summary line, a new timestamped top-level line, or
    another header. Inside ``Encountered an error:`` nested node headers stay part of the
    message (and name the node). A Python traceback is reduced to its final exception line.
    Blocks printed twice (``--fail-fast`` prints an error when it happens and again in the
    summary) are kept once, with the longer message. If nothing matches, the last 20
    non-empty lines are returned as one "Unrecognised log" error so there is still
    something to classify. Only the last ``max_chars`` are read: dbt reports at the end.
    """
    if not text or not text.strip():
        return []
    if len(text) > max_chars:
        text = text[-max_chars:]
    text = scalar_text(text)  # Paradime's JSON may carry "\ud800": nothing downstream could encode it
    lines = _split(text)
    timestamped = any(ts for _, ts in lines)

    blocks: list[_Block] = []
    kept: list[str] = []  # non-traceback lines, for the "Unrecognised log" fallback
    current: _Block | None = None
    blank = False
    tb_state: str | None = None  # None, "frames" or "exc"
    tb_owner: _Block | None = None
    exc: list[str] = []

    def end_traceback() -> None:
        nonlocal tb_state, tb_owner, exc
        if exc:
            owner = tb_owner
            if owner is None:
                owner = _Block("Traceback", None, encountered=False)
                blocks.append(owner)
            owner.lines.extend(exc)
            kept.extend(exc)
        tb_state, tb_owner, exc = None, None, []

    for raw, had_ts in lines:
        text_ = raw.strip()
        indented = raw[:1] in (" ", "\t")

        if tb_state is not None:
            if text_ == _TRACEBACK or text_ in _CHAINED:
                tb_state, exc = "frames", []
                continue
            if tb_state == "frames":
                if text_ and not indented:
                    tb_state, exc = "exc", [text_]
                continue
            # tb_state == "exc": indented lines continue the exception's message
            if not text_ or (indented and not had_ts):
                if text_:
                    exc.append(text_)
                continue
            end_traceback()

        if text_ == _TRACEBACK:
            tb_state, tb_owner, exc = "frames", current, []
            current, blank = None, False
            continue

        if not text_:
            blank = True
            continue
        kept.append(text_)

        header = _header(text_)
        if current is not None:
            if header is not None and current.encountered and not header.encountered and not blank:
                current.node = current.node or header.node
                current.lines.append(text_)
                continue
            ends = (
                header is not None
                or _STATUS_RE.match(text_) is not None
                or (current.lines and timestamped and had_ts and not indented)
                or (current.lines and blank and not indented)
            )
            if not ends:
                current.lines.append(raw)
                blank = False
                continue
            current = None
        blank = False
        if header is not None:
            current = header
            blocks.append(header)

    if tb_state is not None:
        end_traceback()

    errors: list[LogError] = []
    seen: dict[tuple[str, str], int] = {}
    for block in blocks:
        err = block.done()
        key = (err.title, err.message.split("\n", 1)[0])
        if key in seen:
            i = seen[key]
            if len(err.message) > len(errors[i].message):
                errors[i] = err
            continue
        seen[key] = len(errors)
        errors.append(err)

    if not errors and kept:
        tail = "\n".join(kept[-20:])
        if len(tail) > MAX_MESSAGE_CHARS:
            tail = "…" + tail[-(MAX_MESSAGE_CHARS - 1):]
        errors.append(LogError("Unrecognised log", None, tail))
    return errors


def adapter_from_log(text: str) -> str | None:
    """The adapter dbt ≥1.5 names at start-up: ``Registered adapter: snowflake=1.7.1`` → "snowflake"."""
    m = _ADAPTER_RE.search(strip_ansi(text or ""))
    return m.group(1).lower() if m else None
