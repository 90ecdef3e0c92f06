"""Logging for every process (web under gunicorn, RQ worker and its work horses, CLI): no secret in
any line, and the triage id on every line written while a job runs.

Why: several of our credentials are URLs or travel in them, and libraries log URLs. The Slack incoming
webhook URL *is* the credential (anyone holding it can post to the channel), and ``slack_sdk`` logs it
at INFO from its retry handlers ("A retry handler found: ServerErrorRetryHandler for POST https://hooks.
slack.com/services/T…/B…/…", "Going to retry the same request: POST …") and with the body and headers
(``Authorization: Bearer xoxb-…``) at DEBUG; ``urllib3``/``requests`` log request paths at DEBUG; and an
exception's message, formatted into a traceback, often repeats the URL it failed on. Masking at the
call sites cannot reach those lines, so the masking is done where every line is finally turned into
text: in the formatter of the handler.

Call :func:`install` once, first thing, in every process (before ``rq`` sets up its own handlers: it
adds none when the root logger already has one)::

    logs.install(logs.secrets_of(settings), level=os.environ.get("LOG_LEVEL", "INFO"),
                 fmt=os.environ.get("LOG_FORMAT", "text"))

What is masked (in the message, the formatted traceback and the stack; also by :func:`redact`, for text
that leaves the process another way, such as an error stored in Redis or posted to Slack):

- every configured secret (``None``, empty and shorter-than-6-character values are ignored), also in
  its JSON-escaped (``\\/``) and percent-encoded forms, and for a ``whsec_…`` secret its key part too,
  → ``***`` (or, when one of the patterns below recognises the secret, what that pattern leaves of it:
  a configured webhook URL reads ``https://hooks.slack.com/services/***``);
- whatever looks like a Slack webhook path, on any host: ``/services/T…/B…/<secret>`` →
  ``/services/***``;
- Slack tokens: ``xoxb-…`` (and ``xoxa/xoxe/xoxp/xoxo/xoxs/xoxr``) → ``xoxb-***``;
- Standard-Webhooks signing secrets: ``whsec_…`` → ``whsec_***``;
- the token in a Paradime GraphQL endpoint path: ``/api/v1/<token>/graphql`` → ``/api/v1/***/graphql``.

Configured secrets are masked before the patterns, so a secret is masked whole even when a pattern
alone would only have caught part of it.

Triage id: :func:`bound` sets the :data:`triage_id` (and :data:`run_id`) context variables for the
duration of a job; a filter on the handler copies them onto every record, whichever logger wrote it
(library loggers included). Text lines read ``<time> <LEVEL> <logger> [tr_…] <message>`` (no bracket
outside a job); with ``fmt="json"`` each line is one JSON object: ``time`` (ISO 8601, UTC), ``level``,
``logger``, ``message``, ``triage_id``, ``run_id`` (``null`` when unset) and ``exc`` (the redacted
traceback) when there is one.

Loggers that do not propagate to the root keep their own handlers: gunicorn's ``gunicorn.error`` and
``gunicorn.access``, for instance. Pass their names to :func:`redact_handlers` after they are set up
(in a ``gunicorn.glogging.Logger`` subclass's ``setup()``, which gunicorn re-runs on reload).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

__all__ = [
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "bound",
    "guard_std_streams",
    "install",
    "redact",
    "redact_handlers",
    "run_id",
    "secrets_of",
    "tag",
    "triage_id",
    "untag",
]

MASK = "***"
MIN_SECRET_LENGTH = 6
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(triage_tag)s %(message)s"

_TRIAGE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("triage_id", default=None)
_RUN_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar("run_id", default=None)
#: The triage id and Bolt run id of the job running in this context (``None`` outside one); set by :func:`bound`.
triage_id = _TRIAGE_ID
run_id = _RUN_ID

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Slack incoming webhook, any host (the simulator's, a proxy's): /services/T…/B…/<secret>
    (re.compile(r"(/services/)T[^/\s]+/B[^/\s]+/[^/\s?#\"'<>]+"), r"\1" + MASK),
    (re.compile(r"\b(xox[abeposr])-[A-Za-z0-9-]+"), r"\1-" + MASK),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"), "whsec_" + MASK),
    (re.compile(r"(/api/v1/)[^/\s?#\"'<>]+(/graphql)"), r"\1" + MASK + r"\2"),
)

_lock = threading.Lock()
# (one regex matching any known secret, secret -> what replaces it); swapped whole, read without a lock
_state: tuple[re.Pattern[str] | None, Mapping[str, str]] = (None, MappingProxyType({}))
_HANDLER_MARK = "_triage_logs"


# --- redaction ------------------------------------------------------------------------------------


def _variants(secret: str) -> set[str]:
    found = {secret, secret.replace("/", "\\/"), quote(secret, safe="")}
    if secret.startswith("whsec_"):
        found.add(secret[len("whsec_"):])
    return {s for s in found if len(s) >= MIN_SECRET_LENGTH}


def _mask_patterns(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _add_secrets(secrets: Iterable[str | None]) -> None:
    global _state
    new: dict[str, str] = {}
    for secret in secrets:
        if isinstance(secret, str) and len(secret.strip()) >= MIN_SECRET_LENGTH:
            for variant in _variants(secret.strip()):
                # A secret a pattern recognises keeps the pattern's informative form
                # (``https://hooks.slack.com/services/***``); any other becomes ``***``.
                masked = _mask_patterns(variant)
                new[variant] = masked if masked != variant else MASK
    with _lock:
        known = _state[1]
        if new.items() <= known.items():
            return
        merged = {**known, **new}
        # Longest first, so that a secret containing another is masked whole.
        alternatives = "|".join(re.escape(s) for s in sorted(merged, key=len, reverse=True))
        _state = (re.compile(alternatives), MappingProxyType(merged))


def redact(text: str) -> str:
    """``text`` with every configured secret and every secret-looking pattern masked (see the module)."""
    if not isinstance(text, str):
        text = str(text)
    secret_re, secrets = _state
    if secret_re is not None:
        text = secret_re.sub(lambda m: secrets[m.group(0)], text)
    return _mask_patterns(text)


def secrets_of(settings: Any) -> list[str]:
    """The credentials in a :class:`triage.config.Settings` (read tolerantly: a missing attribute is
    skipped), for :func:`install`."""
    found: list[str | None] = []
    for section, names in (
        ("webhook", ("secret", "token")),
        ("paradime", ("api_key", "api_secret", "endpoint")),
        ("slack", ("webhook_url", "bot_token")),
    ):
        part = getattr(settings, section, None)
        found.extend(getattr(part, name, None) for name in names)
    found.extend(getattr(settings, name, None) for name in ("admin_token", "read_token", "session_secret"))
    redis_url = getattr(settings, "redis_url", None)
    if isinstance(redis_url, str):
        with contextlib.suppress(ValueError):
            found.append(urlsplit(redis_url).password)
    return [s for s in found if isinstance(s, str) and s]


# --- the triage id --------------------------------------------------------------------------------


@contextlib.contextmanager
def bound(triage_id: str | None, run_id: int | None = None) -> Iterator[None]:
    """Every line logged inside the block (in this thread or task) carries ``triage_id`` and ``run_id``."""
    tid_token, run_token = _TRIAGE_ID.set(triage_id), _RUN_ID.set(run_id)
    try:
        yield
    finally:
        _RUN_ID.reset(run_token)
        _TRIAGE_ID.reset(tid_token)


def tag(triage_id: str | None, run_id: int | None = None) -> None:
    """Carry ``triage_id`` and ``run_id`` on every line logged from here to the end of the current
    context: for a web request, whose thread serves other requests after it, the app calls
    :func:`untag` when each request starts and ends (a ``with bound(...)`` block would not fit the
    view's many returns)."""
    _TRIAGE_ID.set(triage_id)
    _RUN_ID.set(run_id)


def untag(*_: object) -> None:
    """No triage id or run id from here on (``teardown_request`` passes the exception: ignored)."""
    tag(None, None)


class ContextFilter(logging.Filter):
    """Copies the bound triage id and run id onto every record the handler sees (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        tid = _TRIAGE_ID.get()
        record.triage_id = tid
        record.run_id = _RUN_ID.get()
        record.triage_tag = f" [{tid}]" if tid else ""
        return True


def _ensure_context(record: logging.LogRecord) -> None:
    if not hasattr(record, "triage_tag"):  # a handler without the filter
        ContextFilter().filter(record)


# --- formatters -----------------------------------------------------------------------------------


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger> [tr_…] <message>`` plus traceback, all redacted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        _ensure_context(record)
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; each field is redacted before it is encoded (escaping cannot hide a
    secret from the masking)."""

    def format(self, record: logging.LogRecord) -> str:
        _ensure_context(record)
        when = datetime.fromtimestamp(record.created, tz=timezone.utc)
        line: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "triage_id": getattr(record, "triage_id", None),
            "run_id": getattr(record, "run_id", None),
        }
        exc = ""
        if record.exc_info:
            exc = self.formatException(record.exc_info)
        elif record.exc_text:
            exc = record.exc_text
        if record.stack_info:
            exc = f"{exc}\n{self.formatStack(record.stack_info)}" if exc else self.formatStack(record.stack_info)
        if exc:
            line["exc"] = redact(exc)
        return json.dumps(line, ensure_ascii=False, default=str)


