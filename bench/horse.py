"""Benchmark: what a forked work horse pays before its job runs, with and without the worker's remedies.

    python bench/horse.py [--forks 40]

In one process with the worker's context built (settings, rules, clients: what ``triage worker`` holds
before its loop), times ``fork()`` + the child doing one thing + ``waitpid``, averaged over ``--forks``:

* ``exit``: nothing (the floor: fork, exit, reap);
* ``gc``: a full garbage collection in the child, before and after ``gc.freeze()`` in the parent (the
  collection walks, and so copies, every page of the parent's objects unless they are frozen);
* ``connect``: the child's first Redis command (a new connection: the parent's cannot be shared), with
  redis-py's default driver info (its version read from the package metadata for every connection) and
  with the one ``triage.broker.connect`` shares.

Prints each as milliseconds and as a ratio to ``exit`` measured in the same run. Starts a private Redis.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable

from _common import REPO, private_redis
from redis import Redis

sys.path.insert(0, str(REPO))


def per_fork(child: Callable[[], object], forks: int) -> float:
    """Milliseconds per fork + ``child()`` in the child + reap."""
    start = time.perf_counter()
    for _ in range(forks):
        pid = os.fork()
        if pid == 0:
            child()
            os._exit(0)
        os.waitpid(pid, 0)
    return (time.perf_counter() - start) / forks * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forks", type=int, default=40)
    args = parser.parse_args()
    with private_redis() as url:
        os.environ.update({"REDIS_URL": url, "PARADIME_API_ENDPOINT": "http://127.0.0.1:9/graphql",
                           "PARADIME_API_KEY": "bench-key", "PARADIME_API_SECRET": "bench-secret",
                           "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook",
                           "PARADIME_WEBHOOK_TOKEN": "bench-token-0123456789abcdef"})
        from triage import broker
        from triage.config import load_settings
        from workers import context

        ctx = context.build(load_settings())
        context.install(ctx)
        plain = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5, health_check_interval=30)
        shared = broker.connect(url)
        plain.ping()  # the parent's connections exist, as a worker's do
        shared.ping()

        floor = per_fork(lambda: None, args.forks)
        rows = [("exit", floor),
                ("gc (no freeze)", per_fork(gc.collect, args.forks)),
                ("connect (redis-py default driver info)", per_fork(plain.ping, args.forks)),
                ("connect (shared DriverInfo)", per_fork(shared.ping, args.forks))]
        gc.freeze()
        rows += [("gc (after gc.freeze())", per_fork(gc.collect, args.forks)),
                 ("exit (after gc.freeze())", per_fork(lambda: None, args.forks))]
    print(f"{args.forks} forks each; worker context built, RSS {rss_kb()} kB")
    print("| in the horse | ms per fork | / exit |")
    print("|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} | {ms / floor:.2f} |")
    return 0


def rss_kb() -> str:
    with open("/proc/self/status") as status:
        return next((line.split()[1] for line in status if line.startswith("VmRSS")), "?")


if __name__ == "__main__":
    sys.exit(main())
