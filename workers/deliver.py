"""Saying it: the ``slack`` queue's delivery job, one ``SlackWork`` value per job.

A delivery that finds its channel busy (``Pacer``: about one message per second per channel) or
gets a 429 reschedules itself with RQ's scheduler instead of sleeping, so a slow Slack never delays
the triage of other runs.

Every post is claimed under its message id with ``SET NX`` before it is sent (``PostLedger.claim``),
and the claim is replaced by the posted message's ts: one post per message, whatever the
deliveries. A story's replies carry their place in the thread (the order in which their events
happened) and each waits, a bounded time, for the earlier ones: threads read in order whatever the
pacing or the number of workers. The story's first message is updated from the story's *latest*
rendering (``PostLedger.parent``), and incident messages from the incident's runs' current
statuses, so deliveries that run late or out of order still leave the right final state.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

from rq import Retry

from triage import broker, instrument, logs
from triage.errors import UpstreamError
from triage.incidents import Storms
from triage.ledger import EventType
from triage.slack import Pacer, Posted, RateLimited
from triage.store import Claim, PostStatus
from triage.summary import IncidentRun, SlackMessage, incident_message
from workers import context
from workers.context import Context
from workers.slack_work import IncidentRefresh, Post, SlackWork, Update, from_dict, stamped, to_dict, with_slot

log = logging.getLogger("workers.deliver")

MAX_TRIES = 300  # a delivery waiting for its channel or its parent gives up after this many turns
#: A post's claim while it is being sent: long enough for the Slack call (15 s timeout, slack-sdk's own
#: retries), short enough that a worker killed mid-post lets a later delivery send it.
POST_CLAIM_SECONDS = 90
#: Turns a reply waits for earlier replies of its thread before it goes anyway (one of them may have
#: failed for good): about a minute.
ORDER_PATIENCE = 60


@instrument.delivery
def deliver(op: dict[str, Any], tries: int = 0) -> dict[str, Any]:
    """RQ entry point (queue ``slack``): send one message, update or incident refresh."""
    ctx = context.current()
    work = from_dict(op)
    with logs.bound(work.triage_id, run_id=work.run_id):
        try:
            if isinstance(work, Update):
                return _update(ctx, work, tries)
            if isinstance(work, IncidentRefresh):
                return _incident(ctx, work, tries)
            result = _post(ctx, work, tries)
            if work.seq and result["status"] != "later":
                ctx.store.posts.thread_settled(work.reply_to, work.seq)
            return result
        except RateLimited as exc:
            return _later(ctx, with_slot(work, None), tries, exc.retry_after, str(exc))


def enqueue(ctx: Context, work: SlackWork, delay: float = 0, tries: int = 0) -> None:
    """Queue a delivery; a reply gets its place in the thread now, in the order of events."""
    if isinstance(work, Post) and work.reply_to is not None and work.seq is None:
        work = replace(work, seq=ctx.store.posts.next_in_thread(work.reply_to))
    work = stamped(work, logs.triage_id.get(), logs.run_id.get())
    queue = broker.queue(ctx.store.redis, broker.SLACK_QUEUE)
    # Slack errors (5xx, timeouts) are tried again by RQ, a bounded number of times, then the
    # delivery lands in the failed registry with its reason. 429s and busy channels are not errors.
    kwargs = dict(failure_ttl=broker.FAILURE_TTL, description=f"slack {work.label}",
                  retry=Retry(max=3, interval=[10, 60, 300]))
    if delay > 0:
        queue.enqueue_in(timedelta(seconds=delay), broker.SLACK_JOB, to_dict(work), tries, **kwargs)
    else:
        queue.enqueue(broker.SLACK_JOB, to_dict(work), tries, **kwargs)


def _post(ctx: Context, post: Post, tries: int) -> dict[str, Any]:
    posts, mid = ctx.store.posts, post.message_id
    state = posts.state(mid)
    if state is not None and state.settled:
        return {"status": "already", "message": mid}
    if post.story_of is not None and (post.parent is not None or post.quiet_in_incident) \
            and ctx.store.story(post.story_of).incident:
        posts.mark(mid, PostStatus.FOLDED)  # the incident message tells this run's story
        return {"status": "folded into incident", "message": mid}
    thread_ts, channel = None, post.channel
    if post.reply_to is not None and ctx.slack.threads:
        parent = ctx.store.story(post.reply_to)
        incident = _storms(ctx).posted_at(parent.incident) if parent.incident else None
        if parent.slack_ts:
            thread_ts, channel = parent.slack_ts, parent.slack_channel
        elif incident is not None and incident.ts:
            thread_ts, channel = incident.ts, incident.channel
        elif _parent_pending(ctx, post.reply_to):
            return _later(ctx, with_slot(post, None), tries, 1, "waiting for the story's first message")
    if post.seq and tries < ORDER_PATIENCE and not posts.thread_turn(post.reply_to, post.seq):
        return _later(ctx, with_slot(post, None), tries, 1, "waiting for earlier replies in the thread")
    channel = channel or ctx.settings.slack.channel or "webhook"
    wait, slot_at = _slot(ctx, post.slot_at, channel) if ctx.slack.mode != "log" else (0, None)
    if wait > 0:
        return _later(ctx, with_slot(post, slot_at), tries, wait, f"channel {channel} busy")
    previous = posts.claimed_at(mid)
    claim = posts.claim(mid, POST_CLAIM_SECONDS)  # one sender per message, ever
    if not claim:
        state = posts.state(mid)
        if state is not None and state.status is PostStatus.SENDING:
            return _later(ctx, with_slot(post, None), tries, 5, "another delivery of this message is sending it")
        return {"status": "already", "message": mid}
    if claim is Claim.STALE:
        found = _find_in_slack(ctx, post, channel, thread_ts, previous)
        if found is not None:
            return _recorded(ctx, post, found, "found in Slack")
    try:
        posted = ctx.slack.post(SlackMessage(post.text, post.blocks), thread_ts=thread_ts, channel=channel,
                                message_id=mid)
    except RateLimited:  # not posted: free the claim for the rescheduled delivery
        posts.release(mid)
        raise
    except Exception:
        posts.mark(mid, PostStatus.FAILED)  # RQ tries again (Retry); meanwhile replies stop waiting for it
        raise
    _pacer(ctx).sent(channel)
    return _recorded(ctx, post, posted, "posted")


def _recorded(ctx: Context, post: Post, posted: Posted, status: str) -> dict[str, Any]:
    """Record where the post is; a story's first message also gives the story its thread."""
    ctx.store.posts.posted(post.message_id, posted.channel, posted.ts)
    ctx.ledger.record(post.triage_id, EventType.SLACK_POSTED, f"{status} {post.message_id}", channel=posted.channel)
    if post.parent is not None and posted.ts:
        ctx.store.update_story(post.parent, slack_channel=posted.channel, slack_ts=posted.ts)
        if ctx.store.posts.parent(post.parent) != {"text": post.text, "blocks": post.blocks}:
            enqueue(ctx, Update(origin=post.parent))  # re-rendered while this post waited its turn
    return {"status": status, "message": post.message_id, "channel": posted.channel, "ts": posted.ts}


