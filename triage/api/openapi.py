"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 document of the API.

Built from one table (:data:`OPERATIONS`), so that adding a route means adding a row; the test
``tests/test_api_openapi.py`` checks every Flask route under ``/api/v1`` against it (and back).
"""

from __future__ import annotations

from typing import Any

from flask import jsonify

from triage.api.auth import bp
from triage.api.query import MAX_LIMIT, TriageFilter, TriggeredBy, Verdict
from triage.ledger import EventType, Level
from triage.lifecycle import TriageStatus

_STR = {"type": "string"}
_INT = {"type": "integer"}
_OBJ = {"type": "object"}
_TIME = {"type": "string", "format": "date-time"}

FILTER_PARAMS: list[dict[str, Any]] = [
    {"name": "status", "in": "query", "schema": {"type": "string", "enum": [s.value for s in TriageStatus]}},
    {"name": "schedule", "in": "query", "schema": _STR, "description": "exact name or glob"},
    {"name": "run_id", "in": "query", "schema": _INT},
    {"name": "verdict", "in": "query", "schema": {"type": "string", "enum": [v.value for v in Verdict]}},
    {"name": "category", "in": "query", "schema": _STR},
    {"name": "since", "in": "query", "schema": _TIME},
    {"name": "until", "in": "query", "schema": _TIME},
    {"name": "triggered_by", "in": "query", "schema": {"type": "string", "enum": [t.value for t in TriggeredBy]}},
]
assert [p["name"] for p in FILTER_PARAMS] == list(TriageFilter.FIELDS)
PAGE_PARAMS = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                                            "default": 50}},
               {"name": "cursor", "in": "query", "schema": _STR}]
TID = {"name": "triage_id", "in": "path", "required": True,
       "schema": {"type": "string", "pattern": "^tr_[0-9a-f]{16}$"}}
RUN = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}

TARGETS = {"type": "object", "properties": {"ids": {"type": "array", "items": _STR, "maxItems": MAX_LIMIT},
                                            "filter": _OBJ, "reason": _STR}}

#: (path, method, summary, parameters, request body schema or None, success status, admin only)
OPERATIONS: list[tuple[str, str, str, list[dict[str, Any]], dict[str, Any] | None, int, bool]] = [
    ("/api/v1/triages", "get", "List triages, newest first", FILTER_PARAMS + PAGE_PARAMS, None, 200, False),
    ("/api/v1/triages/dead-letter", "get", "Triages that gave up", PAGE_PARAMS, None, 200, False),
    ("/api/v1/triages/{triage_id}", "get", "One triage", [TID], None, 200, False),
    ("/api/v1/triages/{triage_id}", "delete", "Cancel a waiting triage or a scheduled retry", [TID],
     {"type": "object", "properties": {"reason": _STR}}, 200, True),
    ("/api/v1/triages/{triage_id}/events", "get", "The triage's timeline",
     [TID, {"name": "level", "in": "query", "schema": _STR}, {"name": "type", "in": "query", "schema": _STR}],
     None, 200, False),
    ("/api/v1/triages/{triage_id}/stream", "get", "The timeline as Server-Sent Events, until final",
     [TID, {"name": "Last-Event-ID", "in": "header", "schema": _STR},
      {"name": "heartbeat", "in": "query", "schema": {"type": "number", "minimum": 1, "maximum": 60}}],
     None, 200, False),
    ("/api/v1/triages/{triage_id}/lineage", "get", "Triages of the same chain, in order", [TID], None, 200, False),
    ("/api/v1/triages/{triage_id}/children", "get", "Replays made from this triage", [TID], None, 200, False),
    ("/api/v1/triages/{triage_id}/debug-bundle", "get", "Triage, events, evidence and calls", [TID], None, 200,
     False),
    ("/api/v1/triages/{triage_id}/replay", "post", "Triage the same event again (guards hold)", [TID], _OBJ, 202,
     True),
    ("/api/v1/triages/bulk-replay", "post", "Replay by ids or filter (at most 500)", [], TARGETS, 202, True),
    ("/api/v1/triages/dead-letter/replay", "post", "Replay every dead-lettered triage not replayed yet", [], _OBJ,
     202, True),
    ("/api/v1/triages/bulk-cancel", "post", "Cancel by ids or filter (at most 500)", [], TARGETS, 200, True),
    ("/api/v1/triages/{triage_id}/reschedule", "post", "Move a pending re-check or scheduled retry", [TID],
     {"type": "object", "properties": {"in_seconds": {"type": "number"}, "at": _TIME}}, 200, True),
    ("/api/v1/triages/{triage_id}/idempotency-key", "delete", "Forget the delivery and run-event claims", [TID],
     None, 200, True),
    ("/api/v1/runs/{run_id}", "get", "The chain a Paradime run belongs to", [RUN], None, 200, False),
    ("/api/v1/retries/pause", "post", "Pause automatic retries", [],
     {"type": "object", "properties": {"schedule": _STR, "until": _TIME, "for_seconds": {"type": "number"},
                                       "reason": _STR}}, 200, True),
    ("/api/v1/retries/resume", "post", "Resume automatic retries", [],
     {"type": "object", "properties": {"schedule": _STR}}, 200, True),
    ("/api/v1/retries/pauses", "get", "Pauses in effect", [], None, 200, False),
    ("/api/v1/flaky", "get", "Nodes by flaky score", PAGE_PARAMS[:1], None, 200, False),
    ("/api/v1/stats", "get", "Counts by verdict and category, retries, recovered share, time to Slack",
     [{"name": "since", "in": "query", "schema": _TIME}], None, 200, False),
    ("/api/v1/openapi.json", "get", "This document", [], None, 200, False),
]

ERROR = {"type": "object", "required": ["error", "message", "request_id"],
         "properties": {"error": _STR, "message": _STR, "request_id": _STR}}
_NSTR = {"type": ["string", "null"]}
_NINT = {"type": ["integer", "null"]}
TRIAGE = {"type": "object", "required": ["id", "status", "execution_trace"], "properties": {
    "id": _STR, "status": {"type": "string", "enum": [t.value for t in TriageStatus]},
    "verdict": {"type": ["string", "null"], "enum": [*(v.value for v in Verdict), None]},
    "attempt": _INT, "run_id": _NINT, "schedule_name": _NSTR,
    "triggered_by": {"type": "string", "enum": [t.value for t in TriggeredBy]}, "parent_triage_id": _NSTR,
    "event": {"type": ["object", "null"]},
    "decision": {"type": ["object", "null"], "properties": {"action": _STR, "reason_code": _NSTR, "text": _NSTR}},
    "failures": {"type": "array", "items": {"type": "object", "properties": {
        k: _NSTR for k in ("unique_id", "command", "verdict", "category", "rule", "excerpt", "source", "owner")}}},
    "actions": {"type": "object", "properties": {"retry": {"type": ["object", "null"]},
                                                 "slack": {"type": ["object", "null"]}}},
    "chain": {"type": ["object", "null"], "properties": {"original_run_id": _INT, "attempt": _INT,
                                                         "parent_run_id": _NINT}},
    "error": _NSTR, **{k: {"type": ["string", "null"], "format": "date-time"}
                       for k in ("received_at", "started_at", "finished_at", "next_check_at")},
    "execution_trace": {"type": "object", "properties": {
        k: _NINT for k in ("queue_wait", "paradime", "download", "classify", "slack", "total")}},
}}
EVENT = {"type": "object", "required": ["id", "triage_id", "type", "level", "message", "data", "at"],
         "properties": {"id": _STR, "triage_id": _STR, "type": {"type": "string", "enum": [e.value for e in EventType]},
                        "level": {"type": "string", "enum": [v.value for v in Level]}, "message": _STR,
                        "data": _OBJ, "at": _TIME}}
_REF = {"Triage": {"$ref": "#/components/schemas/Triage"}, "Event": {"$ref": "#/components/schemas/Event"}}
#: Answers with a known shape (the others are documented by their summary).
ANSWERS: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/v1/triages", "get"): {"type": "object", "properties": {
        "triages": {"type": "array", "items": _REF["Triage"]}, "next_cursor": _NSTR}},
    ("/api/v1/triages/dead-letter", "get"): {"type": "object", "properties": {
        "triages": {"type": "array", "items": _REF["Triage"]}, "next_cursor": _NSTR}},
    ("/api/v1/triages/{triage_id}", "get"): _REF["Triage"],
    ("/api/v1/triages/{triage_id}", "delete"): _REF["Triage"],
    ("/api/v1/triages/{triage_id}/replay", "post"): _REF["Triage"],
    ("/api/v1/triages/{triage_id}/events", "get"): {"type": "object", "properties": {
        "events": {"type": "array", "items": _REF["Event"]}}},
    ("/api/v1/triages/{triage_id}/children", "get"): {"type": "object", "properties": {
        "triages": {"type": "array", "items": _REF["Triage"]}}},
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _operation_id(method: str, path: str) -> str:
    name = path.removeprefix("/api/v1/")
    for char in "/-.":
        name = name.replace(char, "_")
    return f"{method}_{name.replace('{', '').replace('}', '')}"


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for path, method, summary, params, body, status, admin in OPERATIONS:
        kind = "text/event-stream" if path.endswith("/stream") else "application/json"
        op: dict[str, Any] = {
            "summary": summary,
            "operationId": _operation_id(method, path),
            "parameters": params,
            "responses": {str(status): {"description": "success",
                                        "content": {kind: {"schema": ANSWERS.get((path, method), _OBJ)}}},
                          "400": _error("a parameter or the body is invalid (the message names it)"),
                          "401": _error("missing or wrong token"),
                          "404": _error("not found, or the API is off (no token configured)")},
            "x-required-role": "admin" if admin else "read",
        }
        if admin:
            op["responses"]["403"] = _error("the read token cannot change anything")
            op["responses"]["409"] = _error("the triage is not in a state that allows it")
            op["responses"]["413"] = _error("body over 64 KB")
        if body is not None:
            op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "bolt-triage operations API", "version": "1"},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
                       "schemas": {"Error": ERROR, "Triage": TRIAGE, "Event": EVENT}},
        "paths": paths,
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
