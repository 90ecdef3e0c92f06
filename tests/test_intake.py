"""POST /webhooks/paradime: verification, validation, size, dedup, Redis down — over a real socket."""

from __future__ import annotations

import json
import threading

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from tests.conftest import WEBHOOK_SECRET, free_port, signed_headers
from triage.app import create_app
from triage.config import load_settings
from triage.sim.paradime import SimCommand

BODY = {
    "api_url": None,
    "commands": [
        {"id": 101, "command": "dbt run", "return_code": 1, "start_dttm": "2024-08-27 22:59:01.476387",
         "end_dttm": "2024-08-27 22:59:11.323692", "status": "failed", "json_resources": [],
         "api_query": "query { boltCommand(commandId: 101) { scheduleRunId } }", "some_future_field": {"x": 1}},
    ],
    "schedule_name": "daily",
    "run_id": 555,
}


def post(service, body, *, raw: bytes | None = None, headers: dict | None = None, path: str = ""):
    raw = raw if raw is not None else json.dumps(body).encode()
    return requests.post(service.webhook_url + path, data=raw,
                         headers=headers if headers is not None else signed_headers(WEBHOOK_SECRET, raw),
                         timeout=5)


def test_valid_body_with_unknown_fields_is_accepted(service):
    resp = post(service, BODY)
    assert resp.status_code == 202
    assert resp.json()["status"] == "queued" and resp.json()["run_id"] == 555
    assert resp.json()["event"] == "bolt.run.completed"
    assert service.queue.count == 1


def test_svix_headers_are_accepted(service):
    raw = json.dumps(BODY).encode()
    headers = {k.replace("webhook-", "svix-"): v for k, v in signed_headers(WEBHOOK_SECRET, raw).items()}
    assert post(service, None, raw=raw, headers=headers).status_code == 202


@pytest.mark.parametrize("raw, status, fragment", [
    (b"{not json", 400, "body is not valid JSON"),
    (b"[1, 2]", 400, "body: expected a JSON object, got list"),
    (json.dumps({"commands": "dbt run"}).encode(), 400, "commands: expected a list, got str"),
    (json.dumps({"commands": [{"id": "x", "command": "dbt run"}]}).encode(), 400,
     "commands[0].id: expected an integer, got str"),
    (json.dumps({"commands": [{"id": 1, "command": "dbt run", "return_code": "one"}]}).encode(), 400,
     "commands[0].return_code: expected an integer or null"),
    (json.dumps({"commands": [{"id": 1, "command": "dbt run", "end_dttm": "yesterday"}]}).encode(), 400,
     "commands[0].end_dttm: not a date-time"),
    (json.dumps({"commands": [{"id": 1, "command": "x", "json_resources": [{"id": 2}]}]}).encode(), 400,
     "commands[0].json_resources[0].path: expected a string"),
    (json.dumps({"commands": []}).encode(), 400, "nothing identifies the run"),
    (json.dumps({"run_id": 5, "event_type": "bolt.run.exploded"}).encode(), 400, "is not one of"),
    (json.dumps({"run_id": True}).encode(), 400, "run_id: expected an integer, got a boolean"),
])
def test_malformed_bodies_get_a_precise_400(service, raw, status, fragment):
    resp = post(service, None, raw=raw)
    assert resp.status_code == status
    assert resp.headers["Content-Type"] == "application/json"
    assert fragment in resp.json()["message"]
    assert service.queue.count == 0


def test_oversized_body_gets_413(service):
    raw = json.dumps({**BODY, "padding": "x" * 2_000_000}).encode()
    resp = post(service, None, raw=raw)
    assert resp.status_code == 413
    assert resp.json()["error"] == "request_entity_too_large"
    assert service.queue.count == 0


def test_event_type_is_inferred_from_running_commands(service):
    body = {"commands": [{"id": 7, "command": "dbt run", "start_dttm": "2024-08-27 22:59:01", "end_dttm": None,
                          "return_code": None, "status": "running"}]}
    resp = post(service, body)
    assert resp.status_code == 202 and resp.json()["event"] == "bolt.run.started"


def test_camel_case_run_fields_are_read(service):
    body = {"commands": BODY["commands"], "scheduleRunId": "777", "scheduleName": "hourly", "eventType":
            "bolt.run.completed"}
    resp = post(service, body)
    assert resp.status_code == 202 and resp.json()["run_id"] == 777


