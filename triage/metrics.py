"""The service's counters and its one histogram, kept in Redis: every process adds to the same numbers.

Why Redis and not prometheus-client's own metrics: a scrape reaches one gunicorn worker of one web
host, while the counting happens in other gunicorn workers and in RQ work horses (forked per job, so
gone before any scrape) on any host. prometheus-client's multiprocess mode only merges the files of
one host's processes. Every process already shares Redis, so each increment is one ``HINCRBY`` there,
and ``triage.monitoring`` turns these hashes into Prometheus metrics at scrape time.

Layout (owned by this module, under ``bt:metrics:``)::

    bt:metrics:c:<counter>      hash  "<label value>|<label value>…" -> count
    bt:metrics:h:<histogram>    hash  "<upper bound>" -> observations in that bucket (not cumulative),
                                      "+Inf", "sum", "count"
    bt:metrics:dead_letter      set   ids of dead-lettered triages (pruned at scrape time, see monitoring)

Label sets are bounded: each label has a fixed set of values (anything else is recorded as ``other``),
or for ``category`` a short ``[a-z0-9_]`` token, which the rule files define. No label ever carries a
run id, a schedule name, a URL or a secret. Like every key of the project the keys expire
(``TTL``, renewed by each write): a counter idle that long starts again from 0, which Prometheus reads
as a counter reset, as it does when Redis is emptied.

Recording never fails the caller: an error (Redis down) is logged once, then recording is skipped for
``PAUSE_AFTER_ERROR`` seconds, so that an outage adds no Redis timeout to each webhook answer; the
first success after it logs that counting resumed. Counting is at least once, like the jobs: a job
re-run after its worker died may count its outcome again.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline

from triage import keyspace

log = logging.getLogger(__name__)

TTL = 30 * 24 * 3600  # renewed by every write; the same retention as the triage records
PAUSE_AFTER_ERROR = 5.0  # seconds recording is skipped after a failed write
OTHER = "other"
_TOKEN = re.compile(r"^[a-z0-9_]{1,40}$")


@dataclass(frozen=True)
class Counter:
    """A counter family: ``bolt_triage_<name>_total{labels}``; ``values[label]`` None = a token label."""

    name: str
    help: str
    labels: tuple[str, ...]
    values: Mapping[str, frozenset[str] | None]

    @property
    def key(self) -> str:
        return keyspace.metrics_counter(self.name)

    def field(self, labels: Mapping[str, str]) -> str:
        return "|".join(_bounded(self.values[name], labels.get(name)) for name in self.labels)

    def known(self) -> list[tuple[str, ...]]:
        """Label combinations exposed as 0 before they happen (fixed single-valued sets only), so that
        ``rate()`` sees the first increment."""
        if len(self.labels) == 1 and self.values[self.labels[0]] is not None:
            return [(v,) for v in sorted(self.values[self.labels[0]] or ())]
        return []


@dataclass(frozen=True)
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]

    @property
    def key(self) -> str:
        return keyspace.metrics_histogram(self.name)


def _bounded(allowed: frozenset[str] | None, value: str | None) -> str:
    value = (value or "none").lower()
    if allowed is None:
        return value if _TOKEN.match(value) else OTHER
    return value if value in allowed else OTHER


def _set(*values: str) -> frozenset[str]:
    return frozenset((*values, OTHER))


WEBHOOK_OUTCOMES = _set("queued", "requeued", "duplicate", "unauthorized", "invalid", "too_large", "unavailable",
                        "error")
VERDICTS = _set("retrying", "not_retried", "gave_up", "recovered", "succeeded", "could_not_triage")
RETRY_OUTCOMES = _set("issued", "refused", "unknown", "already", "canceled", "error", "failed")
SERVICES = _set("paradime", "artifacts", "slack")
DELIVERY_OUTCOMES = _set("posted", "updated", "duplicate", "folded", "deferred", "skipped", "error")

WEBHOOKS = Counter("webhooks", "Webhook deliveries answered, by outcome.", ("outcome",),
                   {"outcome": WEBHOOK_OUTCOMES})
TRIAGES = Counter("triages", "Triages that reached a verdict, by verdict and the failures' main category.",
                  ("verdict", "category"), {"verdict": VERDICTS, "category": None})
RETRIES = Counter("retries", "Retry jobs run, by action (retry or trigger) and outcome.", ("action", "outcome"),
                  {"action": _set("retry", "trigger"), "outcome": RETRY_OUTCOMES})
UPSTREAM_ERRORS = Counter("upstream_errors", "Calls to Paradime, artifact hosts and Slack that failed after the "
                          "client's own retries.", ("service",), {"service": SERVICES})
SLACK_DELIVERIES = Counter("slack_deliveries", "Slack delivery jobs run, by outcome.", ("outcome",),
                           {"outcome": DELIVERY_OUTCOMES})
COUNTERS = (WEBHOOKS, TRIAGES, RETRIES, UPSTREAM_ERRORS, SLACK_DELIVERIES)

TRIAGE_DURATION = Histogram(
    "triage_duration_seconds",
    "Seconds a worker spent on the triage job that reached the verdict (Paradime calls, downloads, "
    "classification, decision); queue and re-check waits excluded.",
    (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)


# --- recording ------------------------------------------------------------------------------------


class _Recorder:
    """The process's Redis connection for recording, and the once-per-outage error log."""

    def __init__(self) -> None:
        self.redis: Redis | None = None
        self.paused_until = 0.0
        self.failing = False
        self.lock = threading.Lock()

    def write(self, build: Callable[[Pipeline], object]) -> None:
        """Run ``build(pipe)`` and execute it; never raise."""
        redis = self.redis
        if redis is None or time.monotonic() < self.paused_until:
            return
        try:
            pipe = redis.pipeline(transaction=True)
            build(pipe)
            pipe.execute()
        except Exception as exc:  # Redis down or anything else: counting must not fail the caller
            with self.lock:
                self.paused_until = time.monotonic() + PAUSE_AFTER_ERROR
                first, self.failing = not self.failing, True
            if first:
                log.warning("metrics not recorded (%s); going on without them until Redis answers",
                            exc.__class__.__name__)
            return
        if self.failing:
            with self.lock:
                self.failing = False
            log.info("metrics recorded again")


