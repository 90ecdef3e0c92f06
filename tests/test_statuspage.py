"""The status page over HTTP: login into a signed HttpOnly session, CSRF on mutations, and the
``/ui/api`` proxy that runs the operations API with the session's token. Its browser tests are in
``test_statuspage_browser.py``."""

from __future__ import annotations

import pytest
import requests
from flask import jsonify, request

from triage.app import create_app
from triage.config import load_settings
from triage.errors import ConfigError

READ, ADMIN = "read-token-4d1f8e2a90", "admin-token-7c3b5e9f12"
SECRET = "session-secret-" + "9" * 32


@pytest.fixture
def service_env(service_env, monkeypatch):
    extra = {"TRIAGE_READ_TOKEN": READ, "TRIAGE_ADMIN_TOKEN": ADMIN, "TRIAGE_SESSION_SECRET": SECRET}
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    return {**service_env, **extra}


def log_in(url: str, token: str) -> requests.Session:
    s = requests.Session()
    resp = s.post(f"{url}/login", data={"token": token}, allow_redirects=False, timeout=10)
    assert resp.status_code == 303, resp.text
    return s


def csrf_of(s: requests.Session, url: str) -> str:
    page = s.get(f"{url}/", timeout=10).text
    return page.split('data-csrf="', 1)[1].split('"', 1)[0]


def test_login_sets_an_httponly_strict_cookie_without_the_token(service):
    assert 'action="/login"' in requests.get(f"{service.url}/", timeout=10).text
    wrong = requests.post(f"{service.url}/login", data={"token": "guess"}, allow_redirects=False, timeout=10)
    assert wrong.status_code == 401 and "not valid" in wrong.text and "Set-Cookie" not in wrong.headers
    ok = requests.post(f"{service.url}/login", data={"token": READ}, allow_redirects=False, timeout=10)
    cookie = ok.headers["Set-Cookie"]
    assert ok.status_code == 303 and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert READ not in cookie and SECRET not in cookie
    s = log_in(service.url, READ)
    page = s.get(f"{service.url}/", timeout=10).text
    assert 'data-role="read"' in page and 'id="pause"' not in page  # admin controls only for admin


def test_a_forged_or_stale_session_is_a_login_form(service, service_env, monkeypatch):
    s = log_in(service.url, ADMIN)
    value = s.cookies["bt_session"]
    forged = value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")
    page = requests.get(f"{service.url}/", cookies={"bt_session": forged}, timeout=10).text
    assert 'action="/login"' in page
    monkeypatch.setenv("TRIAGE_ADMIN_TOKEN", "admin-token-rotated-000")  # a rotated token ends its sessions
    client = create_app(load_settings()).test_client()
    client.set_cookie("bt_session", value)
    assert b'action="/login"' in client.get("/").data


def test_ui_api_needs_a_session_and_csrf_on_mutations(service):
    assert requests.get(f"{service.url}/ui/api/triages", timeout=10).status_code == 401
    s = log_in(service.url, ADMIN)
    refused = s.post(f"{service.url}/ui/api/retries/pause", json={"reason": "x"}, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    wrong = s.post(f"{service.url}/ui/api/retries/pause", json={}, headers={"X-CSRF-Token": "nope"}, timeout=10)
    assert wrong.status_code == 403
    out = s.post(f"{service.url}/logout", data={"csrf": csrf_of(s, service.url)}, allow_redirects=False, timeout=10)
    assert out.status_code == 303 and "bt_session=;" in out.headers["Set-Cookie"]


def test_the_proxy_runs_the_api_with_the_sessions_token_and_not_its_cookie(service_env, redis):
    app = create_app(load_settings())

    @app.get("/api/v1/whoami")  # a stand-in route of the API, in this process: what did the API receive?
    def whoami():
        return jsonify(authorization=request.headers.get("Authorization"), cookie=request.headers.get("Cookie"),
                       args=request.args.to_dict())

    @app.post("/api/v1/echo")
    def echo():
        return jsonify(body=request.get_json(), authorization=request.headers.get("Authorization"))

    client = app.test_client()
    for token, role in ((READ, "read"), (ADMIN, "admin")):
        assert client.post("/login", data={"token": token}).status_code == 303
        seen = client.get("/ui/api/whoami?status=done").get_json()
        assert seen == {"authorization": f"Bearer {token}", "cookie": None, "args": {"status": "done"}}, role
    page = client.get("/").get_data(as_text=True)
    csrf = page.split('data-csrf="', 1)[1].split('"', 1)[0]
    posted = client.post("/ui/api/echo", json={"reason": "incident"}, headers={"X-CSRF-Token": csrf}).get_json()
    assert posted == {"body": {"reason": "incident"}, "authorization": f"Bearer {ADMIN}"}


def test_the_page_is_off_without_a_session_secret(service_env, monkeypatch):
    monkeypatch.delenv("TRIAGE_SESSION_SECRET")
    client = create_app(load_settings()).test_client()
    assert client.get("/").status_code == 404 and b"TRIAGE_SESSION_SECRET" in client.get("/").data
    assert client.post("/login", data={"token": READ}).status_code == 404
    monkeypatch.setenv("TRIAGE_SESSION_SECRET", "short")
    with pytest.raises(ConfigError, match="^TRIAGE_SESSION_SECRET: at least 32 characters"):
        create_app(load_settings())


def test_read_session_mutations_are_refused_by_the_api(service):
    if not any(r.rule == "/api/v1/retries/pause" for r in create_app(load_settings()).url_map.iter_rules()):
        pytest.skip("the operations API (/api/v1/…, issue 10) is not in this build")
    s = log_in(service.url, READ)
    resp = s.post(f"{service.url}/ui/api/retries/pause", json={"reason": "x", "for_seconds": 60},
                  headers={"X-CSRF-Token": csrf_of(s, service.url)}, timeout=10)
    assert resp.status_code == 403  # the read token on a mutation, as the API answers it
    assert s.get(f"{service.url}/ui/api/triages", timeout=10).json()["triages"] == []
