"""Storm control: fewer, better Slack messages when many things fail at once or the same way again.

* **Incidents.** When ``slack.storm.min_schedules`` different schedules fail with the same transient
  category in one channel within ``slack.storm.window_seconds`` (a warehouse outage), the runs from
  that point on are not posted one by one: one incident message lists them all (the earlier ones of
  the window too) and is updated as each run recovers or gives up. Its statuses are read from the
  runs' stories when it is rendered, so it is never stale.
* **Repeats.** The same deterministic failure (same nodes, same rules) of the same schedule within
  ``slack.repeat_interval_seconds`` becomes a reply in the previous alert's thread instead of a new
  top-level message.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

from redis import Redis

from triage.models import Failure


@dataclass(frozen=True)
class Incident:
    key: str  # "incident:<channel>:<category>:<start>"
    channel: str
    category: str
    adapter: str | None
    members: tuple[tuple[str | None, int], ...]  # (schedule, original run id), in order of arrival


class Storms:
    def __init__(self, redis: Redis, window_seconds: int, min_schedules: int):
        self.redis = redis
        self.window = window_seconds
        self.min_schedules = min_schedules

    def join(self, channel: str, category: str, adapter: str | None, schedule: str | None,
             origin: int) -> Incident | None:
        """Record a transient failure; return the incident it belongs to once the storm threshold is met."""
        if self.min_schedules <= 0:
            return None
        now = time.time()
        recent = f"bt:storm:{channel}:{category}"
        current = f"bt:storm-incident:{channel}:{category}"
        pipe = self.redis.pipeline()
        pipe.zadd(recent, {json.dumps([schedule, origin]): now})
        pipe.zremrangebyscore(recent, 0, now - self.window)
        pipe.expire(recent, self.window * 2)
        pipe.zrange(recent, 0, -1)
        members = [tuple(json.loads(m)) for m in pipe.execute()[-1]]
        if len({s or f"run {o}" for s, o in members}) < self.min_schedules:
            return None
        key = f"incident:{channel}:{category}:{int(now)}"
        self.redis.set(current, key, nx=True, ex=self.window)  # one incident per storm, whoever gets here first
        key = self.redis.get(current).decode()
        stored = f"bt:{key}"
        pipe = self.redis.pipeline()
        pipe.hsetnx(stored, "meta", json.dumps({"channel": channel, "category": category, "adapter": adapter}))
        for member in members:
            pipe.zadd(f"{stored}:runs", {json.dumps(list(member)): now}, nx=True)
        pipe.expire(stored, 30 * 24 * 3600)
        pipe.expire(f"{stored}:runs", 30 * 24 * 3600)
        pipe.execute()
        return self.get(key)

    def get(self, key: str) -> Incident | None:
        meta = self.redis.hget(f"bt:{key}", "meta")
        if meta is None:
            return None
        m = json.loads(meta)
        members = tuple(tuple(json.loads(x)) for x in self.redis.zrange(f"bt:{key}:runs", 0, -1))
        return Incident(key=key, channel=m["channel"], category=m["category"], adapter=m["adapter"],
                        members=members)


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
        key = f"bt:repeat:{schedule}:{signature}"
        first = json.dumps({"origin": origin})
        if self.redis.set(key, first, nx=True, ex=self.interval):
            self.redis.set(f"{key}:count", 1, ex=self.interval)
            return None
        previous = json.loads(self.redis.get(key) or first)["origin"]
        if previous == origin:
            return None  # the same run triaged again (redelivery, re-check)
        count = self.redis.incr(f"{key}:count")
        return previous, int(count)
