"""Who may call the API, the request id, and the one error shape.

- ``TRIAGE_ADMIN_TOKEN`` may do everything, ``TRIAGE_READ_TOKEN`` only GET; sent as
  ``Authorization: Bearer <token>`` and compared with ``hmac.compare_digest`` against both tokens
  (both comparisons always run, so timing tells nothing about which one came close).
- No token configured: every ``/api/`` path is 404, exactly like a path that does not exist.
- Missing or wrong token: 401; read token on a mutation: 403. A token is never echoed or logged
  (``triage.logs`` masks both, ``secrets_of``).
- Every answer carries ``X-Request-ID``: a sane incoming one is echoed (so a proxy's id follows the
  request), else a new one; every error is ``{"error", "message", "request_id"}``.
"""

from __future__ import annotations

import hmac
import logging
import re
import uuid
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import BadRequest

from triage.enums import TextEnum

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_BODY = 64 * 1024
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Role(TextEnum):
    READ = "read"
    ADMIN = "admin"


class ApiError(Exception):
    """An answer other than success: status, a stable code, a sentence naming what was wrong."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def bad_request(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request", f"{field}: {message}")


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def error_response(exc: ApiError) -> tuple[Response, int]:
    resp = jsonify(error=exc.code, message=exc.message, request_id=g.get("request_id"))
    resp.headers.update(exc.headers)
    return resp, exc.status


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    return error_response(exc)


@bp.errorhandler(RedisError)
def _redis_down(exc: RedisError):
    """Redis is the API's only store: while it is unreachable, say so (503), like intake does."""
    log.error("operations API: Redis unavailable (%s)", exc.__class__.__name__)
    return error_response(ApiError(503, "unavailable", "Redis is unreachable; try again shortly",
                                   {"Retry-After": "30"}))


def _role(header: str | None) -> Role | None:
    settings = current_app.extensions["triage"]["settings"]
    scheme, _, given = (header or "").partition(" ")
    given = given.strip().encode()
    # Both comparisons always run (constant time whichever token is tried); an unset token matches nothing.
    is_admin = hmac.compare_digest(given, (settings.admin_token or "").encode()) and bool(settings.admin_token)
    is_read = hmac.compare_digest(given, (settings.read_token or "").encode()) and bool(settings.read_token)
    if scheme.lower() != "bearer" or not given:
        return None
    return Role.ADMIN if is_admin else Role.READ if is_read else None


def guard():
    """Before every request: the request id; for ``/api/`` paths, the API switch, the token and the
    body size. Runs before routing errors are raised, so an unknown ``/api/`` path reveals nothing."""
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _SANE_ID.match(incoming) else "req_" + uuid.uuid4().hex[:16]
    if not request.path.startswith("/api/"):
        return None
    settings = current_app.extensions["triage"]["settings"]
    if not (settings.admin_token or settings.read_token):
        return error_response(ApiError(404, "not_found", "not found"))
    role = _role(request.headers.get("Authorization"))
    if role is None:
        return error_response(ApiError(401, "unauthorized", "a valid Authorization: Bearer <token> is required",
                                       {"WWW-Authenticate": 'Bearer realm="bolt-triage"'}))
    if request.method not in READ_METHODS and role is not Role.ADMIN:
        return error_response(ApiError(403, "forbidden", "the read token cannot change anything; use the admin token"))
    g.role = role
    if (request.content_length or 0) > MAX_BODY:
        return error_response(ApiError(413, "payload_too_large", f"body over {MAX_BODY // 1024} KB"))
    request.max_content_length = MAX_BODY  # a chunked body is cut at the same size
    return None


def tag_response(resp: Response) -> Response:
    if "request_id" in g:
        resp.headers["X-Request-ID"] = g.request_id
    return resp


def json_body(required: bool = False) -> dict[str, Any]:
    """The request's JSON object; 400 naming ``body`` when it is not one."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise bad_request("body", "a JSON object is required")
        return {}
    try:
        doc = request.get_json(force=True, silent=False)
    except BadRequest:
        raise bad_request("body", "not valid JSON") from None
    if not isinstance(doc, dict):
        raise bad_request("body", "expected a JSON object")
    return doc


def reason_of(body: dict[str, Any]) -> str:
    """An operator's free-text ``reason`` (shown in Slack and the timeline), bounded."""
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 200:
        raise bad_request("reason", "expected a string of at most 200 characters")
    return reason.strip()
