"""Telling Slack the story of a run, through the ``slack`` queue.

The triage and retry jobs decide *what* to say (the functions below); ``deliver`` jobs on their
own queue say it. Workers take triage jobs first, and a delivery that finds its channel busy
(``Pacer``: about one message per second per channel) or gets a 429 reschedules itself with RQ's
scheduler instead of sleeping, so a slow Slack never delays the triage of other runs.

Every post is claimed under its key with ``SET NX`` before it is sent (``Store.claim_post``),
and the claim is replaced by the posted message's ts: one post per message, whatever the
deliveries. A story's replies carry their place in the thread (the order in which their events
happened) and each waits, a bounded time, for the earlier ones: threads read in order whatever the
pacing or the number of workers. The story's first message is updated from the story's
*latest* rendering (``bt:parent:<origin>``), and incident messages from the incident's runs' current
statuses, so deliveries that run late or out of order still leave the right final state.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from datetime import timedelta
from typing import Any

from rq import Retry

from triage import broker, instrument
from triage.errors import UpstreamError
from triage.models import Decision, Evidence, evidence_from_dict
from triage.routing import channel_for, mentions_for
from triage.slack import Pacer, RateLimited
from triage.store import ChainLink, Story
from triage.storm import Repeats, Storms, failure_signature
from triage.summary import IncidentRun, SlackMessage, incident_message, repeat_message, triage_message
from workers import context
from workers.context import Context

log = logging.getLogger("workers.notify")

MAX_TRIES = 300  # a delivery waiting for its channel or its parent gives up after this many turns
#: A post's claim while it is being sent: long enough for the Slack call (15 s timeout, slack-sdk's own
#: retries), short enough that a worker killed mid-post lets a later delivery send it.
POST_CLAIM_SECONDS = 90
#: Turns a reply waits for earlier replies of its thread before it goes anyway (one of them may have
#: failed for good): about a minute.
ORDER_PATIENCE = 60


# --- what to say ------------------------------------------------------------------------------------


def first_message(ctx: Context, story: Story, evidence: Evidence, decision: Decision) -> None:
    """The story's opening: a parent message, or a reply to an earlier alert (repeat), or a line in
    an incident (storm)."""
    slack = ctx.settings.slack
    origin = story.origin
    channel = channel_for(slack, story.schedule_name, evidence.failures)
    if story.status == "not_retried":
        repeat = Repeats(ctx.store.redis, slack.repeat_interval_seconds).seen(
            story.schedule_name, failure_signature(evidence.failures), origin)
        if repeat:
            previous, count = repeat
            ctx.store.update_story(origin, repeat_of=previous)
            _enqueue(ctx, {"kind": "post", "key": f"slack:{origin}:repeat", "reply_to": previous,
                           "channel": channel, **_msg(repeat_message(story.schedule_name, evidence, decision,
                                                                     previous, count))})
            return
    if story.status == "retrying" and evidence.failures:
        category = Counter(f.classification.category for f in evidence.failures).most_common(1)[0][0]
        incident = _storms(ctx).join(channel or "webhook", category, evidence.adapter, story.schedule_name, origin)
        if incident:
            for _, member in incident.members:  # held alerts of earlier runs fold into the incident
                ctx.store.update_story(member, incident=incident.key)
            refresh_incident(ctx, incident.key)
            return
    message = triage_message(story.schedule_name, evidence, decision, 0, branch=story.branch,
                             mentions=mentions_for(slack, story.status, evidence.failures))
    ctx.store.put(f"parent:{origin}", json.dumps(_msg(message)))
    hold = slack.storm_hold_seconds if story.status == "retrying" and slack.storm_min_schedules else 0
    _enqueue(ctx, {"kind": "post", "key": f"slack:{origin}:summary", "channel": channel, "parent": origin,
                   **_msg(message)}, delay=hold)


def later_message(ctx: Context, story: Story, run_id: int, link: ChainLink, evidence: Evidence,
                  decision: Decision, status: tuple[str, str]) -> None:
    """A retry run failed again: reply under the story (or its incident) and bring the top up to date."""
    needs_human = decision.action == "none"
    if story.incident and not needs_human:
        refresh_incident(ctx, story.incident)
        return
    mentions = mentions_for(ctx.settings.slack, "gave_up" if needs_human else "retrying", evidence.failures)
    message = triage_message(story.schedule_name, evidence, decision, link.attempt, branch=story.branch,
                             origin=link.origin, mentions=mentions)
    _enqueue(ctx, {"kind": "post", "key": f"slack:{run_id}:summary", "reply_to": story.origin,
                   "channel": story.slack_channel, **_msg(message)})
    refresh(ctx, story, status, mentions_from=evidence if needs_human else None)


def note(ctx: Context, key: str, message: SlackMessage, story: Story | None = None,
         quiet_in_incident: bool = False) -> None:
    """A short message: in the story's thread when it has one, else on its own. ``quiet_in_incident``:
    not worth saying for a run whose story is told by an incident message."""
    op = {"kind": "post", "key": key, "quiet_in_incident": quiet_in_incident, **_msg(message)}
    if story is not None:
        op.update(reply_to=story.origin, channel=story.slack_channel)
    _enqueue(ctx, op)


def refresh(ctx: Context, story: Story, status: tuple[str, str], mentions_from: Evidence | None = None) -> None:
    """Re-render the story's first message (or its incident) in its new state."""
    story = ctx.store.story(story.origin)  # the caller's copy may predate the first message's post
    if story.incident:
        refresh_incident(ctx, story.incident)
        if not story.slack_ts:  # its own alert was folded into the incident: nothing else to update
            return
    if not ctx.slack.threads or story.repeat_of is not None:
        return
    raw = ctx.store.get(f"evidence:{story.origin}")
    if not raw:
        return
    evidence = evidence_from_dict(json.loads(raw))
    failures = (mentions_from or evidence).failures
    mentions = mentions_for(ctx.settings.slack, status[0], failures)
    message = triage_message(story.schedule_name, evidence, None, 0, branch=story.branch, status_override=status,
                             mentions=mentions)
    ctx.store.put(f"parent:{story.origin}", json.dumps(_msg(message)))
    _enqueue(ctx, {"kind": "update", "key": f"update:{story.origin}", "origin": story.origin})


