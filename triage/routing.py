"""Where a story is posted, and who is pinged.

Routes (``slack.routes``) pick the channel: the first whose ``schedule`` glob matches the schedule
name or whose ``tag`` is carried by a failed node. Mentions resolve the failed nodes' owners (from
the manifest) through ``slack.owners``, then the Bolt schedule's owner; nobody is pinged for a run that is being retried
automatically, only when a human is needed (``slack.mention_when``).
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from triage.config import SlackSettings
from triage.models import Failure

#: Story outcomes that need a human to act.
NEEDS_HUMAN = frozenset({"not_retried", "gave_up", "needs_human", "unknown", "error"})


def channel_for(settings: SlackSettings, schedule: str | None, failures: Iterable[Failure]) -> str | None:
    tags = {t for f in failures for t in f.tags}
    for route in settings.routes:
        if route.schedule and schedule and fnmatchcase(schedule, route.schedule):
            return route.channel
        if route.tag and route.tag in tags:
            return route.channel
    return settings.channel


def mentions_for(settings: SlackSettings, status: str, failures: Iterable[Failure]) -> list[str]:
    """Mentions for a message whose story is now ``status`` (retrying, recovered, not_retried, …)."""
    if settings.mention_when == "never" or (settings.mention_when == "needs_human" and status not in NEEDS_HUMAN):
        return []
    failures = list(failures)
    found: list[str] = []
    for f in failures:
        for owner in (f.owner or "").split(","):
            mention = settings.owners.get(owner.strip())
            if mention and mention not in found:
                found.append(mention)
    if not found:  # nobody the manifest names maps to Slack: the Bolt schedule's owner, then the fallback
        schedule_owners = {f.schedule_owner for f in failures if f.schedule_owner}
        found = [m for owner in sorted(schedule_owners) if (m := settings.owners.get(owner))]
    return found or list(settings.fallback_mentions)
