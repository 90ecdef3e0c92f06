"""The RQ queue shared by the web app (which enqueues) and the workers (which run jobs).

Jobs are serialised as JSON rather than pickle: a job in Redis is then readable by
an operator and cannot execute code when it is loaded.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Callback, Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from triage.config import JobPolicy

#: Dotted paths, so the web app never imports the worker code.
TRIAGE_JOB = "workers.jobs.triage_webhook"
RETRY_JOB = "workers.jobs.perform_retry"
SLACK_JOB = "workers.deliver.deliver"  # workers.notify.deliver (0.1) still imports
#: Called by RQ when a triage job fails, raising or abandoned by a dead worker (RQ's cleanup).
TRIAGE_FAILED = "workers.jobs.triage_failed"
RETRY_FAILED = "workers.jobs.retry_failed"

#: Workers listen to both, Slack first: an alert never waits behind a backlog of triages (bench/pipeline.py).
TRIAGE_QUEUE = "triage"
SLACK_QUEUE = "slack"

JOB_TIMEOUT = 600  # one triage: a few API calls and a download, each bounded
FAILURE_TTL = 30 * 24 * 3600  # keep failed jobs a month for the operations API


try:  # redis-py >= 7: without it, every new connection reads redis-py's version from its package metadata
    from redis.driver_info import DriverInfo

    _DRIVER: dict[str, Any] = {"driver_info": DriverInfo()}  # read once, here
except ImportError:  # older redis-py: its own default
    _DRIVER = {}


def connect(url: str) -> Redis:
    """A Redis client that fails fast: the web request must answer 503, not hang.

    Its connections share one ``DriverInfo``: redis-py otherwise reads its version from the package
    metadata for every new connection, which is 6 of the 9 ms a forked work horse spends opening its
    first one (bench/pipeline.py; the horse cannot use the parent's connections)."""
    return Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5, health_check_interval=30, **_DRIVER)


def queue(redis: Redis, name: str = TRIAGE_QUEUE) -> Queue:
    return Queue(name, connection=redis, serializer=JSONSerializer, default_timeout=JOB_TIMEOUT)


def enqueue_triage(queue: Queue, triage_id: str, event: dict[str, Any], jobs: JobPolicy, *, job_id: str,
                   check: int = 0, pipeline: Pipeline | None = None, description: str = "") -> Job:
    """A triage job as every path makes it: JSON arguments, RQ retries for a dead worker or a crash,
    and the failure callback that dead-letters it when no attempt is left."""
    return queue.enqueue(TRIAGE_JOB, triage_id, event, check, job_id=job_id, failure_ttl=FAILURE_TTL,
                         description=description or f"triage {triage_id}", retry=triage_retry(jobs),
                         on_failure=triage_callback(), pipeline=pipeline)


def triage_retry(jobs: JobPolicy) -> Retry | None:
    return Retry(max=jobs.attempts - 1, interval=list(jobs.retry_intervals)) if jobs.attempts > 1 else None


def triage_callback() -> Callback:
    return Callback(TRIAGE_FAILED)


def job_alive(redis: Redis, job_id: str | None) -> bool:
    """Will this job still run (queued, scheduled, started, waiting on a dependency, or done)?"""
    if not job_id:
        return False
    job = Queue(TRIAGE_QUEUE, connection=redis, serializer=JSONSerializer).fetch_job(job_id)
    if job is None:
        return False
    return job.get_status(refresh=False) not in ("failed", "stopped", "canceled")
