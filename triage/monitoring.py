"""``GET /healthz``, ``GET /readyz`` and ``GET /metrics``: is the web process up, can the service do its
work, and what has it done.

``/healthz`` makes no Redis call: it says the process answers (a liveness probe must not restart a web
process because Redis is away). ``/readyz`` says whether triage would happen now: Redis answers, an RQ
worker has sent a heartbeat within ``HEARTBEAT_SECONDS``, RQ's scheduler holds its lock (delayed
retries and re-checks run), and no queue holds more than ``monitoring.ready_max_queue_depth`` waiting
jobs; else ``503`` with one reason per failed check.

``/metrics`` is built at scrape time by :class:`ServiceCollector` on a registry of its own: counters
and the histogram from ``triage.metrics`` (kept in Redis by every process), gauges read live from RQ's
keys. prometheus-client's default process and GC metrics are left out on purpose: a scrape reaches one
gunicorn worker of one host, so they would describe a random process.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import datetime, timezone

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry
from redis import Redis
from redis.exceptions import RedisError
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.utils import utcparse
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from triage import broker, keyspace, logs, metrics
from triage.config import MetricsAuth, Settings
from triage.probes import one_line

bp = Blueprint("monitoring", __name__)

NAMESPACE = "bolt_triage"
HEARTBEAT_SECONDS = 60
QUEUES = (broker.TRIAGE_QUEUE, broker.SLACK_QUEUE)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    ctx = current_app.extensions["triage"]
    reasons = not_ready(ctx["store"].redis, ctx["settings"])
    if reasons:
        return jsonify(status="not_ready", reasons=[{"code": c, "message": m} for c, m in reasons]), 503
    return jsonify(status="ready")


@bp.get("/metrics")
def scrape():
    ctx = current_app.extensions["triage"]
    settings: Settings = ctx["settings"]
    if settings.monitoring.metrics_auth is MetricsAuth.TOKEN and not _token_ok(settings):
        resp = jsonify(error="unauthorized", message="GET /metrics needs Authorization: Bearer <read token>")
        resp.headers["WWW-Authenticate"] = 'Bearer realm="bolt-triage"'
        return resp, 401
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(ctx["metrics_registry"]), content_type=content_type)


def _token_ok(settings: Settings) -> bool:
    """The read or the admin token, compared in constant time; none configured never matches."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    given_bytes = given.strip().encode()
    return any(hmac.compare_digest(given_bytes, token.encode())
               for token in (settings.read_token, settings.admin_token) if token)


def registry(redis: Redis) -> CollectorRegistry:
    """The web app's metrics registry: only the service's own collector."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ServiceCollector(redis))
    return reg


# --- what RQ says -----------------------------------------------------------------------------------


def live_workers(redis: Redis, within: float = HEARTBEAT_SECONDS) -> int:
    """RQ workers of our triage queue whose last heartbeat is at most ``within`` seconds old. A dead
    worker's key expires after its TTL but stays listed until RQ cleans up: the heartbeat tells."""
    keys = sorted(redis.smembers(WORKERS_BY_QUEUE_KEY % broker.TRIAGE_QUEUE))
    if not keys:
        return 0
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, "last_heartbeat")
    now = datetime.now(timezone.utc)
    alive = 0
    for raw in pipe.execute():
        if raw:
            alive += (now - utcparse(raw.decode())).total_seconds() <= within
    return alive


def scheduler_missing(redis: Redis) -> list[str]:
    """The queues whose RQ scheduler lock nobody holds (it expires about a minute after the scheduler
    stopped refreshing it)."""
    pipe = redis.pipeline(transaction=False)
    for name in QUEUES:
        pipe.exists(RQScheduler.get_locking_key(name))
    return [name for name, held in zip(QUEUES, pipe.execute(), strict=True) if not held]


def queue_depths(redis: Redis) -> dict[str, int]:
    pipe = redis.pipeline(transaction=False)
    for name in QUEUES:
        pipe.llen(f"rq:queue:{name}")
    return dict(zip(QUEUES, (int(n) for n in pipe.execute()), strict=True))


