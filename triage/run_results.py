"""Read a dbt ``run_results.json``: which nodes ran, how each ended, and what the file cannot tell.

run_results.json is the precise source (one entry per node, with its status and error
message), so it is read tolerantly: dbt has changed the file across schema versions
(v2 in dbt 0.20 … v6 in dbt 1.8+), Fusion (dbt 2.0 preview) omits fields, and a triage
service must not fail because a field it does not need is missing or new. What cannot
be read is said in ``RunResults.notes`` rather than guessed.

Files and bytes are read as a stream of ijson events (``triage.jsonstream``): a 100 MB file of
50,000 results is mostly ``compiled_code`` and ``timing``, which are skipped, so the reader takes
less time than ``json.load`` and holds only the small ``NodeResult`` objects, never the text or the
whole decoded document (bench/artifacts.py measures both). Anything the stream cannot read (invalid
JSON or UTF-8, a top level that is not an object, numbers yajl overflows on) is read again the strict
way, ``json.loads``, so error messages say exactly what is wrong and where.

When the file is missing or stale, the command's log is read instead (``triage.dbt_log``).
"""

from __future__ import annotations

import gc
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import IO, Any

import ijson

from triage import jsonstream
from triage.errors import ArtifactError
from triage.jsonstream import is_container
from triage.jsontext import json_nesting_exceeds, json_type, scalar_text
from triage.models import FAILED_STATUSES

#: Newest run-results schema this module was written against; newer ones are read with a note.
LATEST_SCHEMA = 6
#: Oldest schema read at all. v1 (dbt 0.19) has no ``failures`` field and allows an integer ``message``.
OLDEST_SCHEMA = 2
#: Deepest nesting of arrays/objects read in run_results.json (dbt writes about 6; ``args.vars`` may add
#: a few). Deeper files are refused before anything is built: ``json.loads`` would recurse out
#: (RecursionError) somewhere near 1,000 levels, and ijson's prefixes grow quadratically.
MAX_JSON_DEPTH = 256
#: The fields of a result the service reads; the others (compiled_code, timing, …) are skipped unbuilt.
NODE_FIELDS = frozenset({"unique_id", "status", "message", "failures", "relation_name", "execution_time",
                         "adapter_response"})
_BOM = b"\xef\xbb\xbf"

RawRunResults = bytes | bytearray | str | dict | IO[bytes]



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


def _decode(raw: bytes | bytearray | str | dict) -> dict:
    """The strict reader: the whole text at once, with ``json.loads``'s precise error messages."""
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
    if json_nesting_exceeds(raw, MAX_JSON_DEPTH):
        raise _too_deep()
    try:
        data = json.loads(raw)
    except RecursionError:  # the scan above should have caught it; a RecursionError must never escape
        raise _too_deep() from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            f"run_results.json is not valid JSON: {exc.msg}"
            f" at line {exc.lineno} column {exc.colno} (char {exc.pos})"
        ) from None
    if not isinstance(data, dict):
        raise ArtifactError(f"run_results.json must be a JSON object, got {json_type(data)}")
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


_TEST_HASH_RE = re.compile(r"[0-9a-f]{10}")


def resource_and_name(unique_id: str) -> tuple[str, str]:
    """``test.pkg.not_null_orders_id.5fb22c2710`` → ("test", "not_null_orders_id").

    Generic tests end with a 10-hex-digit hash and versioned models with ``v2``; the
    name is what dbt prints in its log (``Failure in test not_null_orders_id``).
    """
    parts = unique_id.split(".")
    if len(parts) < 2:
        return "unknown", unique_id
    resource_type, last = parts[0], parts[-1]
    if resource_type == "test" and len(parts) >= 4 and _TEST_HASH_RE.fullmatch(last):
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


