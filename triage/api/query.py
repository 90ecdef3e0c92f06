"""Filters, verdicts and the opaque cursor of ``GET /api/v1/triages`` (and of bulk actions' ``filter``).

The list walks the bounded index ``bt:triages`` (``triage.store``) newest first and filters each page
of records in Python. The cursor is where the walk stopped — the index score and id of the last
triage looked at, base64-encoded JSON — so it stays right while new triages arrive at the top, and a
sparse filter costs at most ``MAX_SCAN`` records per request (then ``next_cursor`` says go on).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from fnmatch import fnmatchcase
from typing import Any

from triage.api.auth import bad_request
from triage.enums import TextEnum
from triage.lifecycle import StoryStatus, TriageStatus
from triage.store import Store

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_SCAN = 5000  # records looked at per request
PAGE = 200


class Verdict(TextEnum):
    """What became of a triaged run, as an on-call engineer asks it."""

    RETRYING = "retrying"
    NOT_RETRIED = "not_retried"
    RECOVERED = "recovered"
    GAVE_UP = "gave_up"
    NEEDS_HUMAN = "needs_human"
    COULD_NOT_TRIAGE = "could_not_triage"


class TriggeredBy(TextEnum):
    WEBHOOK = "webhook"
    REPLAY = "replay"
    RECHECK = "recheck"


_CHAIN_END = {StoryStatus.RECOVERED: Verdict.RECOVERED, StoryStatus.GAVE_UP: Verdict.GAVE_UP,
              StoryStatus.NEEDS_HUMAN: Verdict.NEEDS_HUMAN}


def verdict_of(record: Mapping[str, Any], story_status: StoryStatus | None) -> Verdict | None:
    """The verdict of one triage (None: nothing to judge yet, or nothing failed)."""
    if record.get("status") == TriageStatus.DEAD_LETTER:
        return Verdict.COULD_NOT_TRIAGE
    outcome = record.get("outcome")
    if outcome == "recovered":
        return Verdict.RECOVERED
    if outcome in ("retry_unknown", "retry_paused") or (record.get("retry") or {}).get("status") == "unknown":
        return Verdict.NEEDS_HUMAN
    action = record.get("action")
    if action in ("retry", "trigger"):
        return _CHAIN_END.get(story_status, Verdict.RETRYING) if story_status else Verdict.RETRYING
    if action == "none":
        return Verdict.GAVE_UP if record.get("attempt") else Verdict.NOT_RETRIED
    return None


def triggered_by(record: Mapping[str, Any]) -> TriggeredBy:
    if record.get("triggered_by") == "replay":
        return TriggeredBy.REPLAY
    return TriggeredBy.RECHECK if record.get("checks") else TriggeredBy.WEBHOOK


def categories_of(record: Mapping[str, Any]) -> set[str]:
    failures = (record.get("evidence") or {}).get("failures") or []
    return {f["classification"]["category"] for f in failures}


def parse_time(field: str, value: str) -> float:
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(field, f"expected an ISO 8601 time, got {value[:40]!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _enum(field: str, kind: type[Enum], value: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise bad_request(field, f"expected one of {allowed}, got {value[:40]!r}") from None


@dataclass(frozen=True)
class TriageFilter:
    status: TriageStatus | None = None
    schedule: str | None = None  # exact name or glob
    run_id: int | None = None
    verdict: Verdict | None = None
    category: str | None = None
    since: float | None = None
    until: float | None = None
    triggered_by: TriggeredBy | None = None

    FIELDS = ("status", "schedule", "run_id", "verdict", "category", "since", "until", "triggered_by")

    @classmethod
    def parse(cls, args: Mapping[str, Any], where: str = "") -> TriageFilter:
        """From query parameters or a bulk body's ``filter``; a bad value is a 400 naming it."""
        def name(f: str) -> str:
            return f"{where}{f}"

        unknown = [k for k in args if k not in cls.FIELDS and where]
        if unknown:
            raise bad_request(name(unknown[0]), f"unknown filter (allowed: {', '.join(cls.FIELDS)})")
        values: dict[str, Any] = {}
        for field in cls.FIELDS:
            raw = args.get(field)
            if raw is None or raw == "":
                continue
            if not isinstance(raw, str) and field != "run_id":
                raise bad_request(name(field), "expected a string")
            if field == "status":
                values[field] = _enum(name(field), TriageStatus, raw)
            elif field == "verdict":
                values[field] = _enum(name(field), Verdict, raw)
            elif field == "triggered_by":
                values[field] = _enum(name(field), TriggeredBy, raw)
            elif field in ("since", "until"):
                values[field] = parse_time(name(field), raw)
            elif field == "run_id":
                text = str(raw)
                if isinstance(raw, bool) or not text.isascii() or not text.isdigit() or len(text) > 18:
                    raise bad_request(name(field), f"expected a run id (digits), got {text[:40]!r}")
                values[field] = int(text)
            else:
                if len(raw) > 200:
                    raise bad_request(name(field), "longer than 200 characters")
                values[field] = raw
        return cls(**values)

    def matches(self, record: Mapping[str, Any], at: float, story_status: StoryStatus | None) -> bool:
        if self.since is not None and at < self.since:
            return False
        if self.until is not None and at > self.until:
            return False
        if self.status is not None and record.get("status") != self.status:
            return False
        if self.schedule is not None and not fnmatchcase(record.get("schedule_name") or "", self.schedule):
            return False
        if self.run_id is not None and record.get("run_id") != self.run_id:
            return False
        if self.triggered_by is not None and triggered_by(record) is not self.triggered_by:
            return False
        if self.category is not None and self.category not in categories_of(record):
            return False
        return self.verdict is None or verdict_of(record, story_status) is self.verdict


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise bad_request("limit", f"expected a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def encode_cursor(score: float, triage_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([score, triage_id]).encode()).decode().rstrip("=")


def decode_cursor(raw: str | None) -> tuple[float, str] | None:
    if not raw:
        return None
    try:
        score, triage_id = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return float(score), str(triage_id)
    except (ValueError, TypeError, binascii.Error):
        raise bad_request("cursor", "not a cursor this API handed out") from None


@dataclass
class Found:
    triage_id: str
    record: dict[str, Any]
    story_status: StoryStatus | None


def story_statuses(store: Store, records: list[dict[str, Any] | None]) -> list[StoryStatus | None]:
    """The status of each record's chain story (for verdicts), in one round trip."""
    origins = [(r or {}).get("origin") or (r or {}).get("run_id") for r in records]
    return [StoryStatus(s) if s else None for s in store.story_statuses(origins)]


def walk(store: Store, flt: TriageFilter, limit: int, cursor: tuple[float, str] | None,
         max_scan: int = MAX_SCAN) -> tuple[list[Found], str | None]:
    """Matching triages, newest first, and the cursor of the rest (None: no more)."""
    found: list[Found] = []
    before, after_id = cursor if cursor else (flt.until if flt.until is not None else float("inf"), None)
    for scanned, (tid, score, record, story) in enumerate(_pages(store, before, after_id), start=1):
        if flt.since is not None and score < flt.since:
            return found, None
        if record is not None and flt.matches(record, record.get("received_at") or score, story):
            found.append(Found(tid, record, story))
            if len(found) == limit:
                return found, encode_cursor(score, tid)
        if scanned >= max_scan:
            return found, encode_cursor(score, tid)
    return found, None


def _pages(store: Store, before: float, after_id: str | None) -> Iterator[tuple[str, float, Any, Any]]:
    """The index from ``before`` down, skipping entries up to ``after_id`` at that same score."""
    while True:
        rows = store.triage_index(before, PAGE + 1)
        if after_id is not None:  # equal scores are ordered by id, descending in a reverse range
            rows = [(t, s) for t, s in rows if s < before or t < after_id]
        if not rows:
            return
        records = store.get_triages([t for t, _ in rows])
        stories = story_statuses(store, records)
        for (tid, score), record, story in zip(rows, records, stories, strict=True):
            yield tid, score, record, story
        last_tid, last_score = rows[-1]
        before, after_id = last_score, last_tid