def test_redis_down_gives_503_with_retry_after(service_env, monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    app = create_app(load_settings())
    raw = json.dumps(BODY).encode()
    resp = app.test_client().post("/webhooks/paradime", data=raw, headers=signed_headers(WEBHOOK_SECRET, raw))
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "30"
    assert resp.get_json()["error"] == "unavailable"
    assert app.test_client().get("/healthz").status_code == 200  # the process is up: no Redis call
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["reasons"][0]["code"] == "redis_unreachable"


def test_token_mode_accepts_header_or_path_and_never_logs_it(service_env, monkeypatch, redis, caplog):
    monkeypatch.delenv("PARADIME_WEBHOOK_SECRET")
    monkeypatch.setenv("PARADIME_WEBHOOK_TOKEN", "tok-s3cret-value")
    client = create_app(load_settings()).test_client()
    raw = json.dumps(BODY).encode()
    with caplog.at_level("DEBUG"):
        assert client.post("/webhooks/paradime", data=raw).status_code == 401
        assert client.post("/webhooks/paradime/wrong", data=raw).status_code == 401
        assert client.post("/webhooks/paradime", data=raw,
                           headers={"Authorization": "Bearer tok-s3cret-value"}).status_code == 202
        raw2 = json.dumps({**BODY, "run_id": 556}).encode()
        assert client.post("/webhooks/paradime/tok-s3cret-value", data=raw2).status_code == 202
        raw3 = json.dumps({**BODY, "run_id": 557}).encode()
        assert client.post("/webhooks/paradime", data=raw3,
                           headers={"X-Webhook-Token": "tok-s3cret-value"}).status_code == 202
    assert "tok-s3cret-value" not in caplog.text


def test_no_verification_must_be_explicit_and_is_logged_loudly(service_env, monkeypatch, caplog):
    from triage.errors import ConfigError

    monkeypatch.delenv("PARADIME_WEBHOOK_SECRET")
    with pytest.raises(ConfigError, match="PARADIME_WEBHOOK_SECRET: not set"):
        create_app(load_settings())
    monkeypatch.setenv("TRIAGE_WEBHOOK_VERIFICATION", "none")
    with caplog.at_level("WARNING"):
        client = create_app(load_settings()).test_client()
    assert "WEBHOOK VERIFICATION IS OFF" in caplog.text
    assert client.post("/webhooks/paradime", json=BODY).status_code == 202


def test_foreign_api_url_is_never_sent_credentials(service, paradime):
    """An attacker-controlled api_url in a (validly signed) body must not receive the API key."""
    hits: list[dict] = []
    trap = Flask("trap")

    @trap.route("/<path:p>", methods=["GET", "POST"])
    def catch(p):
        from flask import request
        hits.append(dict(request.headers))
        return {"data": {}}

    port = free_port()
    server = make_server("127.0.0.1", port, trap, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run_id = paradime.add_run("daily", [SimCommand("dbt run", 1, stdout="Compilation Error in model x\n"
                                                       "  unexpected '}'")])
        body = paradime.webhook_payload(run_id)
        body["api_url"] = f"http://127.0.0.1:{port}/api/v1/evil/graphql"
        resp = post(service, body)
        assert resp.status_code == 202
        service.drain()
    finally:
        server.shutdown()
    assert hits == []
    assert len(paradime.calls_of("boltRunStatus")) == 1


def test_admit_is_one_round_trip_and_claims_once(redis, monkeypatch):
    """Claim, record and enqueue go to Redis as one script call; a second admit of the same event only
    reads the claim (and leaves no second job)."""
    from triage import broker
    from triage.config import JobPolicy
    from triage.store import Store

    store, queue = Store(redis), broker.queue(redis)

    def enqueue(tid):
        return lambda pipe: broker.enqueue_triage(queue, tid, {"run_id": 1}, JobPolicy(attempts=1, retry_intervals=()),
                                                  job_id=f"triage-{tid}", pipeline=pipe)

    # The first admit of a process also loads the script and lets RQ ask the server's version (once per queue).
    assert store.admit("run:0:completed", None, "tr_0", {"status": "queued"}, enqueue("tr_0")) is None
    sent = []
    real = redis.execute_command
    monkeypatch.setattr(redis, "execute_command", lambda *a, **kw: sent.append(a[0]) or real(*a, **kw))

    assert store.admit("run:1:completed", "msg_1", "tr_a", {"status": "queued"}, enqueue("tr_a")) is None
    assert sent == ["EVALSHA"]
    assert store.admit("run:1:completed", "msg_2", "tr_b", {"status": "queued"}, enqueue("tr_b")) == "tr_a"
    assert queue.job_ids == ["triage-tr_0", "triage-tr_a"]
    assert store.get_triage("tr_a")["status"] == "queued" and store.get_triage("tr_b") is None


def test_an_accepted_webhook_costs_one_redis_round_trip_its_count_included(service_env, redis, monkeypatch):
    """Issue 12: claim, record, job, first ledger events and the ``webhooks_total`` count are one
    packet to Redis and one answer. Counted at the connection: every round trip is one send."""
    from redis.connection import Connection

    from triage import metrics

    app = create_app(load_settings())
    client = app.test_client()

    def deliver(n: int):
        raw = json.dumps({**BODY, "run_id": n}).encode()
        return client.post("/webhooks/paradime", data=raw, headers=signed_headers(WEBHOOK_SECRET, raw, f"msg_{n}"))

    assert deliver(9001).status_code == 202  # the first loads the script and lets RQ ask the server's version
    sends = []
    real = Connection.send_packed_command
    monkeypatch.setattr(Connection, "send_packed_command",
                        lambda self, *a, **kw: sends.append(1) or real(self, *a, **kw))
    assert deliver(9002).status_code == 202
    assert len(sends) == 1
    assert deliver(9002).status_code == 200  # a duplicate: the claim is read, then counted on its own
    counts = redis.hgetall(metrics.WEBHOOKS.key)
    assert counts == {b"queued": b"2", b"duplicate": b"1"}