def refresh_incident(ctx: Context, key: str) -> None:
    _enqueue(ctx, {"kind": "incident", "key": key})


# --- saying it ----------------------------------------------------------------------------------------


@instrument.delivery
def deliver(op: dict[str, Any], tries: int = 0) -> dict[str, Any]:
    """RQ entry point (queue ``slack``): send one message, update or incident refresh."""
    ctx = context.current()
    try:
        if op["kind"] == "update":
            return _update(ctx, op, tries)
        if op["kind"] == "incident":
            return _incident(ctx, op, tries)
        result = _post(ctx, op, tries)
        if op.get("seq") and result["status"] != "later":
            ctx.store.thread_settled(op["reply_to"], op["seq"])
        return result
    except RateLimited as exc:
        return _later(ctx, {**op, "slot_at": None}, tries, exc.retry_after, str(exc))


def _post(ctx: Context, op: dict[str, Any], tries: int) -> dict[str, Any]:
    key = op["key"]
    state = ctx.store.get(key)
    if state and not state.startswith(("pending", "failed")):  # posted, or folded into an incident
        return {"status": "already", "key": key}
    story_of = op.get("parent") if op.get("parent") is not None else op.get("reply_to")
    if story_of is not None and (op.get("parent") is not None or op.get("quiet_in_incident")) \
            and ctx.store.story(story_of).incident:
        ctx.store.put(key, "folded")  # the incident message tells this run's story
        return {"status": "folded into incident", "key": key}
    thread_ts, channel = None, op.get("channel")
    if op.get("reply_to") is not None and ctx.slack.threads:
        parent = ctx.store.story(op["reply_to"])
        raw = ctx.store.get(f"{parent.incident}:posted") if parent.incident else None
        incident = json.loads(raw) if raw else {}
        if parent.slack_ts:
            thread_ts, channel = parent.slack_ts, parent.slack_channel
        elif incident.get("ts"):
            thread_ts, channel = incident["ts"], incident["channel"]
        elif _parent_pending(ctx, op["reply_to"]):
            return _later(ctx, {**op, "slot_at": None}, tries, 1, "waiting for the story's first message")
    if op.get("seq") and tries < ORDER_PATIENCE and not ctx.store.thread_turn(op["reply_to"], op["seq"]):
        return _later(ctx, {**op, "slot_at": None}, tries, 1, "waiting for earlier replies in the thread")
    channel = channel or ctx.settings.slack.channel or "webhook"
    wait = _slot(ctx, op, channel) if ctx.slack.mode != "log" else 0
    if wait > 0:
        return _later(ctx, op, tries, wait, f"channel {channel} busy")
    if not ctx.store.claim_post(key, POST_CLAIM_SECONDS):  # SET NX: one sender per message, ever
        if (ctx.store.get(key) or "").startswith("pending"):
            return _later(ctx, {**op, "slot_at": None}, tries, 5, "another delivery of this message is sending it")
        return {"status": "already", "key": key}
    try:
        posted = ctx.slack.post(SlackMessage(op["text"], op["blocks"]), thread_ts=thread_ts, channel=channel)
    except RateLimited:  # not posted: free the claim for the rescheduled delivery
        ctx.store.delete(key)
        raise
    except Exception:
        ctx.store.put(key, "failed")  # RQ tries again (Retry); meanwhile replies stop waiting for it
        raise
    _pacer(ctx).sent(channel)
    ctx.store.put(key, json.dumps({"channel": posted.channel, "ts": posted.ts}))
    if op.get("parent") is not None and posted.ts:
        ctx.store.update_story(op["parent"], slack_channel=posted.channel, slack_ts=posted.ts)
        if ctx.store.get(f"parent:{op['parent']}") != json.dumps({"text": op["text"], "blocks": op["blocks"]}):
            _enqueue(ctx, {"kind": "update", "key": f"update:{op['parent']}", "origin": op["parent"]})
    return {"status": "posted", "key": key, "channel": posted.channel, "ts": posted.ts}


