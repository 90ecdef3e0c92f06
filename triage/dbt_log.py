"""Read dbt's console or log file for its error blocks: the evidence when run_results.json is not.

When the file is missing or stale (dbt died before running any node: connection
failure, ``dbt deps`` failure, a compilation error at parse time), the only evidence
is the log, so ``extract_log_errors`` finds dbt's error blocks in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from triage.jsontext import scalar_text
from triage.run_results import resource_and_name

#: A log error message is cut to this many characters (the classifier needs the start, Slack the gist).
MAX_MESSAGE_CHARS = 1000


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
        return _Block(text, resource_and_name(m.group("target"))[1], encountered=False)
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
