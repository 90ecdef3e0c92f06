"""Reading a Paradime webhook body into a ``WebhookEvent``.

Only part of the real payload is documented (see shared/paradime/webhooks.md), so
this reader is strict about the fields it uses (types, shapes) and ignores every
field it does not know. Run-level fields are optional and read in snake_case or
camelCase; a missing run id is resolved later by the worker, a missing event type
is inferred from the commands.

What a body must be, before any field is read (``decode_body``): UTF-8 text (RFC 8259; a BOM is
ignored, UTF-16/32 bodies are refused),
JSON, at most ``MAX_BODY_DEPTH`` arrays/objects deep (checked by a scan, without recursion,
before ``json.loads`` would recurse). Then, field by field (``parse_event``):

* integers are real JSON integers (not booleans, not floats) or strings of ASCII digits
  with at most one leading ``-``; ids (run, command, resource) must be positive, every
  integer fits in 64 bits;
* strings are valid Unicode scalar sequences: a lone surrogate (``"\\ud800"`` in the JSON)
  is refused, since nothing downstream (Redis, Slack) could encode it;
* a field present with the wrong type is an error naming the field; ``null`` is read as
  absent, as the field missing (and an empty ``branch``/``api_url`` string too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from triage.errors import PayloadError
from triage.jsontext import json_nesting_exceeds
from triage.models import Command, Resource

STARTED = "bolt.run.started"
COMPLETED = "bolt.run.completed"
EVENT_TYPES = (STARTED, COMPLETED)

_EVENT_KEYS = ("event_type", "eventType", "event", "type")
_RUN_ID_KEYS = ("run_id", "runId", "schedule_run_id", "scheduleRunId")
_SCHEDULE_KEYS = ("schedule_name", "scheduleName")
_BRANCH_KEYS = ("branch", "gitBranch", "git_branch")
_API_URL_KEYS = ("api_url", "apiUrl")

#: Deepest nesting of arrays/objects a body may have (a real one has 5: body, commands, command,
#: json_resources, resource); far below the ~990 levels at which ``json.loads`` would recurse out.
MAX_BODY_DEPTH = 64
#: Every integer of the body fits in a signed 64-bit integer (ids are ``Int`` in Paradime's API).
MAX_INT = 2**63 - 1
_INT_TEXT = re.compile(r"-?[0-9]{1,19}")  # ASCII digits only: str.isdigit also accepts "²" and "①"


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


def decode_body(raw: bytes) -> Any:
    """The JSON value of a webhook body; PayloadError (naming ``body``) when it is not UTF-8 text,
    is nested deeper than ``MAX_BODY_DEPTH``, or is not JSON."""
    try:
        text = raw.decode("utf-8-sig")  # a leading BOM is ignored, as json.loads(bytes) did
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    if json_nesting_exceeds(text, MAX_BODY_DEPTH):
        raise PayloadError(f"body nested too deeply: more than {MAX_BODY_DEPTH} levels of arrays/objects")
    try:
        return json.loads(text)
    except RecursionError:  # not reachable after the scan; kept so that no body can give a 500
        raise PayloadError("body nested too deeply") from None
    except ValueError as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None


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


def _kind(value: Any) -> str:
    return "null" if value is None else "a boolean" if isinstance(value, bool) else type(value).__name__


def _int(value: Any, where: str, *, optional: bool = False, positive: bool = False) -> int | None:
    """A JSON integer, or a string of ASCII digits with at most one leading ``-`` (surrounding
    blanks allowed); ``positive`` for ids. Booleans, floats and anything else are refused."""
    if value is None and optional:
        return None
    wanted = "an integer" + (" or null" if optional else "")
    if isinstance(value, bool):
        raise PayloadError(f"{where}: expected an integer, got a boolean")
    if isinstance(value, str):
        text = value.strip()
        if not _INT_TEXT.fullmatch(text):
            raise PayloadError(f"{where}: expected {wanted}, got str {_shown(value)}")
        value = int(text)
    elif not isinstance(value, int):
        raise PayloadError(f"{where}: expected {wanted}, got {_kind(value)}")
    if abs(value) > MAX_INT:
        raise PayloadError(f"{where}: {value if len(str(value)) < 30 else 'the number'} is out of range "
                           "(64-bit integers only)")
    if positive and value <= 0:
        raise PayloadError(f"{where}: expected a positive id, got {value}")
    return value


def _shown(value: str) -> str:
    """A short, printable form of a refused string, for the 400 message."""
    return ascii(value[:40]) + ("…" if len(value) > 40 else "")


def _str(value: Any, where: str, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{where}: expected a string, got {_kind(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PayloadError(f"{where}: not valid Unicode (lone surrogate {ascii(value[exc.start])} "
                           f"at character {exc.start})") from None
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
        rid = _int(item.get("id"), f"{where}[{i}].id", positive=True)
        path = _str(item.get("path"), f"{where}[{i}].path", optional=False)
        out.append(Resource(id=rid, path=path))
    return tuple(out)


def _command(item: Any, where: str) -> Command:
    if not isinstance(item, Mapping):
        raise PayloadError(f"{where}: expected an object, got {type(item).__name__}")
    return Command(
        id=_int(item.get("id"), f"{where}.id", positive=True),
        command=_str(item.get("command"), f"{where}.command", optional=False),
        return_code=_int(item.get("return_code"), f"{where}.return_code", optional=True),
        start=parse_time(item.get("start_dttm"), f"{where}.start_dttm"),
        end=parse_time(item.get("end_dttm"), f"{where}.end_dttm"),
        status=_str(item.get("status"), f"{where}.status"),
        resources=_resources(item.get("json_resources"), f"{where}.json_resources"),
    )


def parse_event(body: Any) -> WebhookEvent:
    """Validate a decoded JSON body; raise PayloadError naming the first bad field.

    A field that is present with the wrong type (``"branch": false``, ``"api_url": []``) is an
    error naming it; ``null`` is the same as absent (the first non-null of the snake_case and
    camelCase spellings is used), and an empty ``branch`` or ``api_url`` string too.
    """
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
    run_id = _int(value, key, optional=True, positive=True) if key else None
    if run_id is None and not commands:
        raise PayloadError("commands: empty and no run_id: nothing identifies the run")

    key, value = _first(body, _SCHEDULE_KEYS)
    schedule_name = _str(value, key) if key else None
    state = _str(body.get("state"), "state")
    key, value = _first(body, _BRANCH_KEYS)
    branch = (_str(value, key) if key else None) or None
    key, value = _first(body, _API_URL_KEYS)
    api_url = (_str(value, key) if key else None) or None

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