def _node(i: int, r: Any) -> NodeResult:
    if not isinstance(r, dict):
        raise ArtifactError(f"results[{i}] is not an object (got {json_type(r)})")
    uid = r.get("unique_id")
    if not isinstance(uid, str) or not uid:
        raise ArtifactError(f'results[{i}] has no "unique_id"')
    uid = scalar_text(uid)
    status = r.get("status")
    if not isinstance(status, str) or not status:
        raise ArtifactError(f'results[{i}] ({uid}) has no "status"')
    resource_type, name = resource_and_name(uid)
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


def _too_deep() -> ArtifactError:
    return ArtifactError(f"run_results.json is nested too deeply (more than {MAX_JSON_DEPTH} levels of "
                         "arrays/objects): not a dbt artifact")


@dataclass
class _Parts:
    """The top-level fields the service reads, however they were decoded; ``nodes`` raises a result's
    ArtifactError, so that errors come out in the same order whichever way the file was read."""

    metadata: Any
    results: Any  # the decoded value when it is not a list (for the error message)
    has_results: bool
    is_list: bool
    count: int
    nodes: Callable[[], tuple[NodeResult, ...]]
    args: Any


def _parts_of(data: dict) -> _Parts:
    results = data.get("results")
    is_list = isinstance(results, list)
    return _Parts(
        metadata=data.get("metadata", {}),
        results=None if is_list else results,
        has_results="results" in data,
        is_list=is_list,
        count=len(results) if is_list else 0,
        nodes=lambda: tuple(_node(i, r) for i, r in enumerate(results)),
        args=data.get("args"),
    )


class _StreamRefused(Exception):
    """The stream reader leaves this input to the strict reader (which explains what is wrong with it)."""


def _stream_results(events: jsonstream.Events, event: str, value: Any, max_nodes: int) -> tuple[Any, int, Callable]:
    """(value when not a list, number of results, nodes) from the events of ``"results": …``.

    Results are converted to ``NodeResult`` as they come, keeping only ``NODE_FIELDS``; after the first
    one that is not a result, or beyond ``max_nodes``, the rest are only counted."""
    if event != "start_array":
        return jsonstream.build(events, event, value, 2, MAX_JSON_DEPTH), 0, tuple
    nodes: list[NodeResult] = []
    error: ArtifactError | None = None
    count = 0
    for ev, val in events:
        if ev == "end_array":
            break
        keep = error is None and count < max_nodes
        if ev == "start_map" and keep:
            r: dict[str, Any] = {}
            for ev2, key in events:
                if ev2 == "end_map":
                    break
                ev3, val3 = next(events)
                if not is_container(ev3):  # most fields: a scalar, no call
                    if key in NODE_FIELDS:
                        r[key] = val3
                elif key in NODE_FIELDS:
                    r[key] = jsonstream.build(events, ev3, val3, 4, MAX_JSON_DEPTH)
                else:
                    jsonstream.skip(events, ev3, 4, MAX_JSON_DEPTH)
            try:
                nodes.append(_node(count, r))
            except ArtifactError as exc:
                error = exc
        elif keep:
            item = jsonstream.build(events, ev, val, 3, MAX_JSON_DEPTH)
            error = ArtifactError(f"results[{count}] is not an object (got {json_type(item)})")
        else:
            jsonstream.skip(events, ev, 3, MAX_JSON_DEPTH)
        count += 1

    def result() -> tuple[NodeResult, ...]:
        if error is not None:
            raise error
        return tuple(nodes)

    return None, count, result


