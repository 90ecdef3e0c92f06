"""The operations API under ``/api/v1/``: list, inspect, watch, replay, cancel and pause triages.

Modules: ``auth`` (tokens, request ids, the error shape), ``query`` (filters and the cursor),
``present`` (a triage record as the API shows it), ``triages`` (read endpoints), ``stream`` (SSE),
``actions`` (mutations of triages), ``retries`` (the pause switch), ``openapi`` (the document
a test holds every route to).

Why a blueprint in its own package: the web app's only other job is intake, which must stay fast
and dependency-free; everything here reads the state model (``triage.store``, ``triage.ledger``)
and never calls Paradime or Slack itself — work that talks to them is enqueued for the workers.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g, request

from triage.api.auth import bp


def register(app: Flask) -> None:
    """Add the API to the app (the app factory calls this). With no token configured every
    ``/api/`` path answers 404: the API is off, never open."""
    from triage.api import actions, auth, openapi, retries, stream, triages  # noqa: F401  (their routes join bp)

    app.register_blueprint(bp)
    app.before_request(auth.guard)
    app.after_request(auth.tag_response)


def request_ref() -> dict[str, Any]:
    """``{"request_id": …}`` for an error answered under ``/api/`` (merged into the app's error JSON)."""
    if request.path.startswith("/api/") and "request_id" in g:
        return {"request_id": g.request_id}
    return {}
