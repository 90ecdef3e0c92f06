"""Everything bolt-triage remembers, in Redis, under the ``bt:`` prefix.

Redis is the single source of truth shared by every gunicorn worker and RQ worker,
so the "never twice" guarantees live here as atomic ``SET NX`` claims:

* ``bt:delivery:<webhook-id>`` and ``bt:event:<run|cmds>:<event>`` — one job per delivery / run event;
* ``bt:triaged:<run_id>`` — one triage per finished run, whichever delivery got there first;
* ``bt:retry:<run_id>`` — the retry mutation for a run is claimed before it is sent and records its outcome;
* ``bt:slack:<run_id>:<kind>`` — one Slack post per run and kind.

Chains of retries: ``bt:chain:<run_id>`` maps every run to its original run and attempt number;
``bt:story:<original_run_id>`` holds the story of the chain (schedule, attempts, Slack thread, outcome).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError

from triage.lifecycle import IllegalTransition, TriageStatus

log = logging.getLogger(__name__)

PREFIX = "bt:"
RECORD_TTL = 30 * 24 * 3600  # triage records, chains and guards outlive any retry chain
TRIAGE_INDEX_MAX = 100_000  # triages listed in bt:triages, newest kept


def new_triage_id() -> str:
    return "tr_" + uuid.uuid4().hex[:16]


@dataclass
class ChainLink:
    """Where a run sits in a chain of automatic retries (attempt 0 is the original run)."""

    origin: int
    attempt: int
    parent: int | None = None  # the run whose retry created this one
    via: str | None = None  # "retry" (same code) or "trigger" (the schedule again: maybe new code)


@dataclass
class Story:
    """The life of one original failed run and its retries: what Slack is told, and what is done."""

    origin: int
    schedule_name: str | None = None
    branch: str | None = None
    attempts: int = 0  # automatic retries issued so far
    runs: list[int] = field(default_factory=list)
    status: str = "open"  # a StoryStatus value (triage.lifecycle)
    slack_channel: str | None = None
    slack_ts: str | None = None
    flaky_nodes: list[str] = field(default_factory=list)
    incident: str | None = None  # told as part of a storm's incident message (triage.storm)
    repeat_of: int | None = None  # told as a reply under this earlier run's alert (same failure again)


_CLAIM_POST = """
local state = redis.call('GET', KEYS[1])
if state and state ~= 'failed' then return 0 end
redis.call('SET', KEYS[1], 'pending', 'EX', ARGV[1])
return 1
"""


_THREAD_SETTLED = """
redis.call('SADD', KEYS[2], ARGV[1])
local done = tonumber(redis.call('GET', KEYS[1]) or '0')
while redis.call('SISMEMBER', KEYS[2], tostring(done + 1)) == 1 do done = done + 1 end
redis.call('SET', KEYS[1], done, 'EX', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return done
"""


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Store:
    def __init__(self, redis: Redis, dedup_ttl: int = 604_800):
        self.redis = redis
        self.dedup_ttl = dedup_ttl
        self._claim_post = redis.register_script(_CLAIM_POST)
        self._thread_settled = redis.register_script(_THREAD_SETTLED)
        self._release = redis.register_script(_RELEASE)

    # --- intake dedup ----------------------------------------------------------------------

    def admit(self, keys: list[str], triage_id: str, record: dict[str, Any],
              enqueue: Callable[[Pipeline], Any]) -> str | None:
        """Claim every key, record the triage and enqueue its job in one MULTI/EXEC, or do nothing.

        Returns the triage id holding an earlier claim (a duplicate), else None. Because the three
        writes are one transaction, a Redis failure at any point leaves either all of them or none:
        never a claim without a job behind it (a claim that timed out on the client but ran on the
        server has its job too, so answering its redelivery ``duplicate`` is right).
        """
        full = [f"{PREFIX}{k}" for k in keys]
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*full)
                    earlier = next((v.decode() for v in pipe.mget(full) if v), None)
                    if earlier:
                        pipe.unwatch()
                        return earlier
                    pipe.multi()
                    for key in full:
                        pipe.set(key, triage_id, ex=self.dedup_ttl)
                    self._record(pipe, triage_id, record)
                    enqueue(pipe)
                    pipe.execute()
                    return None
                except WatchError:  # another delivery claimed a key meanwhile: read it again
                    continue

    def reopen(self, triage_id: str, enqueue: Callable[[Pipeline], Any], **fields: Any) -> bool:
        """Start a new attempt of a triage that will not complete by itself (failed, dead-lettered, or
        with its job lost: the caller has checked that no job of it is alive); False when it is done or
        canceled, or another caller reopened it first."""
        key = f"{PREFIX}triage:{triage_id}"
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                raw = pipe.hget(key, "status")
                status = TriageStatus(json.loads(raw)) if raw else None
                if status in (TriageStatus.DONE, TriageStatus.CANCELED):
                    pipe.unwatch()
                    return False
                pipe.multi()
                self._record(pipe, triage_id, {**fields, "status": TriageStatus.QUEUED})
                pipe.hincrby(key, "attempts", 1)
                enqueue(pipe)
                pipe.execute()
                return True
            except WatchError:
                return False

    def set_status(self, triage_id: str, status: TriageStatus, **fields: Any) -> None:
        """Move a triage to ``status`` (checked against the lifecycle) and record ``fields`` with it."""
        key = f"{PREFIX}triage:{triage_id}"
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.hget(key, "status")
                    if raw is not None:
                        TriageStatus(json.loads(raw)).move_to(status)
                    pipe.multi()
                    self._record(pipe, triage_id, {**fields, "status": status})
                    pipe.execute()
                    return
                except WatchError:
                    continue

    def advance(self, triage_id: str, status: TriageStatus, **fields: Any) -> bool:
        """``set_status`` for a job that may be late: an illegal move (a newer state is already
        recorded, e.g. canceled) is refused and logged, and the job goes on; False then."""
        try:
            self.set_status(triage_id, status, **fields)
        except IllegalTransition as exc:
            log.warning("triage %s: %s; left as it is", triage_id, exc)
            return False
        return True

    def triage_status(self, triage_id: str) -> TriageStatus | None:
        raw = self.redis.hget(f"{PREFIX}triage:{triage_id}", "status")
        return TriageStatus(json.loads(raw)) if raw else None

    # --- triage records (what the operations API will list) -----------------------------------

    def save_triage(self, triage_id: str, **fields: Any) -> None:
        """Record fields of a triage (not its status: ``set_status`` checks the move)."""
        pipe = self.redis.pipeline()
        self._record(pipe, triage_id, fields)
        pipe.execute()

    @staticmethod
    def _record(pipe: Pipeline, triage_id: str, fields: dict[str, Any]) -> None:
        key = f"{PREFIX}triage:{triage_id}"
        data = {k: json.dumps(v) for k, v in fields.items()}
        data.setdefault("updated_at", json.dumps(time.time()))
        pipe.hset(key, mapping=data)
        pipe.expire(key, RECORD_TTL)
        pipe.zadd(f"{PREFIX}triages", {triage_id: time.time()}, nx=True)
        pipe.zremrangebyrank(f"{PREFIX}triages", 0, -TRIAGE_INDEX_MAX - 1)  # bounded: the oldest fall off
        pipe.expire(f"{PREFIX}triages", RECORD_TTL)

    def get_triages(self, triage_ids: list[str]) -> list[dict[str, Any] | None]:
        """Several records in one round trip (the operations API lists pages of them)."""
        pipe = self.redis.pipeline()
        for triage_id in triage_ids:
            pipe.hgetall(f"{PREFIX}triage:{triage_id}")
        return [{k.decode(): json.loads(v) for k, v in raw.items()} if raw else None for raw in pipe.execute()]

    def triage_index(self, before: float, count: int) -> list[tuple[str, float]]:
        """(triage id, admitted at) from ``bt:triages``, newest first, admitted at or before ``before``."""
        rows = self.redis.zrevrangebyscore(f"{PREFIX}triages", before, "-inf", start=0, num=count, withscores=True)
        return [(tid.decode(), score) for tid, score in rows]

    def admit_replay(self, triage_id: str, record: dict[str, Any], run_id: int | None,
                     enqueue: Callable[[Pipeline], Any], busy: Callable[[str], bool]) -> str | None:
        """Record and enqueue a replay, handing it the run's once-per-run triage claim (``triaged:<run>``),
        in one transaction. Returns the triage holding the claim when it is still in progress (``busy``):
        then nothing is done, so two triages never work on one run at once. The run's other guards
        (``retry:<run>``, the Slack post claims) are left as they are: a replay cannot retry a run twice
        or post a message twice."""
        key = f"{PREFIX}triaged:{run_id}"
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    owner = pipe.get(key) if run_id is not None else None
                    if owner and busy(owner.decode()):
                        pipe.unwatch()
                        return owner.decode()
                    pipe.multi()
                    if run_id is not None:
                        pipe.set(key, triage_id, ex=RECORD_TTL)
                    self._record(pipe, triage_id, record)
                    enqueue(pipe)
                    pipe.execute()
                    return None
                except WatchError:
                    continue

    def release(self, keys: list[str], owner: str) -> list[str]:
        """Delete each claim that ``owner`` holds (compare-and-delete); the keys deleted."""
        return [k for k in keys if self._release(keys=[f"{PREFIX}{k}"], args=[owner])]

    def get_triage(self, triage_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(f"{PREFIX}triage:{triage_id}")
        if not raw:
            return None
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    # --- once per run ---------------------------------------------------------------------------

    def claim(self, key: str, value: str) -> bool:
        """Generic once-only claim (SET NX) with the record TTL."""
        return bool(self.redis.set(f"{PREFIX}{key}", value, nx=True, ex=RECORD_TTL))

    def get(self, key: str) -> str | None:
        value = self.redis.get(f"{PREFIX}{key}")
        return value.decode() if value is not None else None

    def claim_post(self, key: str, ttl: int) -> bool:
        """Claim a Slack post for sending: only when nobody holds it (absent, or its last try failed).

        The claim reads ``pending`` and lives ``ttl`` seconds, so a worker killed while sending lets a
        later delivery of the same post try again; once sent, ``put`` records the message's ts for good.
        """
        return bool(self._claim_post(keys=[f"{PREFIX}{key}"], args=[ttl]))

    # --- thread order: a story's replies are posted in the order their events happened ----------

    def next_in_thread(self, origin: int) -> int:
        """The sequence number of a new reply in the story's thread (1, 2, …)."""
        key = f"{PREFIX}thread:{origin}:seq"
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, RECORD_TTL)
        return int(pipe.execute()[0])

    def thread_turn(self, origin: int, seq: int) -> bool:
        """Have all replies before ``seq`` been settled (posted, folded, or found already sent)?"""
        return int(self.redis.get(f"{PREFIX}thread:{origin}:done") or 0) >= seq - 1

    def thread_settled(self, origin: int, seq: int) -> None:
        self._thread_settled(keys=[f"{PREFIX}thread:{origin}:done", f"{PREFIX}thread:{origin}:settled"],
                             args=[seq, RECORD_TTL])

    def put(self, key: str, value: str, ttl: int = RECORD_TTL) -> None:
        self.redis.set(f"{PREFIX}{key}", value, ex=ttl)

    def delete(self, key: str) -> None:
        self.redis.delete(f"{PREFIX}{key}")

    # --- chains -----------------------------------------------------------------------------------

    def link(self, run_id: int) -> ChainLink | None:
        raw = self.redis.get(f"{PREFIX}chain:{run_id}")
        return ChainLink(**json.loads(raw)) if raw else None

    def set_link(self, run_id: int, link: ChainLink) -> None:
        self.redis.set(f"{PREFIX}chain:{run_id}", json.dumps(asdict(link)), ex=RECORD_TTL)

    def story_lock(self, origin: int):
        """Serialise read-modify-write of one chain's story across workers."""
        return self.redis.lock(f"{PREFIX}lock:story:{origin}", timeout=60, blocking_timeout=60)

    def story(self, origin: int) -> Story:
        raw = self.redis.get(f"{PREFIX}story:{origin}")
        return Story(**json.loads(raw)) if raw else Story(origin=origin, runs=[origin])

    def story_statuses(self, origins: list[int | None]) -> list[str | None]:
        """The status of each chain's story (None: no story, or no origin), in one round trip."""
        pipe = self.redis.pipeline()
        for origin in origins:
            pipe.get(f"{PREFIX}story:{origin}")
        return [json.loads(raw)["status"] if raw and origin is not None else None
                for origin, raw in zip(origins, pipe.execute(), strict=True)]

    def save_story(self, story: Story) -> None:
        self.redis.set(f"{PREFIX}story:{story.origin}", json.dumps(asdict(story)), ex=RECORD_TTL)

    def update_story(self, origin: int, **fields: Any) -> Story:
        """Set some fields of a chain's story under its lock; the updated story is returned."""
        with self.story_lock(origin):
            story = self.story(origin)
            for name, value in fields.items():
                setattr(story, name, value)
            self.save_story(story)
        return story
