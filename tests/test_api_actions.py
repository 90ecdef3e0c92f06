"""The operations API's mutations over real HTTP, real RQ workers and the simulators: replay (the
guards hold), pause in effect, cancel of a scheduled retry, reschedule, dead letter, idempotency key."""

# ruff: noqa: F811  (the fixtures are imported from tests.api_fixtures)
from __future__ import annotations

from rq.registry import ScheduledJobRegistry

from tests.api_fixtures import api_env, edit_policy, ops, status_of, story  # noqa: F401
from tests.test_pipeline import LOCK, MISSING, dbt_run, failed_run


def test_replay_of_a_retried_run_does_not_retry_it_again(ops, paradime, slack):
    svc, admin, _ = ops
    run_id = failed_run(paradime, dbt_run(LOCK))
    original = paradime.deliver(run_id).json()["triage_id"]
    svc.drain(until=lambda: story(svc, run_id).get("status") == "recovered")
    posts = len(slack.messages)

    replayed = admin.ok("POST", f"/triages/{original}/replay", status=202)
    assert replayed["triggered_by"] == "replay" and replayed["parent_triage_id"] == original
    assert replayed["status"] == "queued"
    svc.drain()
    assert len(paradime.calls_of("retryBoltRun")) == 1, "a run already retried is not retried again"
    assert len(slack.messages) == posts, "no Slack message is posted twice"
    after = admin.ok("GET", f"/triages/{replayed['id']}")
    assert after["status"] == "done" and after["decision"]["action"] == "retry"
    types = [e["type"] for e in admin.ok("GET", f"/triages/{replayed['id']}/events")["events"]]
    assert "retry_not_scheduled" in types and "retry_sent" not in types
    assert [t["id"] for t in admin.ok("GET", f"/triages/{original}/children")["triages"]] == [replayed["id"]]
    assert admin.ok("GET", "/triages?triggered_by=replay")["triages"][0]["id"] == replayed["id"]


def test_replay_counts_the_chain_budget(ops, paradime):
    svc, admin, _ = ops
    edit_policy(retry={"max_attempts": 1})
    again = [dbt_run(LOCK)]
    paradime.queue_outcome("daily_orders", again)
    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.deliver(run_id)
    svc.drain(until=lambda: story(svc, run_id).get("status") == "gave_up")
    retry_run = story(svc, run_id)["runs"][1]
    [last] = admin.ok("GET", f"/triages?run_id={retry_run}")["triages"]
    assert last["decision"]["reason_code"] == "budget_spent"
    replay = admin.ok("POST", f"/triages/{last['id']}/replay", status=202)
    svc.drain()
    assert admin.ok("GET", f"/triages/{replay['id']}")["decision"]["reason_code"] == "budget_spent"
    assert len(paradime.calls_of("retryBoltRun")) == 1


def test_replay_refuses_unfinished_and_unknown_triages(ops, paradime):
    svc, admin, _ = ops
    triage_id = paradime.deliver(failed_run(paradime, dbt_run(MISSING))).json()["triage_id"]
    busy = admin.post(f"/triages/{triage_id}/replay")
    assert busy.status_code == 409 and busy.json()["error"] == "conflict"
    assert admin.post("/triages/tr_0123456789abcdef/replay").status_code == 404
    svc.drain()
    bulk = admin.ok("POST", "/triages/bulk-replay", {"ids": [triage_id, "tr_0123456789abcdef"]}, status=202)
    assert (bulk["succeeded"], bulk["failed"]) == (1, 1)
    assert bulk["results"][0]["new_triage_id"].startswith("tr_") and bulk["results"][1]["error"] == "not_found"
    by_filter = admin.ok("POST", "/triages/bulk-replay", {"filter": {"schedule": "nothing_*"}}, status=202)
    assert by_filter["total"] == 0
    assert admin.post("/triages/bulk-replay", {"filter": {"verdict": "maybe"}}).json()["message"].startswith(
        "filter.verdict")
    assert admin.post("/triages/bulk-replay", {"ids": ["x"] * 501}).status_code == 400


