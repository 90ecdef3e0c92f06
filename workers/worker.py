"""Worker entry: ``python -m workers.worker`` (the Procfile's ``worker``).

Checks the whole configuration before taking a job, so a bad config stops the process
with one clear line instead of failing every job. Each worker also runs RQ's scheduler
(only one holds its lock at a time), which enqueues delayed retries and re-checks;
run as many workers as you like.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rq import Worker
from rq.serializers import JSONSerializer

from triage import broker
from triage.config import load_settings
from triage.errors import ConfigError
from workers import context


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="quit when the queue is empty")
    parser.add_argument("--name", help="worker name (default: RQ's random one)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        ctx = context.build(load_settings())
    except ConfigError as exc:
        print(f"bolt-triage worker: configuration error: {exc}", file=sys.stderr)
        return 2
    context.current.cache_clear()
    queues = [ctx.queue, broker.queue(ctx.store.redis, broker.SLACK_QUEUE)]  # triage first, then Slack
    worker = Worker(queues, connection=ctx.store.redis, serializer=JSONSerializer, name=args.name)
    worker.work(burst=args.burst, with_scheduler=True, logging_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
