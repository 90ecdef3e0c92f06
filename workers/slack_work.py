"""The Slack work a triage hands to the ``slack`` queue, as typed values.

A delivery job's argument is one of these, turned into a plain dict for RQ's JSON serializer
(``to_dict``) and back (``from_dict``). ``from_dict`` also reads the untyped op dicts of 0.1, so
deliveries queued before an upgrade still run after it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Post:
    """One message, posted once per ``message_id`` (e.g. ``"<run>:summary"``), whatever the deliveries.

    ``parent``: this is the first message of the story of that original run (its ts is recorded on
    the story). ``reply_to``: a reply in that story's thread, ``seq`` its place there (the order of
    events). ``quiet_in_incident``: not worth saying when an incident message tells the story.
    """

    message_id: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    channel: str | None = None
    parent: int | None = None
    reply_to: int | None = None
    quiet_in_incident: bool = False
    seq: int | None = None
    slot_at: float | None = None  # a reserved pacing slot (triage.slack.Pacer), kept when rescheduled
    triage_id: str | None = None  # the triage that said it: the delivery's log lines carry it
    run_id: int | None = None

    @property
    def story_of(self) -> int | None:
        return self.parent if self.parent is not None else self.reply_to

    @property
    def label(self) -> str:
        return f"post {self.message_id}"


@dataclass(frozen=True)
class Update:
    """Bring a story's first message up to date with its latest rendering."""

    origin: int
    slot_at: float | None = None
    triage_id: str | None = None
    run_id: int | None = None

    @property
    def label(self) -> str:
        return f"update {self.origin}"


@dataclass(frozen=True)
class IncidentRefresh:
    """Post, or update, a storm's incident message from its runs' current statuses."""

    incident: str
    slot_at: float | None = None
    triage_id: str | None = None
    run_id: int | None = None

    @property
    def label(self) -> str:
        return f"incident {self.incident}"


SlackWork = Post | Update | IncidentRefresh

_KINDS: dict[str, type] = {"post": Post, "update": Update, "incident": IncidentRefresh}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}


def to_dict(work: SlackWork) -> dict[str, Any]:
    return {"kind": _KIND_OF[type(work)], **asdict(work)}


def from_dict(data: dict[str, Any]) -> SlackWork:
    """The typed value of a delivery's argument; ``ValueError`` names what is wrong with it."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"unknown Slack work kind {kind!r}")
    legacy_key = data.pop("key", None)  # 0.1 ops: "slack:<id>" / "update:<origin>" / "incident:…"
    if kind == "post" and "message_id" not in data and legacy_key:
        data["message_id"] = legacy_key.removeprefix("slack:")
    if kind == "incident" and "incident" not in data and legacy_key:
        data["incident"] = legacy_key
    cls = _KINDS[kind]
    known = cls.__dataclass_fields__
    return cls(**{k: v for k, v in data.items() if k in known})


def with_slot(work: SlackWork, slot_at: float | None) -> SlackWork:
    return replace(work, slot_at=slot_at)


def stamped(work: SlackWork, triage_id: str | None, run_id: int | None) -> SlackWork:
    """The work with the triage (and run) it was said for, unless it carries them already."""
    if work.triage_id is not None or triage_id is None:
        return work
    return replace(work, triage_id=triage_id, run_id=run_id)
