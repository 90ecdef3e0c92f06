"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 document of the API.

Built from one table (:data:`OPERATIONS`), so that adding a route means adding a row; the test
``tests/test_api_openapi.py`` checks every Flask route under ``/api/v1`` against it (and back).
"""

from __future__ import annotations

from typing import Any

from flask import jsonify

from triage.api.auth import bp
from triage.api.query import MAX_LIMIT, TriageFilter, TriggeredBy, Verdict
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
            "responses": {str(status): {"description": "success", "content": {kind: {"schema": _OBJ}}},
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
                       "schemas": {"Error": ERROR}},
        "paths": paths,
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