class _RedactingWrapper(logging.Formatter):
    """Keeps another formatter's layout (gunicorn's, say) and redacts what it produces."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        _ensure_context(record)
        return redact(self.inner.format(record))


def _formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


_current_fmt = "text"


def _redacts(formatter: logging.Formatter | None) -> bool:
    return isinstance(formatter, (TextFormatter, JsonFormatter, _RedactingWrapper))


def _add_filter_once(handler: logging.Handler) -> None:
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())


# --- text that bypasses logging ------------------------------------------------------------------


class _StreamGuard:
    """``sys.stdout``/``sys.stderr`` of a web or worker process: each line written there by code that
    does not log (the traceback multiprocessing prints for a child process that raised, such as
    RQ's scheduler; ``warnings``; a stray ``print``) is redacted, and with
    ``fmt="json"`` becomes a JSON line (logger ``stdout``/``stderr``) like every logged line. Lines that
    are already ours (a handler created on this stream later, as gunicorn's are) pass as they are."""

    def __init__(self, target: TextIO, name: str) -> None:
        self.target, self.name, self._partial = target, name, ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            for line in lines:
                self.target.write(self._line(line) + "\n")
        return len(text)

    def _line(self, line: str) -> str:
        if _current_fmt != "json":
            return redact(line)
        if line.startswith("{"):
            try:
                if isinstance(json.loads(line), dict):
                    return line  # a JSON line of ours
            except ValueError:
                pass
        record = logging.LogRecord(self.name, logging.ERROR if self.name == "stderr" else logging.INFO, "", 0,
                                   line, None, None)
        return JsonFormatter().format(record)

    def flush(self) -> None:
        with self._lock:
            if self._partial:
                self.target.write(self._line(self._partial) + "\n")
                self._partial = ""
        self.target.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer…: the real stream's
        return getattr(self.target, name)


def guard_std_streams() -> None:
    """Route ``sys.stdout`` and ``sys.stderr`` through :class:`_StreamGuard` (idempotent). The web and the
    worker call it after :func:`install`; its handler keeps writing to the real stream."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, _StreamGuard):
            setattr(sys, name, _StreamGuard(stream, name))


# --- wiring ---------------------------------------------------------------------------------------


def redact_handlers(logger_names: Iterable[str], *, reformat: bool = False) -> None:
    """Make the handlers already attached to these loggers (``""`` is the root) redact and carry the
    triage id. Their own layout is kept, unless ``reformat``: then they use :func:`install`'s format
    (text or json) too. Idempotent. Handlers added later are not covered: call it again after them.

    gunicorn's loggers do not propagate and get fresh handlers on every ``setup()`` (start, reload)::

        class RedactingLogger(gunicorn.glogging.Logger):
            def setup(self, cfg):
                super().setup(cfg)
                logs.redact_handlers(["gunicorn.error", "gunicorn.access"])
    """
    for name in logger_names:
        for handler in logging.getLogger(name or None).handlers:
            _add_filter_once(handler)
            if reformat and not getattr(handler, _HANDLER_MARK, False):
                handler.setFormatter(_formatter(_current_fmt))
            elif not _redacts(handler.formatter):
                handler.setFormatter(_RedactingWrapper(handler.formatter or logging.Formatter()))


def install(
    secrets: Iterable[str | None],
    *,
    level: str | int = "INFO",
    fmt: str = "text",
    stream: TextIO | None = None,
) -> None:
    """Configure the root logger: one stream handler (``stream``, default ``sys.stderr``) with the
    redacting ``fmt`` formatter and the triage-id filter, at ``level``. Handlers already on the root
    logger that are not ours keep their layout but redact too.

    Calling it again replaces our handler (never adds a second one) and adds ``secrets`` to those
    already known: a secret, once given, is masked for the life of the process.
    """
    global _current_fmt
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    numeric = level if isinstance(level, int) else logging.getLevelName(str(level).strip().upper())
    if not isinstance(numeric, int):
        raise ValueError(f"LOG_LEVEL: expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}")
    _add_secrets(secrets)
    _current_fmt = fmt

    target = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(target.target if isinstance(target, _StreamGuard) else target)
    handler.setFormatter(_formatter(fmt))
    handler.addFilter(ContextFilter())
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    redact_handlers([""])  # someone else's (basicConfig, a test runner's): redact, keep their layout
    root.addHandler(handler)
    root.setLevel(numeric)