def _update(ctx: Context, op: dict[str, Any], tries: int) -> dict[str, Any]:
    story = ctx.store.story(op["origin"])
    if not story.slack_ts:
        if _parent_pending(ctx, story.origin):
            return _later(ctx, op, tries, 1, "waiting for the story's first message")
        return {"status": "no parent"}
    wait = _slot(ctx, op, story.slack_channel)
    if wait > 0:
        return _later(ctx, op, tries, wait, f"channel {story.slack_channel} busy")
    latest = json.loads(ctx.store.get(f"parent:{story.origin}") or "null")
    if latest:
        ctx.slack.update(story.slack_channel, story.slack_ts, SlackMessage(latest["text"], latest["blocks"]))
        _pacer(ctx).sent(story.slack_channel)
    return {"status": "updated", "origin": story.origin}


def _incident(ctx: Context, op: dict[str, Any], tries: int) -> dict[str, Any]:
    incident = _storms(ctx).get(op["key"])
    if incident is None:
        return {"status": "gone"}
    runs = [IncidentRun(schedule=s, run_id=origin, status=ctx.store.story(origin).status) for s, origin in
            incident.members]
    message = incident_message(incident.category, incident.adapter, runs)
    where = ctx.store.get(f"{incident.key}:posted")
    if where is None:
        if not ctx.store.claim(f"{incident.key}:post", "pending"):
            return _later(ctx, op, tries, 1, "incident message being posted")
        channel = None if incident.channel == "webhook" else incident.channel
        if channel:
            wait = _slot(ctx, op, channel)
            if wait > 0:
                ctx.store.delete(f"{incident.key}:post")
                return _later(ctx, op, tries, wait, "channel busy")
        posted = ctx.slack.post(message, channel=channel)
        if channel:
            _pacer(ctx).sent(channel)
        ctx.store.put(f"{incident.key}:posted", json.dumps({"channel": posted.channel, "ts": posted.ts}))
        return {"status": "posted", "incident": incident.key}
    posted = json.loads(where)
    if posted["ts"]:
        wait = _slot(ctx, op, posted["channel"])
        if wait > 0:
            return _later(ctx, op, tries, wait, "channel busy")
        ctx.slack.update(posted["channel"], posted["ts"], message)
        _pacer(ctx).sent(posted["channel"])
    return {"status": "updated", "incident": incident.key}