def test_a_second_replay_waits_for_the_first(ops, paradime, slack):
    svc, admin, _ = ops
    triage_id = paradime.deliver(failed_run(paradime, dbt_run(MISSING))).json()["triage_id"]
    svc.drain()
    first = admin.ok("POST", f"/triages/{triage_id}/replay", status=202)
    second = admin.post(f"/triages/{triage_id}/replay")
    assert second.status_code == 409 and first["id"] in second.json()["message"], "one triage of a run at a time"
    svc.drain()
    assert admin.post(f"/triages/{triage_id}/replay").status_code == 202
    svc.drain()
    assert len(slack.top_level()) == 1
    assert len(admin.ok("GET", f"/triages/{triage_id}/children")["triages"]) == 2


def test_pause_is_in_effect_then_resume_and_replay_retries(ops, paradime, slack):
    svc, admin, read = ops
    edit_policy(slack={"fallback_mentions": ["U0ONCALL1"]})
    paused = admin.ok("POST", "/retries/pause", {"schedule": "daily_*", "for_seconds": 3600,
                                                  "reason": "warehouse incident"})
    assert paused["pause"]["schedule"] == "daily_*"
    assert [p["reason"] for p in read.ok("GET", "/retries/pauses")["pauses"]] == ["warehouse incident"]

    run_id = failed_run(paradime, dbt_run(LOCK))
    triage_id = paradime.deliver(run_id).json()["triage_id"]
    svc.drain()
    assert paradime.calls_of("retryBoltRun") == []
    [message] = slack.top_level()
    assert "Not retrying: automatic retries paused (warehouse incident) until" in message.text
    assert "<@U0ONCALL1>" in message.text, "the owners (here the fallback) are mentioned"
    view = admin.ok("GET", f"/triages/{triage_id}")
    assert view["decision"]["reason_code"] == "paused" and view["verdict"] == "not_retried"

    other = failed_run(paradime, dbt_run(LOCK), schedule="hourly")  # another schedule is not paused
    paradime.deliver(other)
    svc.drain(until=lambda: story(svc, other).get("status") == "recovered")
    assert len(paradime.calls_of("retryBoltRun")) == 1

    assert admin.ok("POST", "/retries/resume", {"schedule": "daily_*"})["resumed"] == ["daily_*"]
    assert read.ok("GET", "/retries/pauses")["pauses"] == []
    admin.ok("POST", f"/triages/{triage_id}/replay", status=202)
    svc.drain()
    assert [c.variables["scheduleRunId"] for c in paradime.calls_of("retryBoltRun")][-1] == run_id


def test_a_retry_scheduled_before_a_pause_is_held(ops, paradime, slack):
    svc, admin, _ = ops
    edit_policy(retry={"backoff_seconds": [600]})
    run_id = failed_run(paradime, dbt_run(LOCK))
    triage_id = paradime.deliver(run_id).json()["triage_id"]
    svc.drain(until=lambda: status_of(svc, triage_id) == "retry_scheduled", idle=False)
    admin.ok("POST", "/retries/pause", {"for_seconds": 600, "reason": "maintenance"})
    admin.ok("POST", f"/triages/{triage_id}/reschedule", {"in_seconds": 0})
    svc.drain()
    assert paradime.calls_of("retryBoltRun") == []
    assert any("Not retrying: automatic retries paused (maintenance)" in m.text for m in slack.messages)
    assert admin.ok("GET", f"/triages/{triage_id}")["verdict"] == "needs_human"


