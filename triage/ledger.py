"""The triage ledger: what happened to each triage, in order, for the operations API.

Why a ledger beside the triage record (``bt:triage:<id>``, ``triage.store``): the record holds the
*latest* state, overwritten at each step; an on-call engineer asks "what happened, and when", which
needs the steps themselves (received, queued, run status, artifact fetched, classified, decided,
retry sent, Slack posted, re-check scheduled, failed …), the calls made to Paradime and Slack with
their status and duration, and where the time went (``execution_trace``).

Every key of the ledger is named in ``triage.keyspace`` and reached through :class:`Keys`, under
``bt:ledger:``, and every one is bounded twice: it expires ``retention.ledger_days`` after its last
write, and lists are capped (``retention.max_events_per_triage`` events and
``retention.max_calls_per_triage`` calls per triage; a run's triages and a triage's replays too)::

    bt:ledger:<tid>:events     stream   the timeline; stream ids are the event ids (SSE ``id:``)
    bt:ledger:<tid>:calls      list     {service, operation, status, ms, at}, newest last
    bt:ledger:<tid>:trace      hash     ms spent per service, first start and first Slack post time
    bt:ledger:<tid>:children   list     triage ids of the replays made from it
    bt:ledger:run:<run_id>     zset     every triage about a Bolt run (webhooks, replays), by time
    bt:ledger:pauses           hash     schedule glob -> pause (``triage.pauses``)

Writing to the ledger never fails a triage: a Redis error while recording is logged and swallowed
(the triage's own state, in ``triage.store``, is what the guarantees rest on). Nothing secret is
recorded: messages go through ``logs.redact`` and are cut short; calls keep an operation name and a
status, never a URL's query, a header or a body.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError

from triage import keyspace, logs
from triage.config import LedgerSettings
from triage.enums import TextEnum
from triage.models import Decision, Evidence

log = logging.getLogger(__name__)

MAX_MESSAGE = 500  # characters of an event's message
MAX_RUN_TRIAGES = 1000  # triages listed per run
MAX_CHILDREN = 1000  # replays listed per triage


class EventType(TextEnum):
    """The steps of a triage, as the timeline names them."""

    RECEIVED = "received"
    QUEUED = "queued"
    STARTED = "started"
    RUN_STATUS = "run_status"
    ARTIFACT_FETCHED = "artifact_fetched"
    CLASSIFIED = "classified"
    DECIDED = "decided"
    RETRY_SCHEDULED = "retry_scheduled"
    RETRY_NOT_SCHEDULED = "retry_not_scheduled"  # a guard held: the run was already retried
    RETRY_SENT = "retry_sent"
    RETRY_HELD = "retry_held"  # automatic retries paused when it came due
    SLACK_POSTED = "slack_posted"
    RECHECK_SCHEDULED = "recheck_scheduled"
    FAILED = "failed"
    DEAD_LETTER = "dead_letter"
    DONE = "done"
    CANCELED = "canceled"
    RESCHEDULED = "rescheduled"
    REPLAYED = "replayed"
    IDEMPOTENCY_RESET = "idempotency_reset"


class Level(TextEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class Service(TextEnum):
    """Where a call went: the trace adds up each one's time under its name."""

    PARADIME = "paradime"
    DOWNLOAD = "download"
    SLACK = "slack"


def _iso(at: float) -> str:
    """Times in answers are ISO 8601 in UTC, like every other time the API gives."""
    return datetime.fromtimestamp(at, timezone.utc).isoformat()


@dataclass(frozen=True)
class Event:
    id: str
    triage_id: str
    type: EventType
    level: Level
    message: str
    data: dict[str, Any]
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "triage_id": self.triage_id, "type": str(self.type), "level": str(self.level),
                "message": self.message, "data": self.data, "at": _iso(self.at)}


@dataclass(frozen=True)
class Call:
    service: Service
    operation: str
    status: str  # an HTTP status, "ok", or the exception's class name
    ms: float
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"service": str(self.service), "operation": self.operation, "status": self.status,
                "ms": round(self.ms, 1), "at": _iso(self.at)}


class Keys:
    """The ledger's keys (named in ``triage.keyspace``, with every other key of the project)."""

    @staticmethod
    def events(triage_id: str) -> str:
        return keyspace.ledger(triage_id, "events")

    @staticmethod
    def calls(triage_id: str) -> str:
        return keyspace.ledger(triage_id, "calls")

    @staticmethod
    def trace(triage_id: str) -> str:
        return keyspace.ledger(triage_id, "trace")

    @staticmethod
    def children(triage_id: str) -> str:
        return keyspace.ledger(triage_id, "children")

    @staticmethod
    def run(run_id: int) -> str:
        return keyspace.ledger_run(run_id)

    @staticmethod
    def pauses() -> str:
        return keyspace.retry_pauses()


