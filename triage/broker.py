"""The RQ queue shared by the web app (which enqueues) and the workers (which run jobs).

Jobs are serialised as JSON rather than pickle: a job in Redis is then readable by
an operator and cannot execute code when it is loaded.
"""

from __future__ import annotations

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

#: Dotted paths, so the web app never imports the worker code.
TRIAGE_JOB = "workers.jobs.triage_webhook"
RETRY_JOB = "workers.jobs.perform_retry"
SLACK_JOB = "workers.notify.deliver"

#: Workers listen to both, triage first: Slack deliveries never hold up a triage.
TRIAGE_QUEUE = "triage"
SLACK_QUEUE = "slack"

JOB_TIMEOUT = 600  # one triage: a few API calls and a download, each bounded
FAILURE_TTL = 30 * 24 * 3600  # keep failed jobs a month for the operations API


def connect(url: str) -> Redis:
    """A Redis client that fails fast: the web request must answer 503, not hang."""
    return Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5, health_check_interval=30)


def queue(redis: Redis, name: str = TRIAGE_QUEUE) -> Queue:
    return Queue(name, connection=redis, serializer=JSONSerializer, default_timeout=JOB_TIMEOUT)
