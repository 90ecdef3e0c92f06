"""The automatic-retry switch: ``POST /api/v1/retries/pause``, ``/resume``, ``GET /pauses``.

What a pause does to triage (the decision becomes ``Reason.PAUSED``, a due retry is held) is
``triage.pauses``; this module only validates and stores what the operator asked.
"""

from __future__ import annotations

import time
from typing import Any

from flask import jsonify

from triage.api.auth import bad_request, bp, json_body, reason_of
from triage.api.query import parse_time
from triage.api.triages import store
from triage.pauses import Pauses

MAX_PAUSE_SECONDS = 30 * 86_400


def _schedule_glob(body: dict[str, Any], default: str | None) -> str | None:
    schedule = body.get("schedule", default)
    if schedule is not None and (not isinstance(schedule, str) or not schedule.strip() or len(schedule) > 200):
        raise bad_request("schedule", "expected a schedule name or glob (at most 200 characters)")
    return schedule.strip() if schedule else schedule


@bp.post("/retries/pause")
def pause():
    body = json_body(required=True)
    schedule = _schedule_glob(body, "*")
    if ("until" in body) == ("for_seconds" in body):
        raise bad_request("body", 'expected exactly one of "until" or "for_seconds"')
    if "for_seconds" in body:
        n = body["for_seconds"]
        if isinstance(n, bool) or not isinstance(n, int | float) or not 1 <= n <= MAX_PAUSE_SECONDS:
            raise bad_request("for_seconds", f"expected seconds from 1 to {MAX_PAUSE_SECONDS}")
        until = time.time() + n
    else:
        if not isinstance(body["until"], str):
            raise bad_request("until", "expected an ISO 8601 time")
        until = parse_time("until", body["until"])
        if not time.time() < until <= time.time() + MAX_PAUSE_SECONDS:
            raise bad_request("until", "expected a time in the next 30 days")
    made = Pauses(store().redis).pause(schedule or "*", until, reason_of(body))
    return jsonify(pause=made.to_dict(), pauses=[p.to_dict() for p in Pauses(store().redis).all()])


@bp.post("/retries/resume")
def resume():
    body = json_body()
    ended = Pauses(store().redis).resume(_schedule_glob(body, None))
    return jsonify(resumed=ended, pauses=[p.to_dict() for p in Pauses(store().redis).all()])


@bp.get("/retries/pauses")
def pauses():
    return jsonify(pauses=[p.to_dict() for p in Pauses(store().redis).all()])