def not_ready(redis: Redis, settings: Settings) -> list[tuple[str, str]]:
    """``(code, message)`` for each reason the service cannot triage now; empty when it can."""
    try:
        redis.ping()
    except RedisError as exc:
        return [("redis_unreachable", f"Redis unreachable: {logs.redact(one_line(exc))}")]
    try:
        reasons = []
        if not live_workers(redis):
            reasons.append(("no_worker", f"no RQ worker heartbeat within {HEARTBEAT_SECONDS} s"))
        missing = scheduler_missing(redis)
        if missing:
            reasons.append(("scheduler_not_running", f"RQ scheduler not running (no lock on queue "
                                                     f"{', '.join(missing)}): delayed retries and re-checks wait"))
        bound = settings.monitoring.ready_max_queue_depth
        for name, depth in queue_depths(redis).items():
            if depth > bound:
                reasons.append(("queue_too_deep", f"queue {name} holds {depth} jobs, over the bound of {bound} "
                                                  "(monitoring.ready_max_queue_depth)"))
        return reasons
    except RedisError as exc:
        return [("redis_unreachable", f"Redis unreachable: {logs.redact(one_line(exc))}")]


def dead_letter_size(redis: Redis) -> int:
    """Triages now dead-lettered: the ids ``metrics.dead_lettered`` listed, less those that have left
    ``dead_letter`` since (replayed, redelivered) or whose record expired; those are dropped here."""
    ids = sorted(m.decode() for m in redis.smembers(keyspace.METRICS_DEAD_LETTER))
    if not ids:
        return 0
    pipe = redis.pipeline(transaction=False)
    for tid in ids:
        pipe.hget(keyspace.triage(tid), "status")
    statuses = pipe.execute()
    gone = [tid for tid, status in zip(ids, statuses, strict=True) if status != b'"dead_letter"']
    if gone:
        redis.srem(keyspace.METRICS_DEAD_LETTER, *gone)
    return len(ids) - len(gone)


# --- the collector ----------------------------------------------------------------------------------


class ServiceCollector(Collector):
    """Reads Redis at each scrape. With Redis unreachable only ``bolt_triage_redis_up 0`` is shown:
    a missing series is honest, a zero would not be."""

    def __init__(self, redis: Redis):
        self.redis = redis

    def collect(self) -> Iterator[Metric]:
        try:
            snapshot = metrics.read(self.redis)
            depths = queue_depths(self.redis)
            scheduled = {name: ScheduledJobRegistry(name, connection=self.redis).get_job_count(cleanup=False)
                         for name in QUEUES}
            workers, missing = live_workers(self.redis), scheduler_missing(self.redis)
            dead = dead_letter_size(self.redis)
        except RedisError:
            yield GaugeMetricFamily(f"{NAMESPACE}_redis_up", "Whether the web process could read Redis.", value=0)
            return
        yield GaugeMetricFamily(f"{NAMESPACE}_redis_up", "Whether the web process could read Redis.", value=1)
        for counter in metrics.COUNTERS:
            family = CounterMetricFamily(f"{NAMESPACE}_{counter.name}", counter.help, labels=counter.labels)
            for labels, value in sorted(snapshot.counters[counter.name].items()):
                family.add_metric(labels, value)
            yield family
        buckets, total, _ = snapshot.histogram
        hist = metrics.TRIAGE_DURATION
        yield HistogramMetricFamily(f"{NAMESPACE}_{hist.name}", hist.help, buckets=buckets, sum_value=total)
        depth = GaugeMetricFamily(f"{NAMESPACE}_queue_depth", "Jobs waiting in an RQ queue.", labels=["queue"])
        waiting = GaugeMetricFamily(f"{NAMESPACE}_scheduled_jobs", "Jobs scheduled for later (backoffs, re-checks, "
                                    "paced Slack deliveries).", labels=["queue"])
        for name in QUEUES:
            depth.add_metric([name], depths[name])
            waiting.add_metric([name], scheduled[name])
        yield depth
        yield waiting
        yield GaugeMetricFamily(f"{NAMESPACE}_dead_letter_size", "Triages now dead-lettered (gave up).", value=dead)
        yield GaugeMetricFamily(f"{NAMESPACE}_workers", f"RQ workers with a heartbeat within {HEARTBEAT_SECONDS} s.",
                                value=workers)
        yield GaugeMetricFamily(f"{NAMESPACE}_scheduler_up", "Whether RQ's scheduler holds the lock of every queue.",
                                value=0 if missing else 1)
