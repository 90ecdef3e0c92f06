"""Worker entry: ``triage worker`` (the Procfile's ``worker``; ``python -m workers.worker`` also works).

Before taking a job it checks what a worker needs and stops with one line naming the setting
when something is wrong: the configuration (policy, rule files, Paradime and Slack settings),
then the Paradime key (one cheap query) and the Slack credential (``auth.test``, or an empty
post to the incoming webhook, which Slack refuses without posting). An unreachable Redis is
waited for, with one log line per attempt, rather than crash-looping. Each worker also runs
RQ's scheduler (one holds its lock at a time), which enqueues delayed retries and re-checks;
run as many workers as you like.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker
from rq.serializers import JSONSerializer

from triage import broker, logs
from triage.config import load_settings, redact_url, require_worker
from triage.errors import ConfigError
from triage.probes import one_line, probe_paradime, probe_slack
from workers import context

log = logging.getLogger("workers.worker")

#: A job's heartbeat is refreshed this often and expires after it + 60 s: a dead worker's job is
#: found abandoned at most that long after the worker died, by the next maintenance of any worker.
JOB_MONITORING_SECONDS = 15
#: RQ's maintenance (abandoned jobs re-run or failed, the scheduler process restarted if it died, as
#: after a Redis restart) every this many seconds instead of RQ's 10 minutes; an idle worker wakes from
#: its blocking wait for jobs this often (worker_ttl below) to run it. Recovery bound:
#: 15 + 60 + 30 = 105 s after a worker dies; 30 s for the scheduler after Redis is back.
MAINTENANCE_SECONDS = 30


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage worker", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="quit when the queue is empty")
    parser.add_argument("--name", help="worker name (default: RQ's random one)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO").upper())
    parser.add_argument("--no-probe", action="store_true",
                        help="skip the Paradime and Slack credential checks at start")
    args = parser.parse_args(argv)
    try:
        log_setup = {"level": args.log_level, "fmt": os.environ.get("LOG_FORMAT", "text")}
        logs.install([], **log_setup)  # masks secret-shaped text already; the configured secrets once read:
        settings = load_settings()
        logs.install(logs.secrets_of(settings), **log_setup)
        warnings = require_worker(settings)
        ctx = context.build(settings)
    except (ConfigError, ValueError) as exc:  # logs.install: ValueError naming LOG_LEVEL / LOG_FORMAT
        print(f"bolt-triage worker: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.guard_std_streams()  # from here on, tracebacks printed by RQ's scheduler process too are log lines
    for warning in warnings:
        log.warning("%s", warning)
    wait_for_redis(ctx.store.redis, settings.redis_url)
    if not args.no_probe:
        for probe in (probe_paradime(settings), probe_slack(settings)):
            if probe.fatal:
                print(f"bolt-triage worker: {probe.name}: {probe.detail}", file=sys.stderr)
                return 2
            if probe.ok:
                log.info("%s", probe.line())
            else:
                log.warning("%s; starting anyway: jobs retry while it is unreachable", probe.line())
    context.install(ctx)
    queues = [ctx.queue, broker.queue(ctx.store.redis, broker.SLACK_QUEUE)]  # triage first, then Slack
    worker = Worker(queues, connection=ctx.store.redis, serializer=JSONSerializer, name=args.name,
                    job_monitoring_interval=JOB_MONITORING_SECONDS, maintenance_interval=MAINTENANCE_SECONDS,
                    worker_ttl=MAINTENANCE_SECONDS + 15)  # RQ blocks on the queue worker_ttl - 15 s between checks
    worker.work(burst=args.burst, with_scheduler=True, logging_level=args.log_level)
    return 0


def wait_for_redis(redis: Redis, url: str, max_delay: float = 30.0) -> None:
    """Block until Redis answers, saying so once per attempt (backing off to ``max_delay``)."""
    delay = 1.0
    while True:
        try:
            redis.ping()
            return
        except RedisError as exc:
            log.warning("waiting for Redis at %s: %s; next try in %gs", redact_url(url), one_line(exc), delay)
        time.sleep(delay)
        delay = min(delay * 2, max_delay)


if __name__ == "__main__":
    sys.exit(main())