_recorder = _Recorder()


def install(redis: Redis) -> None:
    """Record into ``redis`` from now on (the web app and each worker call it once, at start; forked
    work horses inherit it). A pause after an error on an earlier connection ends."""
    with _recorder.lock:
        _recorder.redis, _recorder.paused_until = redis, 0.0


def add(pipe: Pipeline, counter: Counter, **labels: str) -> None:
    """Put one count on a caller's pipeline (or transaction): the intake counts an accepted webhook in
    the same round trip that admits it, so the count and the admission are written together or not at all."""
    pipe.hincrby(counter.key, counter.field(labels), 1)
    pipe.expire(counter.key, TTL)


def count(counter: Counter, **labels: str) -> None:
    _recorder.write(lambda pipe: add(pipe, counter, **labels))


def count_triage(verdict: str, category: str, seconds: float | None = None) -> None:
    """One triage verdict, and how long it took (one transaction: counter and histogram agree)."""
    bound = None if seconds is None else next((b for b in TRIAGE_DURATION.buckets if seconds <= b), None)

    def build(pipe):
        pipe.hincrby(TRIAGES.key, TRIAGES.field({"verdict": verdict, "category": category}), 1)
        pipe.expire(TRIAGES.key, TTL)
        if seconds is not None:
            pipe.hincrby(TRIAGE_DURATION.key, "+Inf" if bound is None else repr(bound), 1)
            pipe.hincrbyfloat(TRIAGE_DURATION.key, "sum", seconds)
            pipe.hincrby(TRIAGE_DURATION.key, "count", 1)
            pipe.expire(TRIAGE_DURATION.key, TTL)

    _recorder.write(build)


def dead_lettered(triage_id: str) -> None:
    """A triage gave up: counted, and listed until it leaves ``dead_letter`` (a replay, a redelivery)."""

    def build(pipe):
        pipe.hincrby(TRIAGES.key, TRIAGES.field({"verdict": "could_not_triage", "category": "none"}), 1)
        pipe.expire(TRIAGES.key, TTL)
        pipe.sadd(keyspace.METRICS_DEAD_LETTER, triage_id)
        pipe.expire(keyspace.METRICS_DEAD_LETTER, TTL)  # its members' records expire after as long

    _recorder.write(build)


# --- reading (the web, at scrape time) ------------------------------------------------------------


@dataclass
class Snapshot:
    counters: dict[str, dict[tuple[str, ...], int]]
    histogram: tuple[list[tuple[str, int]], float, int]  # cumulative (le, count) buckets, sum, count


def read(redis: Redis) -> Snapshot:
    """Every counter and the histogram, in one round trip. Raises RedisError (the caller reports it)."""
    pipe = redis.pipeline(transaction=False)
    for counter in COUNTERS:
        pipe.hgetall(counter.key)
    pipe.hgetall(TRIAGE_DURATION.key)
    *raw_counters, raw_hist = pipe.execute()
    counters = {}
    for counter, raw in zip(COUNTERS, raw_counters, strict=True):
        values = {labels: 0 for labels in counter.known()}
        for field, value in raw.items():
            labels = tuple(field.decode().split("|"))
            if len(labels) == len(counter.labels):
                values[labels] = int(value)
        counters[counter.name] = values
    return Snapshot(counters, _cumulative(raw_hist, TRIAGE_DURATION.buckets))


def _cumulative(raw: Mapping[bytes, bytes], buckets: Iterable[float]) -> tuple[list[tuple[str, int]], float, int]:
    data = {k.decode(): v for k, v in raw.items()}
    running, out = 0, []
    for bound in buckets:
        running += int(data.get(repr(bound), 0))
        out.append((repr(bound), running))
    running += int(data.get("+Inf", 0))
    out.append(("+Inf", running))
    return out, float(data.get("sum", 0.0)), int(data.get("count", 0))
