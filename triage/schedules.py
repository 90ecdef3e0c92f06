"""Which Bolt schedule a run belongs to, when the webhook does not say.

Paradime's documented webhook payload carries only ``api_url`` and ``commands``: no schedule name.
Without one every Slack header says "Bolt run", a failed ``dbt deps`` cannot be triggered again,
repeats are not folded, routing by schedule cannot match, and the history of "the previous run of
this schedule" cannot be kept apart from other schedules running the same node. So, in this order:

1. the payload's own ``schedule_name`` (undocumented, used when present);
2. a hint on the webhook URL, ``/webhooks/paradime?schedule=<name>`` (``triage.intake``);
3. the Bolt API: ``listBoltSchedules`` for the names, then ``boltScheduleName(name).latestRunId``
   compared with the run id. The answers are cached for ``TTL`` seconds per worker, so a burst of
   failures costs one walk. A schedule that started again before we looked (its latest run is past
   ours) cannot be matched: the run stays unnamed, as before.

The schedule's ``owner`` comes with it: when no failed node's manifest owner maps to a Slack mention,
the schedule's owner is tried through ``slack.owners`` before ``slack.fallback_mentions``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from triage.errors import UpstreamError
from triage.models import Evidence

log = logging.getLogger("triage.schedules")

TTL = 60.0  # seconds a schedule list or a latest run id is trusted
PAGE = 100  # schedules per listBoltSchedules page
MAX_SCHEDULES = 1000  # walk no further: a workspace that large should name its schedules in the URL


@dataclass(frozen=True)
class BoltSchedule:
    name: str
    owner: str | None = None


class ScheduleDirectory:
    """Answers "which schedule ran this run" from a Paradime client, with a short cache."""

    def __init__(self, client, ttl: float = TTL, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._names: tuple[float, list[tuple[str, str | None]]] | None = None
        self._latest: dict[str, tuple[float, int | None, str | None]] = {}

    def of_run(self, run_id: int) -> BoltSchedule | None:
        """The schedule whose latest run is ``run_id``, or None (also when Paradime cannot tell)."""
        try:
            names = self._schedule_names()
            for name, owner in names:  # cached answers first: no call for a schedule already known
                cached = self._latest.get(name)
                if cached and self._fresh(cached[0]) and cached[1] == run_id:
                    return BoltSchedule(name, cached[2] or owner)
            for name, owner in names:
                cached = self._latest.get(name)
                if cached and self._fresh(cached[0]) and cached[1] is not None and cached[1] > run_id:
                    continue  # it ran again since: cannot be ours any more
                latest, schedule_owner = self._refresh(name)
                if latest == run_id:
                    return BoltSchedule(name, schedule_owner or owner)
        except UpstreamError as exc:
            log.warning("could not tell the schedule of run %s: %s", run_id, exc)
        return None

    def named(self, name: str) -> BoltSchedule:
        """The schedule called ``name``, with its owner when Paradime tells it."""
        cached = self._latest.get(name)
        if cached and self._fresh(cached[0]):
            return BoltSchedule(name, cached[2])
        try:
            return BoltSchedule(name, self._refresh(name)[1])
        except UpstreamError as exc:
            log.warning("could not read schedule %r: %s", name, exc)
            return BoltSchedule(name)

    def _fresh(self, at: float) -> bool:
        return self.clock() - at < self.ttl

    def _schedule_names(self) -> list[tuple[str, str | None]]:
        if self._names and self._fresh(self._names[0]):
            return self._names[1]
        names: list[tuple[str, str | None]] = []
        total = None
        while len(names) < MAX_SCHEDULES and (total is None or len(names) < total):
            page, total = self.client.list_schedules(len(names), PAGE)
            if not page:
                break
            names.extend(page)
        self._names = (self.clock(), names)
        return names

    def _refresh(self, name: str) -> tuple[int | None, str | None]:
        latest, owner = self.client.schedule(name)
        self._latest[name] = (self.clock(), latest, owner)
        return latest, owner


_directories: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def directory(client) -> ScheduleDirectory:
    """The directory for this client (one per worker process, so its cache is shared by its jobs)."""
    found = _directories.get(client)
    if found is None:
        found = _directories[client] = ScheduleDirectory(client)
    return found


def name_of_run(client, run_id: int) -> str | None:
    """The name of the schedule that ran ``run_id``, from the Bolt API (None when it cannot tell)."""
    found = directory(client).of_run(run_id)
    return found.name if found else None


def with_schedule_owner(evidence: Evidence, client, schedule_name: str | None,
                        owners: Mapping[str, str]) -> Evidence:
    """Note the schedule's owner on each failure: ``triage.routing.mentions_for`` pings them (through
    ``slack.owners``) when no failed node's own owner maps to a mention.

    Paradime is asked only when ``slack.owners`` could map the answer, and the answer is cached.
    """
    if not schedule_name or not owners or not evidence.failures:
        return evidence
    owner = directory(client).named(schedule_name).owner
    if not owner:
        return evidence
    failures = [dataclasses.replace(f, schedule_owner=owner) for f in evidence.failures]
    return dataclasses.replace(evidence, failures=failures)
