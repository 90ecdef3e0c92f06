"""The operations API's read side over real HTTP: auth, errors, list/get/events, the cursor, SSE,
lineage, runs, debug bundle, flaky, stats — after real triages (webhook → RQ → simulators)."""

# ruff: noqa: F811  (the fixtures are imported from tests.api_fixtures)
from __future__ import annotations

import json
import logging
import threading

import requests

from tests.api_fixtures import ADMIN, READ, Api, api_env, ops, story  # noqa: F401
from tests.test_pipeline import LOCK, MISSING, dbt_run, failed_run
from triage.app import create_app
from triage.config import load_settings


def _recovered_chain(svc, paradime) -> tuple[int, str]:
    run_id = failed_run(paradime, dbt_run(LOCK))
    triage_id = paradime.deliver(run_id).json()["triage_id"]
    svc.drain(until=lambda: story(svc, run_id).get("status") == "recovered")
    return run_id, triage_id


def test_no_token_configured_turns_every_api_path_into_404(service):
    for path in ("/api/v1/triages", "/api/v1/nothing-here", "/api/v1/retries/pauses"):
        resp = requests.get(service.url + path, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
        assert resp.status_code == 404
        body = resp.json()
        assert body["error"] == "not_found" and body["request_id"] == resp.headers["X-Request-ID"]
    assert requests.post(service.url + "/api/v1/retries/pause", json={}, timeout=5).status_code == 404


def test_auth_none_wrong_read_only_and_request_ids(ops, caplog):
    _, admin, read = ops
    caplog.set_level(logging.DEBUG)
    none = admin.get("/triages", token=None)
    wrong = admin.get("/triages", token=ADMIN + "x")
    assert none.status_code == wrong.status_code == 401
    assert none.headers["WWW-Authenticate"].startswith("Bearer")
    assert set(wrong.json()) == {"error", "message", "request_id"}
    assert read.get("/triages").status_code == 200
    forbidden = read.post("/retries/pause", {"for_seconds": 60})
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "forbidden"
    assert admin.get("/triages/tr_0000000000000000").status_code == 404
    # a sane incoming id is echoed, a strange one replaced
    echoed = admin.get("/triages", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    replaced = admin.get("/triages/nope", headers={"X-Request-ID": "bad id\twith spaces"})
    assert replaced.headers["X-Request-ID"].startswith("req_")
    assert replaced.json()["request_id"] == replaced.headers["X-Request-ID"]
    for resp in (none, wrong, forbidden, echoed, replaced):
        assert ADMIN not in resp.text and READ not in resp.text
    assert ADMIN not in caplog.text and READ not in caplog.text


def test_bad_input_names_the_field(ops):
    _, admin, _ = ops
    cases = {"/triages?status=bogus": "status", "/triages?since=yesterday": "since", "/triages?limit=501": "limit",
             "/triages?run_id=12a": "run_id", "/triages?verdict=maybe": "verdict", "/triages?cursor=%%%": "cursor",
             "/triages?colour=red": "colour", "/triages?triggered_by=cron": "triggered_by"}
    for path, field in cases.items():
        resp = admin.get(path)
        assert resp.status_code == 400, path
        assert resp.json()["message"].startswith(field), resp.json()
    big = admin.post("/retries/pause", {"reason": "x" * 70_000, "for_seconds": 60})
    assert big.status_code == 413 and big.json()["error"] == "payload_too_large"
    bad_json = admin.request("POST", "/retries/pause", data=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["message"].startswith("body")
    assert admin.post("/retries/pause", {"for_seconds": -1}).json()["message"].startswith("for_seconds")
    assert admin.post("/retries/pause", {"for_seconds": 60, "schedule": 3}).json()["message"].startswith("schedule")


def test_list_get_and_events_of_a_recovered_chain(ops, paradime, slack):
    svc, admin, read = ops
    run_id, triage_id = _recovered_chain(svc, paradime)

    listed = read.ok("GET", "/triages")
    assert listed["next_cursor"] is None
    ids = [t["id"] for t in listed["triages"]]
    assert len(ids) == 2 and ids[-1] == triage_id, "newest first: the retry run's triage, then the original"
    assert [t["verdict"] for t in listed["triages"]] == ["recovered", "recovered"]
    assert [t["id"] for t in read.ok("GET", f"/triages?run_id={run_id}")["triages"]] == [triage_id]
    assert read.ok("GET", "/triages?schedule=daily_*&category=lock_conflict")["triages"][0]["id"] == triage_id
    assert read.ok("GET", "/triages?schedule=weekly_*")["triages"] == []
    assert read.ok("GET", "/triages?verdict=not_retried")["triages"] == []
    assert len(read.ok("GET", "/triages?triggered_by=webhook")["triages"]) == 2

    one = read.ok("GET", f"/triages/{triage_id}")
    assert (one["status"], one["run_id"], one["schedule_name"], one["triggered_by"]) == (
        "done", run_id, "daily_orders", "webhook")
    assert one["decision"]["action"] == "retry" and one["decision"]["reason_code"] == "transient"
    [failure] = one["failures"]
    assert failure["unique_id"] == "model.shop.stg_orders" and failure["category"] == "lock_conflict"
    assert failure["verdict"] == "transient" and failure["rule"] and failure["source"] == "run_results"
    new_run = one["actions"]["retry"]["new_run_id"]
    assert one["actions"]["retry"]["status"] == "issued" and new_run == story(svc, run_id)["runs"][1]
    assert one["actions"]["slack"]["ts"] == slack.top_level()[0].ts
    assert one["chain"] == {"original_run_id": run_id, "attempt": 0, "parent_run_id": None}
    trace = one["execution_trace"]
    assert trace["paradime"] > 0 and trace["download"] > 0 and trace["total"] >= trace["paradime"]
    assert trace["queue_wait"] is not None and trace["classify"] is not None
    assert one["received_at"].endswith("+00:00") and one["finished_at"]

    events = read.ok("GET", f"/triages/{triage_id}/events")["events"]
    types = [e["type"] for e in events]
    for step in ("received", "queued", "started", "run_status", "artifact_fetched", "classified", "decided",
                 "retry_scheduled", "retry_sent", "slack_posted", "done"):
        assert step in types, (step, types)
    assert types.index("received") < types.index("decided") < types.index("retry_sent")
    assert all(e["triage_id"] == triage_id and e["id"] for e in events)
    only_sent = read.ok("GET", f"/triages/{triage_id}/events?type=retry_sent")["events"]
    assert [e["type"] for e in only_sent] == ["retry_sent"] and only_sent[0]["data"]["new_run_id"] == new_run
    assert read.get(f"/triages/{triage_id}/events?level=loud").status_code == 400

    lineage = read.ok("GET", f"/triages/{triage_id}/lineage")
    assert lineage["runs"] == [run_id, new_run] and lineage["triages"][0]["id"] == triage_id
    assert lineage["triages"][1]["chain"]["attempt"] == 1

    chain = read.ok("GET", f"/runs/{new_run}")
    assert chain["original_run_id"] == run_id and chain["attempt"] == 1 and chain["story_status"] == "recovered"
    assert [r["run_id"] for r in chain["runs"]] == [run_id, new_run]
    assert chain["runs"][0]["triage_ids"] == [triage_id] and chain["slack"]["ts"]
    assert read.get("/runs/999999999").status_code == 404 and read.get("/runs/abc").status_code == 404


def test_debug_bundle_has_the_calls_and_evidence_but_no_secret(ops, paradime):
    svc, _, read = ops
    _, triage_id = _recovered_chain(svc, paradime)
    resp = read.get(f"/triages/{triage_id}/debug-bundle")
    bundle = resp.json()
    assert bundle["triage"]["id"] == triage_id and bundle["events"]
    operations = [(c["service"], c["operation"], c["status"]) for c in bundle["calls"]]
    assert ("paradime", "boltRunStatus", "200") in operations
    assert ("paradime", "retryBoltRun", "200") in operations
    assert any(s == "slack" and op == "chat.postMessage" for s, op, _ in operations)
    assert any(s == "download" for s, _, _ in operations)
    assert all(c["ms"] >= 0 for c in bundle["calls"])
    assert bundle["evidence"]["rules_matched"] and bundle["evidence"]["run_results"][0]["unique_id"]
    assert bundle["guards"]["retry"].startswith("issued:")
    for secret in (paradime.api_key, paradime.api_secret, svc.slack.token, ADMIN, READ):
        assert secret not in resp.text


def test_pagination_across_a_cursor(ops, paradime):
    svc, admin, _ = ops
    made = [paradime.deliver(failed_run(paradime, dbt_run(MISSING))).json()["triage_id"] for _ in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        page = admin.ok("GET", "/triages?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        seen += [t["id"] for t in page["triages"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # a triage admitted meanwhile appears on top, not inside the walk already under way
        if pages == 1:
            paradime.deliver(failed_run(paradime, dbt_run(MISSING)))
    assert seen == list(reversed(made)) and pages == 3
    assert len(admin.ok("GET", "/triages")["triages"]) == 8


def _read_sse(resp: requests.Response) -> list[tuple[str | None, str, str]]:
    """(id, event, data) of each message until ``end``; heartbeats as ("", "heartbeat", "")."""
    out, eid, kind, data = [], None, "message", []
    for line in resp.iter_lines(decode_unicode=True):
        if line.startswith(":"):
            out.append(("", "heartbeat", ""))
        elif line.startswith("id:"):
            eid = line[3:].strip()
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            out.append((eid, kind, "\n".join(data)))
            if kind == "end":
                break
            eid, kind, data = None, "message", []
    return out


def test_sse_stream_until_final_with_heartbeats_and_resume(ops, paradime):
    svc, _, read = ops
    run_id = failed_run(paradime, dbt_run(MISSING))
    triage_id = paradime.deliver(run_id).json()["triage_id"]
    got: list = []
    headers = {"Authorization": f"Bearer {READ}"}
    with requests.get(f"{svc.url}/api/v1/triages/{triage_id}/stream?heartbeat=1", headers=headers, stream=True,
                      timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        reader = threading.Thread(target=lambda: got.extend(_read_sse(resp)))
        reader.start()
        reader.join(2.5)  # idle: heartbeats only
        svc.drain()
        reader.join(20)
    assert not reader.is_alive(), "the stream ends once the triage is final"
    assert ("", "heartbeat", "") in got
    events = [(i, k, json.loads(d)) for i, k, d in got if k not in ("heartbeat", "end")]
    assert [k for _, k, _ in events][:3] == ["received", "queued", "started"]
    assert "decided" in [k for _, k, _ in events]
    assert got[-1][1] == "end" and json.loads(got[-1][2])["status"] == "done"
    # Last-Event-ID: only what came after
    third = events[2][0]
    with requests.get(f"{svc.url}/api/v1/triages/{triage_id}/stream",
                      headers={**headers, "Last-Event-ID": third}, stream=True, timeout=30) as again:
        rest = [(i, k) for i, k, _ in _read_sse(again) if k != "end"]
    assert [i for i, _ in rest] == [i for i, _, _ in events[3:]]
    assert read.get(f"/triages/{triage_id}/stream", headers={"Last-Event-ID": "x y"}).status_code == 400


def test_flaky_and_stats(ops, paradime):
    svc, _, read = ops
    _recovered_chain(svc, paradime)
    paradime.deliver(failed_run(paradime, dbt_run(MISSING), schedule="weekly"))
    svc.drain()
    [node] = [n for n in read.ok("GET", "/flaky")["nodes"] if n["recoveries"]]
    assert node["unique_id"] == "model.shop.stg_orders" and node["retries"] == 1 and node["score"] == 1.0
    stats = read.ok("GET", "/stats?since=2020-01-01T00:00:00Z")
    assert stats["by_verdict"] == {"recovered": 2, "not_retried": 1}
    assert stats["by_category"]["lock_conflict"] == 1 and stats["by_category"]["missing_object"] == 1
    assert stats["retries_issued"] == 1 and stats["recovered_share"] == 1.0
    assert stats["median_seconds_webhook_to_slack"] > 0
    assert read.get("/stats?since=last-week").status_code == 400


def test_a_short_token_stops_the_web_at_start(service_env, monkeypatch):
    monkeypatch.setenv("TRIAGE_ADMIN_TOKEN", "short")
    import pytest

    from triage.errors import ConfigError

    with pytest.raises(ConfigError, match="TRIAGE_ADMIN_TOKEN: at least 16"):
        create_app(load_settings())
    monkeypatch.setenv("TRIAGE_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("TRIAGE_READ_TOKEN", ADMIN)
    with pytest.raises(ConfigError, match="TRIAGE_READ_TOKEN: must differ"):
        create_app(load_settings())


def test_tokens_are_masked_in_logs(api_env):
    from triage import logs

    assert ADMIN in logs.secrets_of(load_settings()) and READ in logs.secrets_of(load_settings())


def test_api_client_class_is_exercised(ops):
    _, admin, _ = ops
    assert isinstance(admin, Api) and admin.get("/retries/pauses").json() == {"pauses": []}


def test_check_config_says_whether_the_api_is_on_without_printing_tokens(api_env):
    from triage.checkconfig import check

    lines: list[str] = []
    check(dict(api_env), only="web", say=lines.append)
    text = "\n".join(lines)
    assert "operations API: on (admin and read token)" in text
    assert ADMIN not in text and READ not in text
    lines.clear()
    check({k: v for k, v in api_env.items() if not k.startswith("TRIAGE_") or k == "TRIAGE_CONFIG"}, only="web",
          say=lines.append)
    assert "operations API: off" in "\n".join(lines)


def test_unknown_paths_and_methods_under_the_api_answer_in_its_error_shape(ops):
    _, admin, _ = ops
    missing = admin.get("/nothing-here")
    wrong_method = admin.request("PUT", "/triages")
    for resp, status in ((missing, 404), (wrong_method, 405)):
        assert resp.status_code == status
        assert set(resp.json()) == {"error", "message", "request_id"}
        assert resp.json()["request_id"] == resp.headers["X-Request-ID"]
    assert admin.request("PUT", "/triages", token=None).status_code == 401, "auth first: nothing revealed"


def test_api_answers_503_while_redis_is_down(api_env, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    client = create_app(load_settings()).test_client()
    resp = client.get("/api/v1/triages", headers={"Authorization": f"Bearer {READ}"})
    assert resp.status_code == 503 and resp.json["error"] == "unavailable" and resp.headers["Retry-After"] == "30"


def test_ledger_retention_and_caps_are_configured(api_env, redis):
    from triage.config import LedgerSettings
    from triage.ledger import Call, EventType, Keys, Ledger, Service

    book = Ledger(redis, LedgerSettings(retention_days=2, max_events=10, max_calls=10))
    for i in range(25):
        book.record("tr_0000000000000001", EventType.RUN_STATUS, f"check {i}")
        book.call("tr_0000000000000001", Call(Service.PARADIME, "boltRunStatus", "200", 1.5))
    events = book.events("tr_0000000000000001")
    assert len(events) == 10 and events[-1].message == "check 24", "the oldest fall off"
    assert len(book.calls("tr_0000000000000001")) == 10
    assert book.trace("tr_0000000000000001")["paradime"] == 37.5
    for key in (Keys.events("tr_0000000000000001"), Keys.calls("tr_0000000000000001"),
                Keys.trace("tr_0000000000000001")):
        assert 2 * 86400 - 5 < redis.ttl(key) <= 2 * 86400
