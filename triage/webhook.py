"""Reading a Paradime webhook body into a ``WebhookEvent``.

Only part of the real payload is documented (see shared/paradime/webhooks.md), so
this reader is strict about the fields it uses (types, shapes) and ignores every
field it does not know. Run-level fields are optional and read in snake_case or
camelCase; a missing run id is resolved later by the worker, a missing event type
is inferred from the commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from triage.errors import PayloadError
from triage.models import Command, Resource

STARTED = "bolt.run.started"
COMPLETED = "bolt.run.completed"
EVENT_TYPES = (STARTED, COMPLETED)

_EVENT_KEYS = ("event_type", "eventType", "event", "type")
_RUN_ID_KEYS = ("run_id", "runId", "schedule_run_id", "scheduleRunId")
_SCHEDULE_KEYS = ("schedule_name", "scheduleName")


@dataclass(frozen=True)
class WebhookEvent:
    event_type: str
    event_type_inferred: bool
    commands: tuple[Command, ...]
    run_id: int | None = None
    schedule_name: str | None = None
    state: str | None = None
    branch: str | None = None
    api_url: str | None = None

    @property
    def dedup_key(self) -> str:
        """Identifies "this run, this event" even when the body carries no run id (command ids are unique)."""
        if self.run_id is not None:
            return f"run:{self.run_id}:{self.event_type}"
        ids = ",".join(str(c.id) for c in sorted(self.commands, key=lambda c: c.id))
        return f"cmds:{ids}:{self.event_type}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, for the job arguments and the triage record.

        ``api_url`` is left out: its path holds the workspace token, and it is never used
        (the intake logs a mismatch with the configured endpoint; credentials go only there).
        """
        return {
            "event_type": self.event_type,
            "event_type_inferred": self.event_type_inferred,
            "run_id": self.run_id,
            "schedule_name": self.schedule_name,
            "state": self.state,
            "branch": self.branch,
            "commands": [command_to_dict(c) for c in self.commands],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WebhookEvent:
        return cls(
            event_type=data["event_type"],
            event_type_inferred=data["event_type_inferred"],
            run_id=data.get("run_id"),
            schedule_name=data.get("schedule_name"),
            state=data.get("state"),
            branch=data.get("branch"),
            commands=tuple(command_from_dict(c) for c in data["commands"]),
        )


def command_to_dict(c: Command) -> dict[str, Any]:
    return {
        "id": c.id,
        "command": c.command,
        "return_code": c.return_code,
        "start": c.start.isoformat() if c.start else None,
        "end": c.end.isoformat() if c.end else None,
        "status": c.status,
        "resources": [{"id": r.id, "path": r.path} for r in c.resources],
    }


def command_from_dict(d: Mapping[str, Any]) -> Command:
    return Command(
        id=d["id"],
        command=d["command"],
        return_code=d.get("return_code"),
        start=datetime.fromisoformat(d["start"]) if d.get("start") else None,
        end=datetime.fromisoformat(d["end"]) if d.get("end") else None,
        status=d.get("status"),
        resources=tuple(Resource(r["id"], r["path"]) for r in d.get("resources", ())),
    )


def parse_time(value: Any, where: str) -> datetime | None:
    """Paradime sends ``"2023-10-15 16:44:16.986049"`` (no zone, UTC); ISO with a zone is accepted too."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{where}: expected a date-time string or null, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise PayloadError(f"{where}: not a date-time: {value[:40]!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


def _int(value: Any, where: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool):
        raise PayloadError(f"{where}: expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    kind = "null" if value is None else type(value).__name__
    raise PayloadError(f"{where}: expected an integer{' or null' if optional else ''}, got {kind}")


def _str(value: Any, where: str, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        raise PayloadError(f"{where}: expected a string, got {kind}")
    return value


def _first(body: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in keys:
        if key in body and body[key] is not None:
            return key, body[key]
    return None, None


def _resources(items: Any, where: str) -> tuple[Resource, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise PayloadError(f"{where}: expected a list, got {type(items).__name__}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise PayloadError(f"{where}[{i}]: expected an object, got {type(item).__name__}")
        rid = _int(item.get("id"), f"{where}[{i}].id")
        path = _str(item.get("path"), f"{where}[{i}].path", optional=False)
        out.append(Resource(id=rid, path=path))
    return tuple(out)


def _command(item: Any, where: str) -> Command:
    if not isinstance(item, Mapping):
        raise PayloadError(f"{where}: expected an object, got {type(item).__name__}")
    return Command(
        id=_int(item.get("id"), f"{where}.id"),
        command=_str(item.get("command"), f"{where}.command", optional=False),
        return_code=_int(item.get("return_code"), f"{where}.return_code", optional=True),
        start=parse_time(item.get("start_dttm"), f"{where}.start_dttm"),
        end=parse_time(item.get("end_dttm"), f"{where}.end_dttm"),
        status=_str(item.get("status"), f"{where}.status"),
        resources=_resources(item.get("json_resources"), f"{where}.json_resources"),
    )


def parse_event(body: Any) -> WebhookEvent:
    """Validate a decoded JSON body; raise PayloadError naming the first bad field."""
    if not isinstance(body, Mapping):
        raise PayloadError(f"body: expected a JSON object, got {type(body).__name__}")

    raw_commands = body.get("commands")
    if raw_commands is None:
        raw_commands = []
    if not isinstance(raw_commands, list):
        raise PayloadError(f"commands: expected a list, got {type(raw_commands).__name__}")
    commands = tuple(_command(item, f"commands[{i}]") for i, item in enumerate(raw_commands))
    ids = [c.id for c in commands]
    if len(set(ids)) != len(ids):
        raise PayloadError("commands: the same command id appears twice")

    key, value = _first(body, _RUN_ID_KEYS)
    run_id = _int(value, key, optional=True) if key else None
    if run_id is None and not commands:
        raise PayloadError("commands: empty and no run_id: nothing identifies the run")

    key, value = _first(body, _SCHEDULE_KEYS)
    schedule_name = _str(value, key) if key else None
    state = _str(body.get("state"), "state")
    branch = _str(body.get("branch") or body.get("gitBranch") or body.get("git_branch"), "branch")
    api_url = _str(body.get("api_url") or body.get("apiUrl"), "api_url")

    key, value = _first(body, _EVENT_KEYS)
    if key:
        event_type = _str(value, key, optional=False)
        if event_type not in EVENT_TYPES:
            raise PayloadError(f"{key}: {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
        inferred = False
    else:
        event_type = _infer_event(commands, state)
        inferred = True

    return WebhookEvent(
        event_type=event_type,
        event_type_inferred=inferred,
        commands=commands,
        run_id=run_id,
        schedule_name=schedule_name,
        state=state.upper() if state else None,
        branch=branch,
        api_url=api_url,
    )


def _infer_event(commands: tuple[Command, ...], state: str | None) -> str:
    """A run is complete when its state says so, or when every command has ended."""
    if state:
        return STARTED if state.upper() in ("STARTING", "RUNNING") else COMPLETED
    if not commands:
        return STARTED
    running = any(c.end is None or c.return_code is None or (c.status or "").lower() == "running" for c in commands)
    return STARTED if running else COMPLETED
