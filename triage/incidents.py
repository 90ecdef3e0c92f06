"""Storm control: one incident message when many schedules fail the same transient way at once.

When ``slack.storm.min_schedules`` different schedules fail with the same transient category in one
channel within ``slack.storm.window_seconds`` (a warehouse outage), the runs from that point on are
not posted one by one: one incident message lists them all (the earlier ones of the window too) and
is updated as each run recovers or gives up. Its statuses are read from the runs' stories when it is
rendered, so it is never stale. Where the incident message was posted is recorded here as well, so
that it is posted once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis

from triage import keyspace

INCIDENT_TTL = 30 * 24 * 3600
POST_CLAIM_SECONDS = 90  # while its first post is being sent


@dataclass(frozen=True)
class Incident:
    key: str  # its id: "incident:<channel>:<category>:<start>"
    channel: str
    category: str
    adapter: str | None
    members: tuple[tuple[str | None, int], ...]  # (schedule, original run id), in order of arrival


@dataclass(frozen=True)
class Where:
    channel: str | None
    ts: str | None


class Storms:
    def __init__(self, redis: Redis, window_seconds: int, min_schedules: int,
                 clock: Callable[[], float] = time.time):
        self.redis = redis
        self.window = window_seconds
        self.min_schedules = min_schedules
        self.clock = clock

    def join(self, channel: str, category: str, adapter: str | None, schedule: str | None,
             origin: int) -> Incident | None:
        """Record a transient failure; return the incident it belongs to once the storm threshold is met."""
        if self.min_schedules <= 0:
            return None
        now = self.clock()
        recent = keyspace.storm_window(channel, category)
        current = keyspace.storm_incident(channel, category)
        pipe = self.redis.pipeline()
        pipe.zadd(recent, {json.dumps([schedule, origin]): now})
        pipe.zremrangebyscore(recent, 0, now - self.window)
        pipe.expire(recent, self.window * 2)
        pipe.zrange(recent, 0, -1, withscores=True)
        arrivals = [(tuple(json.loads(m)), at) for m, at in pipe.execute()[-1]]
        members = [m for m, _ in arrivals]
        if len({s or f"run {o}" for s, o in members}) < self.min_schedules:
            return None
        key = f"incident:{channel}:{category}:{int(now)}"
        self.redis.set(current, key, nx=True, ex=self.window)  # one incident per storm, whoever gets here first
        key = self.redis.get(current).decode()
        pipe = self.redis.pipeline()
        pipe.hsetnx(keyspace.incident(key), "meta",
                    json.dumps({"channel": channel, "category": category, "adapter": adapter}))
        for member, at in arrivals:  # scored by arrival, so the message lists runs in the order they failed
            pipe.zadd(keyspace.incident(key, "runs"), {json.dumps(list(member)): at}, nx=True)
        pipe.expire(keyspace.incident(key), INCIDENT_TTL)
        pipe.expire(keyspace.incident(key, "runs"), INCIDENT_TTL)
        pipe.execute()
        return self.get(key)

    def get(self, key: str) -> Incident | None:
        meta = self.redis.hget(keyspace.incident(key), "meta")
        if meta is None:
            return None
        m = json.loads(meta)
        members = tuple(tuple(json.loads(x)) for x in self.redis.zrange(keyspace.incident(key, "runs"), 0, -1))
        return Incident(key=key, channel=m["channel"], category=m["category"], adapter=m["adapter"],
                        members=members)

    # --- its message: posted once, then updated -----------------------------------------------------

    def posted_at(self, key: str) -> Where | None:
        raw = self.redis.get(keyspace.incident(key, "posted"))
        if raw is None:
            return None
        where = json.loads(raw)
        return Where(where.get("channel"), where.get("ts"))

    def claim_post(self, key: str) -> bool:
        return bool(self.redis.set(keyspace.incident(key, "post"), "pending", nx=True, ex=POST_CLAIM_SECONDS))

    def release_post(self, key: str) -> None:
        self.redis.delete(keyspace.incident(key, "post"))

    def record_post(self, key: str, channel: str | None, ts: str | None) -> None:
        self.redis.set(keyspace.incident(key, "posted"), json.dumps({"channel": channel, "ts": ts}),
                       ex=INCIDENT_TTL)