def _parent_pending(ctx: Context, origin: int) -> bool:
    """Is the story's first message still on its way (queued, paced)? Not when its post failed:
    then replies go out on their own rather than wait for a message that may never exist."""
    if ctx.store.get(f"parent:{origin}") is None or ctx.store.story(origin).repeat_of is not None:
        return False
    return ctx.store.get(f"slack:{origin}:summary") not in ("failed", "folded")


def _later(ctx: Context, op: dict[str, Any], tries: int, delay: float, why: str) -> dict[str, Any]:
    if tries >= MAX_TRIES:
        raise UpstreamError(f"Slack delivery {op['key']} gave up after {tries} tries: {why}", retryable=False)
    _enqueue(ctx, op, delay=delay, tries=tries + 1)
    return {"status": "later", "why": why, "in": delay}


# --- plumbing ---------------------------------------------------------------------------------------------


def _enqueue(ctx: Context, op: dict[str, Any], delay: float = 0, tries: int = 0) -> None:
    if op.get("reply_to") is not None and "seq" not in op:  # its place in the thread: the order of events
        op = {**op, "seq": ctx.store.next_in_thread(op["reply_to"])}
    queue = broker.queue(ctx.store.redis, broker.SLACK_QUEUE)
    # Slack errors (5xx, timeouts) are tried again by RQ, a bounded number of times, then the
    # delivery lands in the failed registry with its reason. 429s and busy channels are not errors.
    kwargs = dict(failure_ttl=broker.FAILURE_TTL, description=f"slack {op['kind']} {op['key']}",
                  retry=Retry(max=3, interval=[10, 60, 300]))
    if delay > 0:
        queue.enqueue_in(timedelta(seconds=delay), broker.SLACK_JOB, op, tries, **kwargs)
    else:
        queue.enqueue(broker.SLACK_JOB, op, tries, **kwargs)


def _msg(message: SlackMessage) -> dict[str, Any]:
    return {"text": message.text, "blocks": message.blocks}


def _slot(ctx: Context, op: dict[str, Any], channel: str) -> float:
    """Seconds to wait for this channel; 0 when it is this op's turn (and then it may send at once).

    An op told to wait keeps its reserved slot (``slot_at``) when it is rescheduled. RQ schedules in
    whole seconds, so it may run a little early: it then sleeps out the rest (under a quarter second)
    or goes back to wait, still owning its slot."""
    pacer = _pacer(ctx)
    slot_at = op.get("slot_at")
    if slot_at is None:
        slot_at = time.time() + pacer.reserve(channel)
    wait = slot_at - time.time()
    if wait >= 0.25:
        op["slot_at"] = slot_at
        return wait
    if wait > 0:
        time.sleep(wait)
    pacer.settle(channel)
    return 0


def _pacer(ctx: Context) -> Pacer:
    return Pacer(ctx.store.redis, ctx.settings.slack.per_channel_interval_seconds)


def _storms(ctx: Context) -> Storms:
    s = ctx.settings.slack
    return Storms(ctx.store.redis, s.storm_window_seconds, s.storm_min_schedules)

