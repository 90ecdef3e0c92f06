"""The automatic-retry switch: an operator pauses retries (for a schedule glob, until a time), e.g.
during a warehouse incident, when every retry would fail again and burn money.

While a pause applies, triage goes on as usual — evidence, classification, the Slack story — but a
decision to retry becomes "Not retrying: automatic retries paused (<reason>) until <time>"
(``Reason.PAUSED``), so the story's owners are mentioned as for any run a human must look at; and a
retry scheduled *before* the pause that comes due during it is not sent either. Nothing is retried
later by itself: a replay (``POST /api/v1/triages/<id>/replay``) after the pause does that, under
the same guards as any triage.

Pauses live in one hash (``triage.ledger.Keys.pauses``): field = schedule glob, value = the pause.
An expired pause is ignored when read and pruned when the switch is next written.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from fnmatch import fnmatchcase

from redis import Redis

from triage.ledger import Keys
from triage.models import Decision, Reason
from triage.summary import paused_clause


@dataclass(frozen=True)
class Pause:
    schedule: str  # a schedule name or glob ("*": every schedule)
    until: float  # epoch seconds
    reason: str
    created_at: float

    def applies_to(self, schedule_name: str | None, now: float | None = None) -> bool:
        if (now or time.time()) >= self.until:
            return False
        return fnmatchcase(schedule_name or "", self.schedule)

    @property
    def until_dt(self) -> datetime:
        return datetime.fromtimestamp(self.until, timezone.utc)

    def clause(self) -> str:
        return paused_clause(self.reason, self.until_dt)

    def to_dict(self) -> dict:
        return {**asdict(self), "until": self.until_dt.isoformat(),
                "created_at": datetime.fromtimestamp(self.created_at, timezone.utc).isoformat()}


class Pauses:
    def __init__(self, redis: Redis):
        self.redis = redis

    def all(self) -> list[Pause]:
        """Pauses in effect, soonest ending first."""
        now = time.time()
        found = [Pause(**json.loads(v)) for v in self.redis.hgetall(Keys.pauses()).values()]
        return sorted((p for p in found if p.until > now), key=lambda p: p.until)

    def pause(self, schedule: str, until: float, reason: str) -> Pause:
        """Set (or replace) the pause of ``schedule``; the hash lives until its last pause ends."""
        pause = Pause(schedule=schedule, until=until, reason=reason, created_at=time.time())
        now = time.time()
        stored = [Pause(**json.loads(v)) for v in self.redis.hgetall(Keys.pauses()).values()]
        pipe = self.redis.pipeline()
        pipe.hset(Keys.pauses(), schedule, json.dumps(asdict(pause)))
        for old in stored:
            if old.until <= now and old.schedule != schedule:
                pipe.hdel(Keys.pauses(), old.schedule)
        others = [p.until for p in stored if p.until > now and p.schedule != schedule]
        pipe.expireat(Keys.pauses(), int(max([until, *others])) + 1)
        pipe.execute()
        return pause

    def resume(self, schedule: str | None) -> list[str]:
        """End the pause of ``schedule`` (exactly that glob), or every pause; the globs ended."""
        ended = [p.schedule for p in self.all() if schedule is None or p.schedule == schedule]
        if ended:
            self.redis.hdel(Keys.pauses(), *ended)
        return ended

    def applying(self, schedule_name: str | None) -> Pause | None:
        """The pause that holds this schedule's retries now (the one ending last), if any."""
        matching = [p for p in self.all() if p.applies_to(schedule_name)]
        return max(matching, key=lambda p: p.until) if matching else None


def hold(redis: Redis, decision: Decision, schedule_name: str | None) -> Decision:
    """``decision``, unless it is a retry and a pause applies: then not retrying, and why."""
    if decision.action not in ("retry", "trigger"):
        return decision
    pause = Pauses(redis).applying(schedule_name)
    if pause is None:
        return decision
    clause = pause.clause()
    return Decision("none", f"{clause} (would have been: {decision.reason})", code=Reason.PAUSED, detail=clause)