def _decode(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


class Ledger:
    """Reads and writes the ledger of every triage; one per process (web, worker)."""

    def __init__(self, redis: Redis, settings: LedgerSettings | None = None):
        self.redis = redis
        self.settings = settings or LedgerSettings()

    # --- writing (never raises) ----------------------------------------------------------------

    def record(self, triage_id: str | None, kind: EventType, message: str, level: Level = Level.INFO,
               **data: Any) -> str | None:
        """Append one event to a triage's timeline; its id, or None when it could not be written."""
        if not triage_id:
            return None
        try:
            pipe = self.redis.pipeline()
            self._add_event(pipe, triage_id, kind, message, level, data)
            return pipe.execute()[0].decode()
        except RedisError as exc:
            log.warning("ledger: could not record %s for %s: %s", kind, triage_id, exc.__class__.__name__)
            return None

    def _add_event(self, pipe: Pipeline, triage_id: str, kind: EventType, message: str, level: Level,
                   data: dict[str, Any]) -> None:
        """The commands that append one event (the first is the XADD, whose answer is the event id)."""
        fields = {"type": str(kind), "level": str(level), "message": logs.redact(message)[:MAX_MESSAGE],
                  "data": json.dumps(data, default=str), "at": repr(time.time())}
        key = Keys.events(triage_id)
        pipe.xadd(key, fields, maxlen=self.settings.max_events, approximate=False)
        pipe.expire(key, self.settings.ttl_seconds)
        first = {EventType.STARTED: "first_started_at", EventType.SLACK_POSTED: "first_slack_at"}.get(kind)
        if first:
            pipe.hsetnx(Keys.trace(triage_id), first, time.time())
            pipe.expire(Keys.trace(triage_id), self.settings.ttl_seconds)

    def received(self, pipe: Pipeline, triage_id: str, run_id: int | None, what: str,
                 triggered_by: str = "webhook", **data: Any) -> None:
        """A new triage: its first two events, and its place in the run's index, added to ``pipe``, the
        pipeline that admits the triage (``Store.admit``'s ``enqueue``): written in the same round trip as
        the triage and its job, all or nothing."""
        self._add_event(pipe, triage_id, EventType.RECEIVED, f"{triggered_by}: {what}", Level.INFO,
                        {"triggered_by": triggered_by, **data})
        self._add_event(pipe, triage_id, EventType.QUEUED, "triage job queued", Level.INFO, {})
        if run_id is not None:
            self._add_run_link(pipe, run_id, triage_id)

    def evidence(self, triage_id: str, evidence: Evidence) -> None:
        """What the evidence gathering found: its notes (which artifact was used), then each failure's verdict."""
        self.record(triage_id, EventType.ARTIFACT_FETCHED, "evidence gathered", notes=evidence.notes[:10],
                    adapter=evidence.adapter)
        self.record(triage_id, EventType.CLASSIFIED, f"{len(evidence.failures)} failure(s) classified",
                    failures=[[f.node or f.command, f.classification.verdict, f.classification.category]
                              for f in evidence.failures[:50]])

    def decided(self, triage_id: str, decision: Decision) -> None:
        self.record(triage_id, EventType.DECIDED, f"{decision.action}: {decision.reason}", action=decision.action,
                    reason_code=str(decision.code), attempt=decision.attempt, backoff=decision.backoff_seconds)

    def call(self, triage_id: str | None, call: Call) -> None:
        """Record one call to Paradime or Slack, and add its time to the triage's trace."""
        if not triage_id:
            return
        ttl = self.settings.ttl_seconds
        try:
            pipe = self.redis.pipeline()
            pipe.rpush(Keys.calls(triage_id), json.dumps(call.to_dict()))
            pipe.ltrim(Keys.calls(triage_id), -self.settings.max_calls, -1)
            pipe.expire(Keys.calls(triage_id), ttl)
            pipe.hincrbyfloat(Keys.trace(triage_id), str(call.service), call.ms)
            pipe.expire(Keys.trace(triage_id), ttl)
            pipe.execute()
        except RedisError as exc:
            log.warning("ledger: could not record a call for %s: %s", triage_id, exc.__class__.__name__)

    def add_time(self, triage_id: str | None, name: str, ms: float) -> None:
        if not triage_id:
            return
        with contextlib.suppress(RedisError):
            pipe = self.redis.pipeline()
            pipe.hincrbyfloat(Keys.trace(triage_id), name, ms)
            pipe.expire(Keys.trace(triage_id), self.settings.ttl_seconds)
            pipe.execute()

    @contextlib.contextmanager
    def classifying(self, triage_id: str) -> Iterator[None]:
        """Time spent gathering evidence, less its downloads and Paradime calls: the classification."""
        before = self.trace(triage_id)
        started = time.monotonic()
        try:
            yield
        finally:
            after = self.trace(triage_id)
            upstream = sum(after.get(s, 0.0) - before.get(s, 0.0) for s in ("download", "paradime"))
            self.add_time(triage_id, "classify", max((time.monotonic() - started) * 1000 - upstream, 0.0))

    def link_run(self, run_id: int | None, triage_id: str) -> None:
        """Index a triage under the Bolt run it is about (``GET /api/v1/runs/<run_id>``)."""
        if run_id is None:
            return
        with contextlib.suppress(RedisError):
            pipe = self.redis.pipeline()
            self._add_run_link(pipe, run_id, triage_id)
            pipe.execute()

    def _add_run_link(self, pipe: Pipeline, run_id: int, triage_id: str) -> None:
        pipe.zadd(Keys.run(run_id), {triage_id: time.time()}, nx=True)
        pipe.zremrangebyrank(Keys.run(run_id), 0, -MAX_RUN_TRIAGES - 1)
        pipe.expire(Keys.run(run_id), self.settings.ttl_seconds)

    def add_child(self, parent: str, child: str) -> None:
        pipe = self.redis.pipeline()
        pipe.rpush(Keys.children(parent), child)
        pipe.ltrim(Keys.children(parent), -MAX_CHILDREN, -1)
        pipe.expire(Keys.children(parent), self.settings.ttl_seconds)
        pipe.execute()

    # --- reading ---------------------------------------------------------------------------------

    def events(self, triage_id: str, after: str | None = None, count: int | None = None) -> list[Event]:
        """The timeline, oldest first; ``after``: only events after that id (SSE ``Last-Event-ID``)."""
        start = f"({after}" if after else "-"
        rows = self.redis.xrange(Keys.events(triage_id), min=start, max="+", count=count)
        return [self._event(triage_id, i, f) for i, f in rows]

    def wait(self, triage_id: str, after: str, block_ms: int) -> list[Event]:
        """Events after ``after`` (``0`` for all), waiting up to ``block_ms`` for one to arrive."""
        found = self.redis.xread({Keys.events(triage_id): after or "0"}, block=block_ms, count=100)
        return [self._event(triage_id, i, f) for _, rows in found for i, f in rows]

    @staticmethod
    def _event(triage_id: str, raw_id: bytes, raw: dict[bytes, bytes]) -> Event:
        f = _decode(raw)
        return Event(id=raw_id.decode(), triage_id=triage_id, type=EventType(f["type"]), level=Level(f["level"]),
                     message=f["message"], data=json.loads(f.get("data") or "{}"), at=float(f["at"]))

    def calls(self, triage_id: str) -> list[dict[str, Any]]:
        return [json.loads(c) for c in self.redis.lrange(Keys.calls(triage_id), 0, -1)]

    def trace(self, triage_id: str) -> dict[str, float]:
        try:
            return {k: float(v) for k, v in _decode(self.redis.hgetall(Keys.trace(triage_id))).items()}
        except RedisError:
            return {}

    def triages_of_run(self, run_id: int) -> list[str]:
        return [t.decode() for t in self.redis.zrange(Keys.run(run_id), 0, -1)]

    def children(self, triage_id: str) -> list[str]:
        return [t.decode() for t in self.redis.lrange(Keys.children(triage_id), 0, -1)]


# --- calls made from the clients (triage.paradime, triage.slack) --------------------------------------

_installed: Ledger | None = None


def install(ledger: Ledger | None) -> None:
    """The process's ledger, for the clients' call records (the worker installs one at start)."""
    global _installed
    _installed = ledger


class _Observed:
    status: str = "ok"


@contextlib.contextmanager
def upstream(service: Service, operation: str) -> Iterator[_Observed]:
    """Time one call to Paradime or Slack and record it on the triage of the job running it.

    The caller sets ``.status`` (an HTTP status); an exception is recorded by its class name and
    goes on. Outside a job (no triage id bound) or without an installed ledger, nothing is recorded.
    """
    observed = _Observed()
    started = time.monotonic()
    try:
        yield observed
    except BaseException as exc:
        observed.status = exc.__class__.__name__
        raise
    finally:
        triage_id = logs.triage_id.get()
        if _installed is not None and triage_id:
            _installed.call(triage_id, Call(service, operation[:80], str(observed.status),
                                            (time.monotonic() - started) * 1000))

