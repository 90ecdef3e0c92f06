"""Fixtures for the operations API tests: the service with both tokens set, and an HTTP client.

Imported by the ``tests/test_api*.py`` modules (``from tests.api_fixtures import *``), so that the
shared ``conftest.py`` stays as it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from workers import context

ADMIN = "admin-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"


class Api:
    """The API over real HTTP, with a token (``None``: no Authorization header)."""

    def __init__(self, base: str, token: str | None):
        self.base, self.token = base, token

    def request(self, method: str, path: str, token: str | None = "default", **kw) -> requests.Response:
        token = self.token if token == "default" else token
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, f"{self.base}/api/v1{path}", headers=headers, timeout=15, **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> requests.Response:
        return self.request("POST", path, json=body, **kw)

    def delete(self, path: str, body: Any = None, **kw) -> requests.Response:
        return self.request("DELETE", path, json=body, **kw)

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        resp = self.request(method, path, json=body)
        assert resp.status_code == status, resp.text
        return resp.json()


@pytest.fixture
def api_env(service_env, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("TRIAGE_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("TRIAGE_READ_TOKEN", READ)
    return {**service_env, "TRIAGE_ADMIN_TOKEN": ADMIN, "TRIAGE_READ_TOKEN": READ}


@pytest.fixture
def ops(api_env, request):
    """(service, admin client, read client)."""
    svc = request.getfixturevalue("service")
    return svc, Api(svc.url, ADMIN), Api(svc.url, READ)


def edit_policy(**sections: dict[str, Any]) -> None:
    """Change the policy file the workers read (before they run), e.g. ``retry={"backoff_seconds": [600]}``."""
    path = Path(os.environ["TRIAGE_CONFIG"])
    doc = yaml.safe_load(path.read_text())
    for name, values in sections.items():
        doc[name].update(values)
    path.write_text(yaml.safe_dump(doc))
    context.current.cache_clear()


def story(service, origin: int) -> dict:
    raw = service.redis.get(f"bt:story:{origin}")
    return json.loads(raw) if raw else {}


def status_of(service, triage_id: str) -> str | None:
    raw = service.redis.hget(f"bt:triage:{triage_id}", "status")
    return json.loads(raw) if raw else None


__all__ = ["status_of", "ADMIN", "READ", "Api", "api_env", "edit_policy", "ops", "story"]
