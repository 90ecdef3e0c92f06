"""What bolt-triage remembers about triages, runs, chains, retries and Slack posts, in Redis.

Redis is the single source of truth shared by every gunicorn worker and RQ worker, so the
"never twice" guarantees live here as atomic claims (the keys: ``triage.keyspace``):

* ``Store.admit`` — one job per delivery / run event (claims, record and enqueue in one MULTI/EXEC);
* ``Store.claim_run`` — one triage per finished run, whichever delivery got there first;
* ``RetryGuard`` — the retry mutation for a run is claimed before it is sent and records its outcome;
* ``PostLedger`` — one Slack post per message id, and a story's replies in the order of its events.

Chains of retries: ``Store.link`` maps every run to its original run and attempt number;
``Store.story`` holds the story of the chain (schedule, attempts, Slack thread, outcome).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from triage import keyspace
from triage.config import Retention
from triage.enums import TextEnum
from triage.lifecycle import IllegalTransition, TriageStatus

log = logging.getLogger(__name__)

SHIPPED_RETENTION = Retention()
RECORD_TTL = SHIPPED_RETENTION.record_seconds  # the shipped default (retention.record_days)
PENDING_TTL = 120  # seconds a schedule is marked "retry being issued"


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
    incident: str | None = None  # told as part of a storm's incident message (triage.incidents)
    repeat_of: int | None = None  # told as a reply under this earlier run's alert (same failure again)


#: KEYS: the claims. ARGV: triage id, claim TTL, then each write as its argument count and arguments.
#: The claims are made last: Redis does not undo a script's earlier writes when a command in it fails,
#: so a failing write (none can, short of a key of the wrong type) leaves no claim without its job.
_ADMIT = """
for i = 1, #KEYS do
  local earlier = redis.call('GET', KEYS[i])
  if earlier then return earlier end