def test_cancel_of_a_scheduled_retry(ops, paradime, slack):
    svc, admin, read = ops
    edit_policy(retry={"backoff_seconds": [600]})
    run_id = failed_run(paradime, dbt_run(LOCK))
    triage_id = paradime.deliver(run_id).json()["triage_id"]
    svc.drain(until=lambda: status_of(svc, triage_id) == "retry_scheduled", idle=False)
    registry = ScheduledJobRegistry(queue=svc.queue)
    assert registry.get_job_ids() == [f"retry-{run_id}"]
    assert read.ok("GET", f"/triages/{triage_id}")["status"] == "retry_scheduled"
    assert read.delete(f"/triages/{triage_id}").status_code == 403

    canceled = admin.ok("DELETE", f"/triages/{triage_id}", {"reason": "known outage"})
    assert canceled["status"] == "canceled"
    assert registry.get_job_ids() == [], "the scheduled work is removed"
    svc.drain()
    assert paradime.calls_of("retryBoltRun") == []
    assert any("canceled by an operator" in m.text for m in slack.messages)
    [parent] = slack.top_level()
    assert "canceled by an operator" in parent.text, "the story's first message says so too"
    assert story(svc, run_id)["status"] == "gave_up"

    again = admin.delete(f"/triages/{triage_id}")
    assert again.status_code == 409 and "already canceled" in again.json()["message"]
    from workers import jobs  # even a retry job that ran anyway would not send it
    assert jobs.perform_retry(triage_id, run_id, run_id, 1, "retry", "daily_orders")["status"] == "canceled"
    assert paradime.calls_of("retryBoltRun") == []
    assert "canceled" in [e["type"] for e in read.ok("GET", f"/triages/{triage_id}/events")["events"]]


def test_cancel_of_a_waiting_triage_and_bulk_cancel(ops, paradime):
    svc, admin, _ = ops
    edit_policy(paradime={"recheck_seconds": [600]})
    runs = [paradime.add_run("daily_orders", [dbt_run(MISSING)], state="RUNNING") for _ in range(2)]
    ids = []
    for run in runs:
        ids.append(paradime.deliver(run).json()["triage_id"])
    done = failed_run(paradime, dbt_run(MISSING))
    finished = paradime.deliver(done).json()["triage_id"]
    svc.drain(until=lambda: [status_of(svc, t) for t in [*ids, finished]] == ["waiting", "waiting", "done"],
              idle=False)
    assert {admin.ok("GET", f"/triages/{t}")["status"] for t in ids} == {"waiting"}
    result = admin.ok("POST", "/triages/bulk-cancel", {"ids": [*ids, finished], "reason": "test"})
    assert (result["succeeded"], result["failed"]) == (2, 1)
    assert result["results"][2]["error"] == "conflict"
    assert ScheduledJobRegistry(queue=svc.queue).get_job_ids() == []
    assert admin.delete(f"/triages/{finished}").status_code == 409


def test_reschedule_moves_a_pending_retry(ops, paradime):
    svc, admin, _ = ops
    edit_policy(retry={"backoff_seconds": [600]})
    run_id = failed_run(paradime, dbt_run(LOCK))
    triage_id = paradime.deliver(run_id).json()["triage_id"]
    svc.drain(until=lambda: status_of(svc, triage_id) == "retry_scheduled", idle=False)
    assert admin.post(f"/triages/{triage_id}/reschedule", {"at": "2099-01-01T00:00:00Z"}).status_code == 400
    assert admin.post(f"/triages/{triage_id}/reschedule", {}).status_code == 400
    moved = admin.ok("POST", f"/triages/{triage_id}/reschedule", {"in_seconds": 0})
    assert moved["job_id"] == f"retry-{run_id}"
    svc.drain(until=lambda: story(svc, run_id).get("status") == "recovered")
    assert len(paradime.calls_of("retryBoltRun")) == 1
    gone = admin.post(f"/triages/{triage_id}/reschedule", {"in_seconds": 5})
    assert gone.status_code == 409


def test_dead_letter_list_and_replay(ops, paradime, slack):
    svc, admin, read = ops
    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.fail_next("boltRunStatus", times=100, kind="http_502")
    triage_id = paradime.deliver(run_id).json()["triage_id"]
    svc.drain(timeout=30)
    dead = read.ok("GET", "/triages/dead-letter")["triages"]
    assert [t["id"] for t in dead] == [triage_id] and dead[0]["verdict"] == "could_not_triage"
    assert "HTTP 502" in dead[0]["error"]

    paradime._faults.clear()  # Paradime is back
    first = admin.ok("POST", "/triages/dead-letter/replay", {}, status=202)
    assert first["total"] == 1 and first["results"][0]["new_triage_id"]
    second = admin.ok("POST", "/triages/dead-letter/replay", {}, status=202)
    assert second["total"] == 0, "a dead-lettered triage already replayed is not replayed again"