def _stream(f: IO[bytes], max_nodes: int) -> _Parts:
    """Read the top-level object event by event; raise _StreamRefused for what the strict reader must see."""
    events = ijson.basic_parse(f, use_float=True)
    try:
        first, _ = next(events)
        if first != "start_map":
            raise _StreamRefused
        parts = _Parts({}, None, False, False, 0, tuple, None)
        for ev, key in events:
            if ev == "end_map":
                break
            ev, value = next(events)
            if key == "results":
                parts.results, parts.count, parts.nodes = _stream_results(events, ev, value, max_nodes)
                parts.has_results, parts.is_list = True, ev == "start_array"
            elif key in ("metadata", "args"):
                setattr(parts, key, jsonstream.build(events, ev, value, 2, MAX_JSON_DEPTH))
            else:
                jsonstream.skip(events, ev, 2, MAX_JSON_DEPTH)
        for _ in events:  # the end of the document: the parser refuses trailing data
            pass
    except jsonstream.TooDeep:
        raise _too_deep() from None
    except (ijson.JSONError, StopIteration, UnicodeDecodeError):
        raise _StreamRefused from None
    return parts


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a stream is read: it allocates hundreds of thousands of
    objects without a single cycle, and every 700th allocation would otherwise start a collection
    that scans them again (measured: up to a third of the read's time on 50,000 results)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_stream(f: IO[bytes], max_nodes: int) -> _Parts:
    """Stream ``f`` (a UTF-8 BOM skipped); whatever the stream refuses is read again with ``json.loads``."""
    if not f.seekable():
        return _parts_of(_decode(f.read()))
    start = f.tell()
    if f.read(3) != _BOM:
        f.seek(start)
    try:
        with _gc_paused():
            return _stream(f, max_nodes)
    except _StreamRefused:
        f.seek(start)
        return _parts_of(_decode(f.read()))


def parse_run_results(raw: RawRunResults, *, max_nodes: int = 100_000) -> RunResults:
    """Parse a run_results.json: a binary file, bytes, text or an already decoded dict.

    Files and bytes are streamed (see the module's docstring); text and dicts go through ``json.loads``.
    Raises ``ArtifactError`` only when the file is not a run-results file at all (not JSON,
    not an object, no ``results`` list, a result that is not an object or has no
    ``unique_id``/``status``, another artifact's or a pre-0.20 schema, more than
    ``max_nodes`` results). Anything else missing is tolerated and noted.
    """
    if isinstance(raw, (bytes, bytearray)):
        parts = _read_stream(io.BytesIO(raw), max_nodes)
    elif isinstance(raw, (str, dict)):
        parts = _parts_of(_decode(raw))
    elif hasattr(raw, "read"):
        parts = _read_stream(raw, max_nodes)
    else:
        raise ArtifactError(f"run_results.json must be bytes, text or a dict, got {type(raw).__name__}")
    return _assemble(parts, max_nodes)


def read_run_results_path(path: str, *, max_nodes: int = 100_000) -> RunResults:
    """``parse_run_results`` of a file on disk, streamed (never read into memory whole)."""
    with open(path, "rb") as f:
        return parse_run_results(f, max_nodes=max_nodes)


def _assemble(parts: _Parts, max_nodes: int) -> RunResults:
    """The checks and notes, in the order the strict reader has always made them."""
    notes: list[str] = []
    metadata = parts.metadata
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ArtifactError(f'run_results.json "metadata" must be an object, got {json_type(metadata)}')
    # The schema first: a manifest.json handed over by mistake should say so, not "no results".
    schema = _schema_version(metadata, notes) if metadata else None
    if not parts.has_results:
        raise ArtifactError('run_results.json has no "results" list')
    if not parts.is_list:
        raise ArtifactError(f'run_results.json "results" must be a list, got {json_type(parts.results)}')
    if parts.count > max_nodes:
        raise ArtifactError(f"run_results.json has {parts.count} results, more than max_nodes={max_nodes}")

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

    args = parts.args
    which = args.get("which") if isinstance(args, dict) else None
    invocation = metadata.get("invocation_id")
    adapter_type = metadata.get("adapter_type")

    return RunResults(
        schema_version=schema,
        dbt_version=dbt_version,
        generated_at=generated_at,
        invocation_id=invocation if isinstance(invocation, str) else None,
        command=which if isinstance(which, str) else None,
        results=parts.nodes(),
        notes=tuple(notes),
        adapter_type=adapter_type.lower() if isinstance(adapter_type, str) and adapter_type else None,
    )