end
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[2]) end
return false
"""


def _raise_if_connection_lost(exc: WatchError) -> None:
    """redis-py reports a connection lost (or timed out) while watching as a WatchError. That is no rival
    write: retrying would wait out a second timeout, and "someone else got there" would be a lie; raise
    the connection error, so that the intake answers 503 and the sender delivers again."""
    if isinstance(exc.__context__, RedisConnectionError | RedisTimeoutError):
        raise RedisConnectionError("connection to Redis lost during a transaction") from exc


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Store:
    """Triage records, intake claims, run claims, evidence, chains and stories; ``retries`` and
    ``posts`` own the two side effects that must happen at most once."""

    def __init__(self, redis: Redis, dedup_ttl: int = 604_800, retention: Retention = SHIPPED_RETENTION):
        self.redis = redis
        self.dedup_ttl = dedup_ttl
        self.ttl = retention.record_seconds
        self.max_triages = retention.max_triages
        self.retries = RetryGuard(redis, self.ttl)
        self.posts = PostLedger(redis, self.ttl)
        self._admit = redis.register_script(_ADMIT)
        self._release = redis.register_script(_RELEASE)

    # --- intake ------------------------------------------------------------------------------

    def admit(self, event_key: str, delivery_id: str | None, triage_id: str, record: dict[str, Any],
              enqueue: Callable[[Pipeline], Any]) -> str | None:
        """Claim the run event (and the delivery id), record the triage and enqueue its job in one Redis
        round trip, or do nothing.

        Returns the triage id holding an earlier claim (a duplicate), else None. The record's and RQ's
        writes are collected on a pipeline that is never sent (RQ's own ``enqueue(pipeline=)`` code
        makes the job, so its format is RQ's), then handed with the keys to one Lua script that
        checks the claims and, only when none is held, runs those writes and makes the claims. A script
        runs whole or not at all when Redis or the connection fails, so that leaves all of it or none:
        never a claim without a job behind it (a claim that timed out on the client but ran on the server
        has its job too, so answering its redelivery ``duplicate`` is right). The previous WATCH + MGET +
        MULTI/EXEC took three round trips and retried under contention; this takes one, never retried.

        The script writes keys it is not given in KEYS (the record's, RQ's): fine on one Redis, which
        is what the service runs on; a Redis Cluster would need every key in one hash slot.
        """
        full = ([keyspace.delivery(delivery_id)] if delivery_id else []) + [keyspace.event(event_key)]
        pipe = self.redis.pipeline()
        pipe.multi()  # RQ's enqueue insists on a transaction; its MULTI/EXEC is never sent either
        self._record(pipe, triage_id, record)
        enqueue(pipe)
        argv: list[Any] = [triage_id, self.dedup_ttl]
        for args, _options in pipe.command_stack:
            argv.append(len(args))
            argv.extend(args)
        pipe.reset()
        earlier = self._admit(keys=full, args=argv)
        return earlier.decode() if earlier else None

    def reopen(self, triage_id: str, enqueue: Callable[[Pipeline], Any], **fields: Any) -> bool:
        """Start a new attempt of a triage that will not complete by itself (failed, dead-lettered, or
        with its job lost: the caller has checked that no job of it is alive); False when it is done or
        canceled, or another caller reopened it first."""
        key = keyspace.triage(triage_id)
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
            except WatchError as exc:
                _raise_if_connection_lost(exc)
                return False  # another caller reopened it first

    # --- triage records (what the operations API lists) -----------------------------------------

    def set_status(self, triage_id: str, status: TriageStatus, **fields: Any) -> None:
        """Move a triage to ``status`` (checked against the lifecycle) and record ``fields`` with it."""
        key = keyspace.triage(triage_id)
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
        raw = self.redis.hget(keyspace.triage(triage_id), "status")
        return TriageStatus(json.loads(raw)) if raw else None

    def save_triage(self, triage_id: str, **fields: Any) -> None:
        """Record fields of a triage (not its status: ``set_status`` checks the move)."""
        pipe = self.redis.pipeline()
        self._record(pipe, triage_id, fields)
        pipe.execute()

    def _record(self, pipe: Pipeline, triage_id: str, fields: dict[str, Any]) -> None:
        key = keyspace.triage(triage_id)
        data = {k: json.dumps(v) for k, v in fields.items()}
        data.setdefault("updated_at", json.dumps(time.time()))
        pipe.hset(key, mapping=data)
        pipe.expire(key, self.ttl)
        pipe.zadd(keyspace.TRIAGES, {triage_id: time.time()}, nx=True)
        pipe.zremrangebyrank(keyspace.TRIAGES, 0, -self.max_triages - 1)  # bounded: the oldest fall off
        pipe.expire(keyspace.TRIAGES, self.ttl)

    def get_triages(self, triage_ids: list[str]) -> list[dict[str, Any] | None]:
        """Several records in one round trip (the operations API lists pages of them)."""
        pipe = self.redis.pipeline()
        for triage_id in triage_ids:
            pipe.hgetall(keyspace.triage(triage_id))
        return [{k.decode(): json.loads(v) for k, v in raw.items()} if raw else None for raw in pipe.execute()]

    def triage_index(self, before: float, count: int) -> list[tuple[str, float]]:
        """(triage id, admitted at) from ``bt:triages``, newest first, admitted at or before ``before``."""
        rows = self.redis.zrevrangebyscore(keyspace.TRIAGES, before, "-inf", start=0, num=count, withscores=True)
        return [(tid.decode(), score) for tid, score in rows]

    def admit_replay(self, triage_id: str, record: dict[str, Any], run_id: int | None,
                     enqueue: Callable[[Pipeline], Any], busy: Callable[[str], bool]) -> str | None:
        """Record and enqueue a replay, handing it the run's once-per-run triage claim (``claim_run``),
        in one transaction. Returns the triage holding the claim when it is still in progress (``busy``):
        then nothing is done, so two triages never work on one run at once. The run's other guards
        (``RetryGuard``, ``PostLedger``) are left as they are: a replay cannot retry a run twice or post
        a message twice."""
        key = keyspace.run_claim(run_id) if run_id is not None else None
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    if key is not None:
                        pipe.watch(key)
                    owner = pipe.get(key) if key is not None else None
                    if owner and busy(owner.decode()):
                        pipe.unwatch()
                        return owner.decode()
                    pipe.multi()
                    if key is not None:
                        pipe.set(key, triage_id, ex=self.ttl)
                    self._record(pipe, triage_id, record)
                    enqueue(pipe)
                    pipe.execute()
                    return None
                except WatchError as exc:
                    _raise_if_connection_lost(exc)  # the API answers 503, not a second wait
                    continue

    def forget_claims(self, triage_id: str, delivery_id: str | None, event_key: str | None,
                      run_id: int | None) -> list[str]:
        """Delete the delivery, run-event and run claims that ``triage_id`` holds (compare-and-delete),
        so that the same webhook is triaged again; the names of the claims deleted. The retry guard
        and the Slack post claims are not touched."""
        claims = {"delivery": keyspace.delivery(delivery_id) if delivery_id else None,
                  "event": keyspace.event(event_key) if event_key else None,
                  "run": keyspace.run_claim(run_id) if run_id is not None else None}
        return [name for name, key in claims.items() if key and self._release(keys=[key], args=[triage_id])]

    def run_owner(self, run_id: int) -> str | None:
        """The triage holding the run's claim (``claim_run``), if any."""
        raw = self.redis.get(keyspace.run_claim(run_id))
        return raw.decode() if raw is not None else None

    def story_statuses(self, origins: list[int | None]) -> list[str | None]:
        """The status of each chain's story (None: no story, or no origin), in one round trip."""
        pipe = self.redis.pipeline()
        for origin in origins:
            pipe.get(keyspace.story(origin if origin is not None else 0))
        return [json.loads(raw)["status"] if raw and origin is not None else None
                for origin, raw in zip(origins, pipe.execute(), strict=True)]

    def has_story(self, origin: int) -> bool:
        return bool(self.redis.exists(keyspace.story(origin)))

    def get_triage(self, triage_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(keyspace.triage(triage_id))
        if not raw:
            return None
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    # --- once per run -----------------------------------------------------------------------------

    def claim_run(self, run_id: int, triage_id: str) -> str:
        """Claim the triage of a finished run; the triage id that holds it (``triage_id`` if we won)."""
        key = keyspace.run_claim(run_id)
        if self.redis.set(key, triage_id, nx=True, ex=self.ttl):
            return triage_id
        owner = self.redis.get(key)
        return owner.decode() if owner is not None else triage_id

    def save_evidence(self, triage_id: str, evidence: dict[str, Any]) -> None:
        """The evidence of a run's failure (``models.evidence_to_dict``), stored once: in the record
        of the triage that claimed the run (``claim_run``), where ``evidence(run_id)`` finds it."""
        self.save_triage(triage_id, evidence=evidence)

    def evidence(self, run_id: int) -> dict[str, Any] | None:
        owner = self.redis.get(keyspace.run_claim(run_id))
        raw = self.redis.hget(keyspace.triage(owner.decode()), "evidence") if owner else None
        return json.loads(raw) if raw else None

    # --- chains -----------------------------------------------------------------------------------

    def link(self, run_id: int) -> ChainLink | None:
        raw = self.redis.get(keyspace.chain(run_id))
        return ChainLink(**json.loads(raw)) if raw else None

    def set_link(self, run_id: int, link: ChainLink) -> None:
        self.redis.set(keyspace.chain(run_id), json.dumps(asdict(link)), ex=self.ttl)

    def story_lock(self, origin: int):
        """Serialise read-modify-write of one chain's story across workers."""
        return self.redis.lock(keyspace.story_lock(origin), timeout=60, blocking_timeout=60)

    def story(self, origin: int) -> Story:
        raw = self.redis.get(keyspace.story(origin))
        return Story(**json.loads(raw)) if raw else Story(origin=origin, runs=[origin])

    def save_story(self, story: Story) -> None:
        self.redis.set(keyspace.story(story.origin), json.dumps(asdict(story)), ex=self.ttl)

    def update_story(self, origin: int, **fields: Any) -> Story:
        """Set some fields of a chain's story under its lock; the updated story is returned."""
        with self.story_lock(origin):
            story = self.story(origin)
            for name, value in fields.items():
                setattr(story, name, value)
            self.save_story(story)
        return story


# --- the retry mutation: claimed before it is sent, its outcome recorded after -----------------------


class RetryOutcome(TextEnum):
    CLAIMED = "claimed"  # a sender holds it: sending now, or stopped before recording what happened
    ISSUED = "issued"  # Paradime started a new run
    REFUSED = "refused"  # Paradime answered no: never sent again
    UNKNOWN = "unknown"  # no clear answer, or the sender stopped in between: a human must look
    CANCELED = "canceled"  # an operator canceled the scheduled retry first: never sent


@dataclass(frozen=True)
class RetryState:
    """What is known about a run's retry mutation. ``detail``: the new run id (issued), the reason
    (refused, unknown) or the claiming triage id (claimed)."""

    outcome: RetryOutcome
    detail: str = ""
    claimed_at: float | None = None

    def encode(self) -> str:
        if self.outcome is RetryOutcome.CLAIMED:
            return f"claimed:{self.detail}:{self.claimed_at:.3f}"
        sep = ":" if self.outcome is RetryOutcome.ISSUED else ": "
        return f"{self.outcome}{sep}{self.detail}"

    @classmethod
    def decode(cls, raw: str) -> RetryState:
        """The stored forms, unchanged since 0.1 (``claimed:<triage>:<t>``, ``issued:<run>``,
        ``refused: <why>``, ``unknown: <why>``), so a guard written before an upgrade still holds."""
        outcome, _, rest = raw.partition(":")
        if outcome == RetryOutcome.CLAIMED:
            triage_id, _, at = rest.rpartition(":")
            return cls(RetryOutcome.CLAIMED, triage_id, float(at or 0))
        return cls(RetryOutcome(outcome), rest.strip())

    @property
    def new_run(self) -> int | None:
        return int(self.detail) if self.outcome is RetryOutcome.ISSUED else None

    def __str__(self) -> str:
        return self.encode()


class RetryGuard:
    """``bt:retry:<run>`` (the claim, then the outcome) and ``bt:pending:<schedule>`` (a retry of the
    schedule is in flight: the run a webhook is about may be its result, not yet linked)."""

    def __init__(self, redis: Redis, ttl: int = RECORD_TTL):
        self.redis = redis
        self.ttl = ttl

    def claim(self, run_id: int, triage_id: str) -> bool:
        state = RetryState(RetryOutcome.CLAIMED, triage_id, time.time())
        return bool(self.redis.set(keyspace.retry(run_id), state.encode(), nx=True, ex=self.ttl))

    def state(self, run_id: int) -> RetryState | None:
        raw = self.redis.get(keyspace.retry(run_id))
        return RetryState.decode(raw.decode()) if raw is not None else None

    def record(self, run_id: int, outcome: RetryOutcome, detail: str) -> None:
        self.redis.set(keyspace.retry(run_id), RetryState(outcome, detail).encode(), ex=self.ttl)

    def cancel(self, run_id: int, detail: str) -> bool:
        """Take the claim for an operator's cancel (``SET NX``, the very claim a sender takes first):
        True when it won, and the retry can then never be sent; False when a sender got there first."""
        state = RetryState(RetryOutcome.CANCELED, detail)
        return bool(self.redis.set(keyspace.retry(run_id), state.encode(), nx=True, ex=self.ttl))

    def uncancel(self, run_id: int, detail: str) -> None:
        """Undo ``cancel`` (the triage moved on before it could be canceled), only if it is still ours."""
        script = self.redis.register_script(_RELEASE)
        script(keys=[keyspace.retry(run_id)], args=[RetryState(RetryOutcome.CANCELED, detail).encode()])

    def release(self, run_id: int) -> None:
        """Forget a claim whose mutation provably never left: a later attempt may send it."""
        self.redis.delete(keyspace.retry(run_id))

    def mark_pending(self, schedule: str, run_id: int) -> None:
        self.redis.set(keyspace.retry_pending(schedule), str(run_id), ex=PENDING_TTL)

    def pending(self, schedule: str) -> bool:
        return bool(self.redis.exists(keyspace.retry_pending(schedule)))

    def clear_pending(self, schedule: str) -> None:
        self.redis.delete(keyspace.retry_pending(schedule))


# --- Slack posts: one per message id, replies in the order of their events ---------------------------


class PostStatus(TextEnum):
    SENDING = "pending"  # claimed by a delivery ("pending:<time>"); taken over after the sending window
    FAILED = "failed"  # its last try failed: a later try may claim it
    FOLDED = "folded"  # not posted: an incident message tells it
    POSTED = "posted"


class Claim(int, Enum):
    HELD = 0  # someone else is sending it, or it is posted
    CLAIMED = 1
    STALE = 2  # taken over from a sender that stopped mid-post: look in Slack first

    def __bool__(self) -> bool:
        return self is not Claim.HELD


@dataclass(frozen=True)
class PostState:
    status: PostStatus
    channel: str | None = None
    ts: str | None = None

    @property
    def settled(self) -> bool:
        """Posted or folded: nothing left to send."""
        return self.status in (PostStatus.POSTED, PostStatus.FOLDED)


#: 1: claimed. 2: claimed from a sender that stopped mid-post (its claim is older than the sending
#: window): the message may be in Slack already. 0: someone else holds it, or it was posted.
_CLAIM_POST = """
local state = redis.call('GET', KEYS[1])
local result = 1
if state and state ~= 'failed' then
  local at = tonumber(string.match(state, '^pending:(.+)$') or '')
  if not at or at > tonumber(ARGV[1]) - tonumber(ARGV[2]) then return 0 end
  result = 2
end
redis.call('SET', KEYS[1], 'pending:' .. ARGV[1], 'EX', ARGV[3])
return result
"""


_THREAD_SETTLED = """
redis.call('SADD', KEYS[2], ARGV[1])
local done = tonumber(redis.call('GET', KEYS[1]) or '0')
while redis.call('SISMEMBER', KEYS[2], tostring(done + 1)) == 1 do done = done + 1 end
redis.call('SET', KEYS[1], done, 'EX', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return done
"""


class PostLedger:
    """``bt:slack:<message id>`` (claim, then where it was posted), ``bt:parent:<origin>`` (the
    latest rendering of a story's first message) and ``bt:thread:<origin>:*`` (reply order)."""

    def __init__(self, redis: Redis, ttl: int = RECORD_TTL):
        self.redis = redis
        self.ttl = ttl
        self._claim = redis.register_script(_CLAIM_POST)
        self._settled = redis.register_script(_THREAD_SETTLED)

    def state(self, message_id: str) -> PostState | None:
        raw = self.redis.get(keyspace.post(message_id))
        if raw is None:
            return None
        text = raw.decode()
        if not text.startswith("{"):
            return PostState(PostStatus(text.split(":", 1)[0]))  # "pending:<claimed at>", "failed", …
        where = json.loads(text)
        return PostState(PostStatus.POSTED, where.get("channel"), where.get("ts"))

    def claim(self, message_id: str, window: int) -> Claim:
        """Claim a post for sending: only when nobody holds it (absent, its last try failed, or its
        sender has held it longer than ``window`` seconds: it stopped mid-post).

        The claim reads ``pending:<time>``; once sent, ``posted`` records the ts for good. A claim
        taken over from a stopped sender is ``Claim.STALE``: that sender may have posted before it
        died, so the caller looks for the message in Slack before posting it again.
        """
        result = self._claim(keys=[keyspace.post(message_id)], args=[f"{time.time():.3f}", window, self.ttl])
        return Claim(int(result))

    def claimed_at(self, message_id: str) -> float | None:
        raw = self.redis.get(keyspace.post(message_id))
        text = raw.decode() if raw is not None else ""
        return float(text.split(":", 1)[1]) if text.startswith("pending:") else None

    def posted(self, message_id: str, channel: str | None, ts: str | None) -> None:
        self.redis.set(keyspace.post(message_id), json.dumps({"channel": channel, "ts": ts}), ex=self.ttl)

    def mark(self, message_id: str, status: PostStatus) -> None:
        """Record a post as failed (its claim freed for RQ's next try) or folded into an incident."""
        self.redis.set(keyspace.post(message_id), str(status), ex=self.ttl)

    def release(self, message_id: str) -> None:
        """Not sent (rate limited): the rescheduled delivery claims it again."""
        self.redis.delete(keyspace.post(message_id))

    # the story's first message, as last rendered

    def save_parent(self, origin: int, message: dict[str, Any]) -> None:
        self.redis.set(keyspace.parent_message(origin), json.dumps(message), ex=self.ttl)

    def parent(self, origin: int) -> dict[str, Any] | None:
        raw = self.redis.get(keyspace.parent_message(origin))
        return json.loads(raw) if raw else None

    # thread order

    def next_in_thread(self, origin: int) -> int:
        """The sequence number of a new reply in the story's thread (1, 2, …)."""
        key = keyspace.thread(origin, "seq")
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, self.ttl)
        return int(pipe.execute()[0])

    def thread_turn(self, origin: int, seq: int) -> bool:
        """Have all replies before ``seq`` been settled (posted, folded, or found already sent)?"""
        return int(self.redis.get(keyspace.thread(origin, "done")) or 0) >= seq - 1

    def thread_settled(self, origin: int, seq: int) -> None:
        self._settled(keys=[keyspace.thread(origin, "done"), keyspace.thread(origin, "settled")],
                      args=[seq, self.ttl])
