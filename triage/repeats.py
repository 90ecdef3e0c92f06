"""Repeats: the same deterministic failure of a schedule again is a reply, not a new alert.

The same failure (same nodes, same rules) of the same schedule within
``slack.repeat_interval_seconds`` becomes a reply in the previous alert's thread instead of a new
top-level message, saying how many times it has been seen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from redis import Redis

from triage import keyspace
from triage.models import Failure


def failure_signature(failures: Iterable[Failure]) -> str:
    """Same nodes failing by the same rules = the same failure."""
    parts = sorted({f"{f.node or f.command}|{f.classification.rule or f.classification.category}" for f in failures})
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


class Repeats:
    def __init__(self, redis: Redis, interval_seconds: int):
        self.redis = redis
        self.interval = interval_seconds

    def seen(self, schedule: str | None, signature: str, origin: int) -> tuple[int, int] | None:
        """(first run of the series, times seen including this one) when this failure repeats within
        the interval; None (and remember this run as the first) otherwise."""
        if self.interval <= 0 or not schedule:
            return None
        key = keyspace.repeat(schedule, signature)
        first = json.dumps({"origin": origin})
        if self.redis.set(key, first, nx=True, ex=self.interval):
            self.redis.set(keyspace.repeat(schedule, signature, "count"), 1, ex=self.interval)
            return None
        previous = json.loads(self.redis.get(key) or first)["origin"]
        if previous == origin:
            return None  # the same run triaged again (redelivery, re-check)
        count = self.redis.incr(keyspace.repeat(schedule, signature, "count"))
        return previous, int(count)