def _find_in_slack(ctx: Context, post: Post, channel: str, thread_ts: str | None,
                   since: float | None) -> Posted | None:
    """The sender before us stopped mid-post: did Slack get the message? Bot mode asks Slack (each
    message carries its id in its metadata); incoming webhooks cannot read, so there it is posted
    again (at least once rather than never)."""
    if not ctx.slack.threads:
        log.warning("slack post %s: its sender stopped mid-post; an incoming webhook cannot tell whether "
                    "Slack got it, so it is posted again", post.message_id)
        return None
    try:
        found = ctx.slack.find(channel, post.message_id, since=(since or time.time() - 3600) - 5,
                               thread_ts=thread_ts)
    except UpstreamError as exc:
        log.warning("slack post %s: its sender stopped mid-post and Slack cannot be searched (%s); "
                    "posting it again", post.message_id, exc)
        return None
    if found is not None:
        log.info("slack post %s: its sender stopped after Slack accepted it; recorded, not posted again",
                 post.message_id)
    return found


def _update(ctx: Context, update: Update, tries: int) -> dict[str, Any]:
    story = ctx.store.story(update.origin)
    if not story.slack_ts:
        if _parent_pending(ctx, story.origin):
            return _later(ctx, update, tries, 1, "waiting for the story's first message")
        return {"status": "no parent"}
    wait, slot_at = _slot(ctx, update.slot_at, story.slack_channel)
    if wait > 0:
        return _later(ctx, with_slot(update, slot_at), tries, wait, f"channel {story.slack_channel} busy")
    latest = ctx.store.posts.parent(story.origin)
    if latest:
        ctx.slack.update(story.slack_channel, story.slack_ts, SlackMessage(latest["text"], latest["blocks"]))
        _pacer(ctx).sent(story.slack_channel)
    return {"status": "updated", "origin": story.origin}