def test_idempotency_key_reset_lets_the_same_webhook_be_triaged_again(ops, paradime, slack):
    svc, admin, _ = ops
    run_id = failed_run(paradime, dbt_run(MISSING))
    first = paradime.deliver(run_id, headers={"webhook-id": "msg_one"}).json()["triage_id"]
    svc.drain()
    assert paradime.deliver(run_id, headers={"webhook-id": "msg_one"}).json()["status"] == "duplicate"
    forgotten = admin.ok("DELETE", f"/triages/{first}/idempotency-key")["forgotten"]
    assert forgotten == ["delivery", "event", "run"]
    again = paradime.deliver(run_id, headers={"webhook-id": "msg_one"})
    assert again.status_code == 202 and again.json()["triage_id"] != first
    svc.drain()
    second = admin.ok("GET", f"/triages/{again.json()['triage_id']}")
    assert second["status"] == "done" and second["decision"]["reason_code"] == "deterministic"
    assert len(slack.top_level()) == 1, "the story's message is not posted twice"


def test_reschedule_moves_a_pending_recheck(ops, paradime):
    svc, admin, _ = ops
    edit_policy(paradime={"recheck_seconds": [600]})
    run_id = paradime.add_run("daily_orders", [dbt_run(MISSING)], state="RUNNING")
    triage_id = paradime.deliver(run_id).json()["triage_id"]
    svc.drain(until=lambda: status_of(svc, triage_id) == "waiting", idle=False)
    waiting = admin.ok("GET", f"/triages/{triage_id}")
    assert waiting["next_check_at"] is not None
    paradime.set_state(run_id, "ERROR")
    moved = admin.ok("POST", f"/triages/{triage_id}/reschedule", {"at": "2020-01-01T00:00:00Z"})
    assert moved["job_id"] == f"triage-{triage_id}-check1"
    svc.drain(until=lambda: status_of(svc, triage_id) == "done")
    assert admin.ok("GET", f"/triages/{triage_id}")["decision"]["action"] == "none"
    assert "rescheduled" in [e["type"] for e in admin.ok("GET", f"/triages/{triage_id}/events")["events"]]


def test_cancel_of_a_queued_triage_stops_its_job(ops, paradime, slack):
    svc, admin, _ = ops
    triage_id = paradime.deliver(failed_run(paradime, dbt_run(LOCK))).json()["triage_id"]
    assert admin.ok("DELETE", f"/triages/{triage_id}")["status"] == "canceled"
    svc.drain()
    assert paradime.calls_of("boltRunStatus") == [] and slack.messages == []
    assert status_of(svc, triage_id) == "canceled"


def test_a_paused_retry_mentions_the_failed_nodes_owners(ops, paradime, slack):
    svc, admin, _ = ops
    edit_policy(slack={"owners": {"ana@shop.io": "U0ANA0001"}})
    admin.ok("POST", "/retries/pause", {"for_seconds": 600, "reason": "Snowflake incident"})
    command = dbt_run(LOCK)
    command.artifacts["target/manifest.json"] = {
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
        "nodes": {"model.shop.stg_orders": {"unique_id": "model.shop.stg_orders", "resource_type": "model",
                                            "config": {"meta": {"owner": "ana@shop.io"}}}},
        "groups": {}}
    paradime.deliver(failed_run(paradime, command))
    svc.drain()
    [message] = slack.top_level()
    assert "Not retrying: automatic retries paused (Snowflake incident) until" in message.text
    assert "<@U0ANA0001>" in message.text
    assert paradime.calls_of("retryBoltRun") == []
