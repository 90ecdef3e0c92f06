"""What to tell Slack about a run's story: the first message, replies, notes and refreshes.

The triage and retry jobs call these; each one renders a message and hands a typed
``SlackWork`` value to the ``slack`` queue, where ``workers.deliver`` says it (paced, claimed
once, in thread order). Nothing here talks to Slack, so a slow Slack never delays a triage.
"""

from __future__ import annotations

import logging
from collections import Counter

from triage.incidents import Storms
from triage.models import Decision, Evidence, evidence_from_dict
from triage.repeats import Repeats, failure_signature
from triage.routing import channel_for, mentions_for
from triage.store import ChainLink, Story
from triage.summary import SlackMessage, repeat_message, triage_message
from workers.context import Context
from workers.deliver import deliver, enqueue
from workers.slack_work import IncidentRefresh, Post, Update

__all__ = ["deliver", "first_message", "later_message", "note", "refresh", "refresh_incident"]

log = logging.getLogger("workers.notify")


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
            message = repeat_message(story.schedule_name, evidence, decision, previous, count)
            enqueue(ctx, _post(f"{origin}:repeat", message, reply_to=previous, channel=channel))
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
    ctx.store.posts.save_parent(origin, _msg(message))
    hold = slack.storm_hold_seconds if story.status == "retrying" and slack.storm_min_schedules else 0
    enqueue(ctx, _post(f"{origin}:summary", message, channel=channel, parent=origin), delay=hold)


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
    enqueue(ctx, _post(f"{run_id}:summary", message, reply_to=story.origin, channel=story.slack_channel))
    refresh(ctx, story, status, mentions_from=evidence if needs_human else None)


def note(ctx: Context, message_id: str, message: SlackMessage, story: Story | None = None,
         quiet_in_incident: bool = False) -> None:
    """A short message (posted once per ``message_id``): in the story's thread when it has one, else
    on its own. ``quiet_in_incident``: not worth saying for a run whose story an incident tells."""
    where = {"reply_to": story.origin, "channel": story.slack_channel} if story is not None else {}
    enqueue(ctx, _post(message_id, message, quiet_in_incident=quiet_in_incident, **where))


def refresh(ctx: Context, story: Story, status: tuple[str, str], mentions_from: Evidence | None = None) -> None:
    """Re-render the story's first message (or its incident) in its new state."""
    story = ctx.store.story(story.origin)  # the caller's copy may predate the first message's post
    if story.incident:
        refresh_incident(ctx, story.incident)
        if not story.slack_ts:  # its own alert was folded into the incident: nothing else to update
            return
    if not ctx.slack.threads or story.repeat_of is not None:
        return
    stored = ctx.store.evidence(story.origin)
    if not stored:
        return
    evidence = evidence_from_dict(stored)
    failures = (mentions_from or evidence).failures
    mentions = mentions_for(ctx.settings.slack, status[0], failures)
    message = triage_message(story.schedule_name, evidence, None, 0, branch=story.branch, status_override=status,
                             mentions=mentions)
    ctx.store.posts.save_parent(story.origin, _msg(message))
    enqueue(ctx, Update(origin=story.origin))


def refresh_incident(ctx: Context, incident: str) -> None:
    enqueue(ctx, IncidentRefresh(incident=incident))


def _post(message_id: str, message: SlackMessage, **where) -> Post:
    return Post(message_id=message_id, text=message.text, blocks=message.blocks, **where)


def _msg(message: SlackMessage) -> dict:
    return {"text": message.text, "blocks": message.blocks}


def _storms(ctx: Context) -> Storms:
    s = ctx.settings.slack
    return Storms(ctx.store.redis, s.storm_window_seconds, s.storm_min_schedules)


