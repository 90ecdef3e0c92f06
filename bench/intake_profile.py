"""Profile: where an accepted webhook's time goes, in process, against a bare route in the same app.

    python bench/intake_profile.py [--webhooks 3000] [--cprofile]

The intake target (``bench/intake.py``: 0.5x a bare Flask app) is not met; this shows why. It builds the
service's app (``triage.app.create_app``) on a private Redis with logging on (to /dev/null, as a deployed
process formats every line), posts distinct signed webhooks through Flask's test client, and times each
part the view calls: verification, parsing, the record, RQ building the job, the ledger's first events,
the one Redis round trip (``EVALSHA`` of the admitting script) and the log line. A bare ``return "", 204``
route in the same app is the baseline. ``--cprofile`` prints cProfile's top functions instead.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import REPO, private_redis
from intake import SECRET, signed_webhooks

sys.path.insert(0, str(REPO))
class Timers:
    """Wraps callables so that their wall time adds up under a label."""

    def __init__(self) -> None:
        self.spent: collections.Counter[str] = collections.Counter()

    def wrap(self, owner: Any, name: str, label: str) -> None:
        inner: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.spent[label] += time.perf_counter() - start

        setattr(owner, name, timed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=3000)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    with private_redis() as url:
        os.environ.update({"REDIS_URL": url, "PARADIME_WEBHOOK_SECRET": SECRET,
                           "PARADIME_API_ENDPOINT": "http://127.0.0.1:9/graphql", "PARADIME_API_KEY": "k",
                           "PARADIME_API_SECRET": "s", "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook"})
        from redis import Redis

        from triage import broker, intake, ledger, logs, store
        from triage.app import create_app

        logs.install([SECRET], stream=open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the process)
        app = create_app()
        app.add_url_rule("/bare", "bare", lambda: ("", 204), methods=["POST"])
        client = app.test_client()
        warm, measured = signed_webhooks(200, 1), signed_webhooks(args.webhooks, 1000)

        def post(path: str, batch: list[tuple[str, dict[str, str]]]) -> float:
            start = time.perf_counter()
            for body, headers in batch:
                status = client.post(path, data=body, headers=headers).status_code
                assert status in (202, 204), status
            return (time.perf_counter() - start) / len(batch) * 1e3

        post("/webhooks/paradime", warm)
        bare = post("/bare", measured)
        timers = Timers()
        if not args.cprofile:
            for owner, name, label in [
                (intake, "verify", "verification"), (intake, "decode_body", "decoding the body"),
                (intake, "parse_event", "parsing the event"), (store.Store, "_record", "the record"),
                (broker, "enqueue_triage", "RQ building the job"),
                (ledger.Ledger, "received", "the ledger's first events"),
                (Redis, "evalsha", "the one round trip (EVALSHA)"), (intake.log, "info", "the log line"),
            ]:
                timers.wrap(owner, name, label)
        profile = cProfile.Profile() if args.cprofile else None
        if profile:
            profile.enable()
        full = post("/webhooks/paradime", measured)
        if profile:
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    print(f"{args.webhooks} webhooks through Flask's test client, logging on, private Redis")
    print(f"accepted webhook {full:.3f} ms; bare route {bare:.3f} ms; ratio {bare / full:.2f}")
    for label, seconds in timers.spent.items():
        print(f"  {label:32} {seconds / args.webhooks * 1e3:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