def _incident(ctx: Context, refresh: IncidentRefresh, tries: int) -> dict[str, Any]:
    storms = _storms(ctx)
    incident = storms.get(refresh.incident)
    if incident is None:
        return {"status": "gone"}
    runs = [IncidentRun(schedule=s, run_id=origin, status=ctx.store.story(origin).status) for s, origin in
            incident.members]
    message = incident_message(incident.category, incident.adapter, runs)
    where = storms.posted_at(incident.key)
    if where is None:
        if not storms.claim_post(incident.key):
            return _later(ctx, refresh, tries, 1, "incident message being posted")
        channel = None if incident.channel == "webhook" else incident.channel
        if channel:
            wait, slot_at = _slot(ctx, refresh.slot_at, channel)
            if wait > 0:
                storms.release_post(incident.key)
                return _later(ctx, with_slot(refresh, slot_at), tries, wait, "channel busy")
        posted = ctx.slack.post(message, channel=channel)
        if channel:
            _pacer(ctx).sent(channel)
        storms.record_post(incident.key, posted.channel, posted.ts)
        return {"status": "posted", "incident": incident.key}
    if where.ts:
        wait, slot_at = _slot(ctx, refresh.slot_at, where.channel)
        if wait > 0:
            return _later(ctx, with_slot(refresh, slot_at), tries, wait, "channel busy")
        ctx.slack.update(where.channel, where.ts, message)
        _pacer(ctx).sent(where.channel)
    return {"status": "updated", "incident": incident.key}


def _parent_pending(ctx: Context, origin: int) -> bool:
    """Is the story's first message still on its way (queued, paced)? Not when its post failed:
    then replies go out on their own rather than wait for a message that may never exist."""
    if ctx.store.posts.parent(origin) is None or ctx.store.story(origin).repeat_of is not None:
        return False
    state = ctx.store.posts.state(f"{origin}:summary")
    return state is None or state.status not in (PostStatus.FAILED, PostStatus.FOLDED)


def _later(ctx: Context, work: SlackWork, tries: int, delay: float, why: str) -> dict[str, Any]:
    if tries >= MAX_TRIES:
        raise UpstreamError(f"Slack delivery {work.label} gave up after {tries} tries: {why}", retryable=False)
    enqueue(ctx, work, delay=delay, tries=tries + 1)
    return {"status": "later", "why": why, "in": delay}


def _slot(ctx: Context, slot_at: float | None, channel: str) -> tuple[float, float | None]:
    """(seconds to wait for this channel, the slot reserved); 0 when it is this work's turn (and then
    it may send at once).

    Work told to wait keeps its reserved slot when it is rescheduled. RQ schedules in whole seconds,
    so it may run a little early: it then sleeps out the rest (under a quarter second) or goes back to
    wait, still owning its slot."""
    pacer = _pacer(ctx)
    if slot_at is None:
        slot_at = time.time() + pacer.reserve(channel)
    wait = slot_at - time.time()
    if wait >= 0.25:
        return wait, slot_at
    if wait > 0:
        time.sleep(wait)
    pacer.settle(channel)
    return 0, None


def _pacer(ctx: Context) -> Pacer:
    return Pacer(ctx.store.redis, ctx.settings.slack.per_channel_interval_seconds)


def _storms(ctx: Context) -> Storms:
    s = ctx.settings.slack
    return Storms(ctx.store.redis, s.storm_window_seconds, s.storm_min_schedules)
