"""``GET /``: the status page for humans, and ``/ui/api/…``, through which its JavaScript calls the
operations API (``/api/v1/…``).

Why a proxy: the page keeps no token where JavaScript can read it. Logging in with the read or the
admin token sets a signed session cookie (``TRIAGE_SESSION_SECRET``; HttpOnly, SameSite=Strict,
Secure over HTTPS) that holds the role, a fingerprint of that role's token (a rotated token ends
its sessions) and a CSRF token, never the token itself. ``/ui/api/<path>`` checks the cookie (and,
for anything but GET, the ``X-CSRF-Token`` header), then runs ``/api/v1/<path>`` inside this process
with the role's configured token as ``Authorization: Bearer``: the page gets exactly what the API
gives, its validation, errors and Server-Sent Events included, and a read session stays read-only.

Off (404) unless ``TRIAGE_SESSION_SECRET`` and a token are configured.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import io
import secrets
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.test import run_wsgi_app

from triage.config import Settings

bp = Blueprint("statuspage", __name__, template_folder="ui", static_folder="ui", static_url_path="/ui/static")

COOKIE = "bt_session"
SESSION_SECONDS = 12 * 3600
#: Request headers the API may use; everything else (the cookie first) stays out of the inner request.
_FORWARDED = ("CONTENT_TYPE", "HTTP_ACCEPT", "HTTP_LAST_EVENT_ID", "HTTP_X_REQUEST_ID")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def _settings() -> Settings:
    return current_app.extensions["triage"]["settings"]


def _tokens(settings: Settings) -> dict[str, str]:
    return {role: token for role, token in (("admin", settings.admin_token), ("read", settings.read_token)) if token}


def _enabled(settings: Settings) -> bool:
    return bool(settings.session_secret and _tokens(settings))


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.session_secret or "", salt="bolt-triage-session")


def _fingerprint(settings: Settings, token: str) -> str:
    return hmac.new((settings.session_secret or "").encode(), token.encode(), hashlib.sha256).hexdigest()[:24]


def session() -> dict[str, str] | None:
    """The valid session of this request: ``{"role", "csrf"}``; None when absent, forged, expired, or
    its role's token changed since."""
    settings = _settings()
    raw = request.cookies.get(COOKIE)
    if not raw or not _enabled(settings):
        return None
    try:
        data = _serializer(settings).loads(raw, max_age=SESSION_SECONDS)
    except BadSignature:
        return None
    token = _tokens(settings).get(data.get("role", ""))
    if not token or not hmac.compare_digest(str(data.get("fp", "")), _fingerprint(settings, token)):
        return None
    return {"role": data["role"], "csrf": str(data.get("csrf", ""))}


@bp.get("/")
def page():
    settings = _settings()
    if not _enabled(settings):
        return render_template("off.html"), 404
    current = session()
    if current is None:
        return render_template("login.html", error=None)
    return render_template("status.html", role=current["role"], csrf=current["csrf"])


@bp.post("/login")
def login():
    settings = _settings()
    if not _enabled(settings):
        return render_template("off.html"), 404
    given = (request.form.get("token") or "").strip().encode()
    role = next((r for r, t in _tokens(settings).items() if given and hmac.compare_digest(given, t.encode())), None)
    if role is None:
        return render_template("login.html", error="That token is not valid."), 401
    value = _serializer(settings).dumps({"role": role, "fp": _fingerprint(settings, _tokens(settings)[role]),
                                         "csrf": secrets.token_urlsafe(24)})
    resp = redirect("/", code=303)
    resp.set_cookie(COOKIE, value, max_age=SESSION_SECONDS, httponly=True, samesite="Strict", secure=request.is_secure,
                    path="/")
    return resp


@bp.post("/logout")
def logout():
    current = session()
    if current and not hmac.compare_digest(request.form.get("csrf", ""), current["csrf"]):
        return jsonify(error="forbidden", message="missing or wrong CSRF token"), 403
    resp = redirect("/", code=303)
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="Strict")
    return resp


@bp.route("/ui/api/<path:rest>", methods=["GET", "POST", "DELETE"])
def api(rest: str):
    current = session()
    if current is None:
        return jsonify(error="unauthorized", message="log in on the status page first"), 401
    if request.method != "GET" and not hmac.compare_digest(request.headers.get("X-CSRF-Token", ""), current["csrf"]):
        return jsonify(error="forbidden", message="missing or wrong CSRF token"), 403
    return _inner(f"/api/v1/{rest}", _tokens(_settings())[current["role"]])


def _inner(path: str, token: str) -> Response:
    """Run one API request in this process, as if it had come with ``Authorization: Bearer <token>``."""
    body = request.get_data(cache=False)
    outer: dict[str, Any] = request.environ
    environ = {k: v for k, v in outer.items()  # CGI and WSGI keys only: not werkzeug's request object
               if (k.isupper() and (not k.startswith("HTTP_") or k in _FORWARDED)) or k.startswith("wsgi.")}
    environ.update({"PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": outer.get("QUERY_STRING", ""),
                    "HTTP_AUTHORIZATION": f"Bearer {token}", "CONTENT_LENGTH": str(len(body)),
                    "wsgi.input": io.BytesIO(body), "HTTP_HOST": outer.get("HTTP_HOST", "localhost")})
    # In a context of its own: a streamed answer (SSE) keeps the inner request's Flask context pushed
    # while it is read, which must not sit on top of this request's own.
    inner = contextvars.copy_context()
    app_iter, status, headers = inner.run(run_wsgi_app, current_app.wsgi_app, environ, False)
    kept = [(k, v) for k, v in headers.items() if k.lower() not in _HOP_BY_HOP]
    return Response(_relay(inner, app_iter), status=status, headers=kept, direct_passthrough=True)


def _relay(inner: contextvars.Context, app_iter: Any) -> Any:
    """Read the inner answer chunk by chunk in its own context, closing it (ending its stream) at the end."""
    chunks = iter(app_iter)
    try:
        while True:
            try:
                yield inner.run(next, chunks)
            except StopIteration:
                return
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            inner.run(close)
