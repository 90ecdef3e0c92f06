"""The whole path over real sockets: simulator webhook → web app → Redis/RQ → worker →
Paradime simulator → decision → retry → Slack simulator."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import yaml
from rq import SimpleWorker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer

from tests.conftest import WEBHOOK_SECRET, signed_headers
from triage.sim.paradime import SimCommand, make_run_results
from workers import context

LOCK = ("000625 (57014): Statement '01b2c3d4-0000-1234-0000-00000000abcd' has been aborted because the "
        "number of waiters for this lock exceeds the 20 statements limit.")
MISSING = ("Database Error in model stg_orders (models/staging/stg_orders.sql)\n  002003 (42S02): SQL compilation "
           "error:\n  Object 'RAW.SHOP.ORDERS' does not exist or not authorized.")
CONNECT_LOG = """\
\x1b[0m12:00:01  Running with dbt=1.8.0
\x1b[0m12:00:01  Registered adapter: snowflake=1.8.3
\x1b[0m12:00:02  Found 12 models, 20 data tests, 3 sources
\x1b[0m12:00:05  Encountered an error:
Database Error
  250001: Could not connect to Snowflake backend after 2 attempt(s).Aborting
"""
DEPS_LOG = """\
\x1b[0m12:00:01  Running with dbt=1.8.0
\x1b[0m12:00:03  Encountered an error:
External connection exception occurred: HTTPSConnectionPool(host='hub.getdbt.com', port=443): Max retries \
exceeded with url: /api/v1/dbt-labs/dbt_utils.json (Caused by NewConnectionError('<urllib3.connection.\
HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno 110] Connection timed out'))
"""


def ok(command: str) -> SimCommand:
    return SimCommand(command, 0, stdout=f"{command}: done")


def dbt_run(message: str | None, *, rc: int = 1, stdout: str = "", generated_at=None, nodes=None) -> SimCommand:
    """A failed ``dbt run`` whose run_results.json has one node failing with ``message``."""
    nodes = nodes or [("model.shop.stg_orders", "error", message), ("model.shop.stg_payments", "success", None)]
    artifacts = {"target/run_results.json": make_run_results(nodes, generated_at=generated_at,
                                                             adapter_type="snowflake")}
    return SimCommand("dbt run", rc, stdout=stdout or "Registered adapter: snowflake=1.8.3\n", artifacts=artifacts)


def failed_run(paradime, *commands: SimCommand, schedule: str = "daily_orders") -> int:
    return paradime.add_run(schedule, [ok("git clone"), ok("dbt deps"), *commands])


def story(service, origin: int) -> dict:
    raw = service.redis.get(f"bt:story:{origin}")
    return json.loads(raw) if raw else {}


def test_transient_failure_is_retried_exactly_once_and_recovery_is_reported(service, paradime, slack):
    run_id = failed_run(paradime, dbt_run(LOCK))
    resp = paradime.deliver(run_id)
    assert resp.status_code == 202, resp.text
    assert resp.json()["triage_id"].startswith("tr_")

    service.drain(until=lambda: story(service, run_id).get("status") == "recovered")

    retries = paradime.calls_of("retryBoltRun")
    assert [c.variables["scheduleRunId"] for c in retries] == [run_id]
    s = story(service, run_id)
    assert s["attempts"] == 1 and len(s["runs"]) == 2
    assert s["flaky_nodes"] == []  # one recovery is not "flaky" (triage.history.NodeHistory.is_flaky)

    parents = slack.top_level("#data-alerts")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.history, "the parent message is updated in place"
    assert "Recovered on retry 1 — stg_orders passed on retry" in parent.text and "flaky" not in parent.text
    assert f"https://app.paradime.io/bolt/run_id/{run_id}" in json.dumps(parent.blocks)
    first = parent.history[0]
    assert "Retrying now: 1 model hit a Snowflake lock conflict" in first["text"]
    assert "lock_conflict" in json.dumps(first["blocks"]) and "next: retry 1" in json.dumps(first["blocks"])
    replies = [m.text for m in slack.replies(parent.ts)]
    assert any("Retry 1 started" in t for t in replies)
    assert any("recovered" in t for t in replies)

    # A redelivery after the fact changes nothing.
    again = paradime.deliver(run_id)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    service.drain()
    assert len(paradime.calls_of("retryBoltRun")) == 1
    assert len(slack.top_level("#data-alerts")) == 1


def test_deterministic_failure_is_never_retried(service, paradime, slack):
    run_id = failed_run(paradime, dbt_run(MISSING))
    assert paradime.deliver(run_id).status_code == 202
    service.drain()

    assert paradime.calls_of("retryBoltRun") == [] and paradime.calls_of("triggerBoltRun") == []
    assert story(service, run_id)["status"] == "not_retried"
    [message] = slack.top_level()
    assert "Not retrying: 1 model references a missing table or view" in message.text
    assert "missing_object" in json.dumps(message.blocks)
    blocks = json.dumps(message.blocks)
    assert "does not exist or not authorized" in blocks and "stg_orders" in blocks


def test_duplicate_deliveries_enqueue_one_job(service, paradime):
    run_id = failed_run(paradime, dbt_run(LOCK))
    first = paradime.deliver(run_id, headers={"webhook-id": "msg_same"})
    again = paradime.deliver(run_id, headers={"webhook-id": "msg_same"})
    other_id = paradime.deliver(run_id)  # a new delivery id, but the same run and event
    assert first.status_code == 202
    assert again.status_code == 200 and again.json() == {"status": "duplicate",
                                                         "triage_id": first.json()["triage_id"]}
    assert other_id.json()["status"] == "duplicate"
    assert service.queue.count == 1
    service.drain(until=lambda: story(service, run_id).get("status") == "recovered")
    assert len(paradime.calls_of("retryBoltRun")) == 1


def test_bad_or_missing_signature_enqueues_nothing(service, paradime):
    run_id = failed_run(paradime, dbt_run(LOCK))
    bad = paradime.deliver(run_id, headers={"webhook-signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="})
    unsigned = paradime.deliver(run_id, signed=False)
    old = paradime.deliver(run_id, headers={"webhook-timestamp": str(int(datetime.now().timestamp()) - 3600)})
    for resp in (bad, unsigned, old):
        assert resp.status_code == 401
        assert resp.json()["error"] == "unauthorized"
    assert "missing" in unsigned.json()["message"]
    assert service.queue.count == 0
    assert service.redis.keys("bt:delivery:*") == [] and service.redis.keys("bt:event:*") == []


def test_stale_run_results_fall_back_to_the_log(service, paradime, slack):
    stale = datetime.now(timezone.utc) - timedelta(days=1)
    run_id = failed_run(paradime, dbt_run("old failure: syntax error at or near 'selec'", stdout=CONNECT_LOG,
                                          generated_at=stale))
    paradime.deliver(run_id)
    service.drain(until=lambda: story(service, run_id).get("status") == "recovered")

    record = _triage_of(service, run_id)
    failure = record["evidence"]["failures"][0]
    assert failure["classification"]["source"] == "log"
    assert failure["classification"]["verdict"] == "transient"
    assert "250001" in failure["classification"]["excerpt"]
    assert any("stale" in n for n in record["evidence"]["notes"])
    assert len(paradime.calls_of("retryBoltRun")) == 1


def test_artifacts_not_ready_are_waited_for(service, paradime):
    run_id = failed_run(paradime, dbt_run(LOCK))
    resource = paradime.get_run(run_id).commands[2].resources[0].id
    paradime.resource_not_ready(resource, times=2)
    paradime.deliver(run_id)
    service.drain(until=lambda: story(service, run_id).get("status") == "recovered")
    assert len(paradime.calls_of("boltResourceUrl")) >= 3
    record = _triage_of(service, run_id)
    assert record["evidence"]["failures"][0]["classification"]["source"] == "run_results"
    assert len(paradime.calls_of("retryBoltRun")) == 1


def test_infra_only_failure_triggers_the_schedule(service, paradime):
    run_id = paradime.add_run("nightly", [ok("git clone"), SimCommand("dbt deps", 2, stdout=DEPS_LOG),
                                          SimCommand("dbt run", -10)])
    # dbt run never started (-10 in Bolt's example): only dbt deps really failed.
    paradime.deliver(run_id)
    service.drain(until=lambda: story(service, run_id).get("status") == "recovered")
    assert paradime.calls_of("retryBoltRun") == []
    [trigger] = paradime.calls_of("triggerBoltRun")
    assert trigger.variables["scheduleName"] == "nightly"


def test_budget_stops_a_third_retry(service, paradime, slack):
    again = [ok("git clone"), ok("dbt deps"), dbt_run(LOCK)]
    paradime.queue_outcome("daily_orders", again)
    paradime.queue_outcome("daily_orders", again)
    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.deliver(run_id)
    service.drain(until=lambda: story(service, run_id).get("status") == "gave_up")

    assert len(paradime.calls_of("retryBoltRun")) == 2
    s = story(service, run_id)
    assert s["attempts"] == 2 and len(s["runs"]) == 3
    [parent] = slack.top_level()
    assert "retry budget spent" in parent.text
    assert "Failed again on retry 2" in parent.text


def test_run_id_is_resolved_when_the_body_has_none(service, paradime):
    paradime.include_run_fields = False
    run_id = failed_run(paradime, dbt_run(MISSING))
    assert "run_id" not in paradime.webhook_payload(run_id)
    resp = paradime.deliver(run_id)
    assert resp.status_code == 202 and resp.json()["run_id"] is None
    service.drain()
    assert paradime.calls_of("boltCommand")[0].variables["commandId"] > 0
    assert _triage_of(service, run_id)["action"] == "none"


def test_a_running_run_is_checked_again_until_it_ends(service, paradime):
    run_id = paradime.add_run("daily_orders", [ok("git clone"), ok("dbt deps"), dbt_run(MISSING)], state="RUNNING")
    body = paradime.webhook_payload(run_id)
    body["event_type"] = "bolt.run.completed"  # a sender that says completed too early
    raw = json.dumps(body).encode()
    requests.post(service.webhook_url, data=raw, headers=signed_headers(WEBHOOK_SECRET, raw), timeout=5)
    service.drain(until=lambda: len(paradime.calls_of("boltRunStatus")) >= 2, idle=False)
    assert _triage_of(service, run_id) is None, "not triaged while RUNNING"
    paradime.set_state(run_id, "ERROR")
    service.drain(until=lambda: _triage_of(service, run_id) is not None)
    assert _triage_of(service, run_id)["action"] == "none"


def test_paradime_outage_ends_in_the_failed_registry_with_a_slack_note(service, paradime, slack):
    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.fail_next("boltRunStatus", times=100, kind="http_502")
    paradime.deliver(run_id)
    service.drain(timeout=30)

    failed = FailedJobRegistry(queue=service.queue)
    assert failed.count == 1
    job = service.queue.fetch_job(failed.get_job_ids()[0])
    assert "boltRunStatus: HTTP 502" in job.latest_result().exc_string
    [note] = slack.top_level()
    assert f"Could not triage run {run_id}" in note.text and "HTTP 502" in note.text
    assert paradime.calls_of("retryBoltRun") == []


def test_retry_job_run_twice_sends_one_mutation(service, paradime):
    from workers import jobs

    run_id = failed_run(paradime, dbt_run(LOCK))
    service.redis.set(f"bt:chain:{run_id}", json.dumps({"origin": run_id, "attempt": 0}))
    first = jobs.perform_retry("tr_test", run_id, run_id, 1, "retry", "daily_orders")
    second = jobs.perform_retry("tr_test", run_id, run_id, 1, "retry", "daily_orders")
    assert first["status"] == "issued" and second["status"] == "already"
    assert len(paradime.calls_of("retryBoltRun")) == 1


def test_a_mutation_with_no_clear_answer_is_not_sent_again(service, paradime, slack):
    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.fail_next("retryBoltRun", kind="http_500")
    paradime.deliver(run_id)
    service.drain(until=lambda: story(service, run_id).get("status") == "needs_human")
    assert len(paradime.calls_of("retryBoltRun")) == 1
    assert any("no clear answer" in m.text for m in slack.messages)


def test_backoff_uses_the_rq_scheduler(service, paradime, redis):
    path = Path(os.environ["TRIAGE_CONFIG"])
    doc = yaml.safe_load(path.read_text())
    doc["retry"]["backoff_seconds"] = [600]
    path.write_text(yaml.safe_dump(doc))
    context.current.cache_clear()

    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.deliver(run_id)
    SimpleWorker([service.queue], connection=redis, serializer=JSONSerializer).work(burst=True,
                                                                                   logging_level="WARNING")
    scheduled = ScheduledJobRegistry(queue=service.queue)
    assert scheduled.get_job_ids() == [f"retry-{run_id}"]
    when = scheduled.get_scheduled_time(f"retry-{run_id}")
    assert 590 < (when - datetime.now(timezone.utc)).total_seconds() <= 600
    assert paradime.calls_of("retryBoltRun") == []


def _triage_of(service, run_id: int) -> dict | None:
    for key in service.redis.keys("bt:triage:*"):
        fields = {k.decode(): json.loads(v) for k, v in service.redis.hgetall(key).items()}
        if fields.get("run_id") == run_id and fields.get("outcome") == "triaged":
            return fields
    return None


@pytest.mark.parametrize("mode", ["webhook", "log"])
def test_other_slack_modes(service_env, redis, paradime, slack, monkeypatch, mode, caplog, request):
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    if mode == "webhook":
        monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    svc = request.getfixturevalue("service")
    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.deliver(run_id)
    with caplog.at_level("INFO"):
        svc.drain(until=lambda: story(svc, run_id).get("status") == "recovered")
    if mode == "webhook":
        texts = [m.text for m in slack.messages]
        assert len(texts) == 2 and all(m.channel == "#webhook" for m in slack.messages)
        assert "Retrying" in texts[0] and "recovered" in texts[1] and str(run_id) in texts[1]
    else:
        assert slack.messages == []
        assert "slack (not configured)" in caplog.text and "recovered" in caplog.text


def test_owners_from_the_manifest_reach_the_evidence_and_slack(service, paradime, slack):
    manifest = {
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
        "nodes": {"model.shop.stg_orders": {
            "unique_id": "model.shop.stg_orders", "resource_type": "model", "tags": ["hourly"],
            "config": {"meta": {"owner": "ana@shop.io"}}, "original_file_path": "models\\staging\\stg_orders.sql",
            "raw_code": "select 1",
        }},
        "groups": {},
    }
    command = dbt_run(MISSING)
    command.artifacts["target/manifest.json"] = manifest
    run_id = failed_run(paradime, command)
    paradime.deliver(run_id)
    service.drain()
    record = _triage_of(service, run_id)
    failure = record["evidence"]["failures"][0]
    assert record["evidence"]["notes"] == []
    assert (failure["owner"], failure["tags"], failure["path"]) == ("ana@shop.io", ["hourly"],
                                                                    "models/staging/stg_orders.sql")
    [message] = slack.top_level()
    assert "owner ana@shop.io" in json.dumps(message.blocks)


def test_a_broken_manifest_only_loses_the_owners(service, paradime):
    command = dbt_run(MISSING)
    command.artifacts["target/manifest.json"] = '{"metadata": {"dbt_schema_version": "x/manifest/v12.json"}, "nod'
    run_id = failed_run(paradime, command)
    paradime.deliver(run_id)
    service.drain()
    record = _triage_of(service, run_id)
    assert record["action"] == "none" and record["evidence"]["failures"][0]["owner"] is None
    assert any(n.startswith("owners unknown: manifest.json unusable") for n in record["evidence"]["notes"])
