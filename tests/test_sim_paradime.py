"""The Paradime simulator, exercised over real HTTP like the triage service will use it."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask, request
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import make_server

from triage.sim.paradime import (
    INFRA_ONLY_MESSAGE,
    ParadimeSimulator,
    SimCommand,
    make_run_results,
)

AUTH = {"X-API-KEY": "sim-key", "X-API-SECRET": "sim-secret"}
SAMPLE = Path("/work/shared/samples/MickeyJ__fao-elt-pipelines__run_results.json")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DTTM = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$")
RUN_STATUS = "query BoltRunStatus($runId: Int!) { boltRunStatus(runId: $runId) { ok state commands { id } } }"
RETRY = "mutation R($scheduleRunId: Int!) { retryBoltRun(scheduleRunId: $scheduleRunId) { ok runId } }"
CANCEL = "mutation C($scheduleRunId: Int!) { cancelBoltRun(scheduleRunId: $scheduleRunId) { ok } }"


@pytest.fixture
def sim() -> Iterator[ParadimeSimulator]:
    with ParadimeSimulator(run_duration=0.05) as simulator:
        yield simulator


def gql(sim: ParadimeSimulator, query: str, variables: dict | None = None, headers: dict | None = None,
        timeout: float = 5) -> requests.Response:
    body = {"query": query, "variables": variables} if variables is not None else {"query": query}
    return requests.post(sim.graphql_url, json=body, headers=AUTH if headers is None else headers,
                         timeout=timeout)


def data(sim: ParadimeSimulator, query: str, variables: dict | None = None) -> dict:
    response = gql(sim, query, variables)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return next(iter(body["data"].values()))


def error(sim: ParadimeSimulator, query: str, variables: dict | None = None) -> str:
    """The GraphQL error message of a refused request (HTTP 200, field null)."""
    response = gql(sim, query, variables)
    assert response.status_code == 200
    body = response.json()
    assert list(body["data"].values()) == [None]
    return body["errors"][0]["message"]


def wait_for_state(sim: ParadimeSimulator, run_id: int, timeout: float = 3) -> str:
    deadline = time.monotonic() + timeout
    while (state := sim.get_run(run_id).state) in ("STARTING", "RUNNING") and time.monotonic() < deadline:
        time.sleep(0.02)
    return state


def failed_run(sim: ParadimeSimulator, schedule: str = "daily run") -> int:
    """A realistic failed run: infra fine, `dbt run` errored on one model (downstream skipped)."""
    results = make_run_results([
        ("model.shop.stg_orders", "success", "SELECT 10"),
        ("model.shop.orders", "error", "Database Error in model orders\n  could not connect to server"),
        ("model.shop.revenue", "skipped", None),
    ])
    return sim.add_run(schedule, [
        SimCommand("git clone ...", stdout="Cloning"),
        SimCommand("dbt deps"),
        SimCommand("dbt run", 1, stdout="Completed with 1 error", artifacts={
            "target/run_results.json": results,
            "target/manifest.json": {"nodes": {}},
            "logs/dbt.log": "log",
        }),
        SimCommand("dbt test"),
    ])


# ----------------------------------------------------------------------------- reads


def test_ids_start_where_paradime_numbers_do(sim: ParadimeSimulator) -> None:
    run_id = failed_run(sim)
    run = sim.get_run(run_id)
    assert run_id == 15500
    assert [c.id for c in run.commands] == [59000, 59001, 59002, 59003]
    assert [r.id for r in run.commands[2].resources] == [306000, 306001, 306002]
    assert failed_run(sim) == 15501


def test_run_status_with_variables_and_inline_literal(sim: ParadimeSimulator) -> None:
    run_id = failed_run(sim)
    by_variable = data(sim, RUN_STATUS, {"runId": run_id})
    inline = data(sim, f"query BoltRunStatus {{\n boltRunStatus(runId: {run_id}) {{ ok state }}\n}}")
    assert by_variable == inline
    assert by_variable["ok"] is True and by_variable["state"] == "ERROR"
    commands = by_variable["commands"]
    assert [c["command"] for c in commands] == ["git clone ...", "dbt deps", "dbt run", "dbt test"]
    assert set(commands[0]) == {"id", "command", "startDttm", "endDttm", "stdout", "stderr", "returnCode"}
    assert [c["returnCode"] for c in commands] == [0, 0, 1, 0]
    assert all(DTTM.match(c["startDttm"]) and DTTM.match(c["endDttm"]) for c in commands)
    assert [c["startDttm"] for c in commands] == sorted(c["startDttm"] for c in commands)
    assert commands[0]["endDttm"] <= commands[1]["startDttm"]


def test_bolt_command_lists_resources_and_run(sim: ParadimeSimulator) -> None:
    run_id = failed_run(sim)
    command_id = sim.get_run(run_id).commands[2].id
    inline = data(sim, f"query BoltCommand {{ boltCommand(commandId: {command_id}) {{ command }} }}")
    by_variable = data(sim, "query C($commandId: Int!) { boltCommand(commandId: $commandId) { ok } }",
                       {"commandId": command_id})
    assert inline == by_variable
    assert inline["command"] == "dbt run" and inline["returnCode"] == 1 and inline["ok"] is True
    assert inline["scheduleRunId"] == run_id
    assert inline["stdout"] == "Completed with 1 error"
    assert [r["path"] for r in inline["resources"]] == [
        "target/run_results.json", "target/manifest.json", "logs/dbt.log"]
    assert DTTM.match(inline["endDttm"])


def test_schedule_name(sim: ParadimeSimulator) -> None:
    failed_run(sim)
    latest = failed_run(sim)
    schedule = data(sim, 'query { boltScheduleName(scheduleName: "daily run") { ok } }')
    assert schedule["ok"] is True and schedule["latestRunId"] == latest
    assert schedule["commands"] == ["dbt run", "dbt test"]
    assert set(schedule) == {"ok", "latestRunId", "commands", "owner", "schedule", "uuid", "source"}
    assert error(sim, 'query { boltScheduleName(scheduleName: "nope") { ok } }').startswith("Bolt schedule")


def test_unknown_ids_and_bad_queries_answer_graphql_errors(sim: ParadimeSimulator) -> None:
    assert "not found" in error(sim, "{ boltRunStatus(runId: 1) { ok } }")
    assert "not found" in error(sim, "{ boltCommand(commandId: 1) { ok } }")
    assert "not found" in error(sim, "{ boltResourceUrl(resourceId: 1) { ok } }")
    assert "Int" in error(sim, RUN_STATUS, {"runId": "15500"})
    assert "required" in error(sim, RUN_STATUS, {})
    assert "Cannot query field" in error(sim, "{ listEverything(x: 1) { ok } }")
    body = gql(sim, "{ boltRunStatus(runId: ) }").json()
    assert body["errors"][0]["message"].startswith("Syntax Error")
    missing = requests.post(sim.graphql_url, json={}, headers=AUTH, timeout=5)
    assert missing.status_code == 400 and missing.json()["errors"]


def test_wrong_or_missing_credentials_are_refused(sim: ParadimeSimulator) -> None:
    run_id = failed_run(sim)
    for headers in ({"X-API-KEY": "sim-key", "X-API-SECRET": "wrong"}, {}):
        response = gql(sim, RUN_STATUS, {"runId": run_id}, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"errors": [{"message": "Unauthorized"}]}
        assert "sim-secret" not in response.text and "wrong" not in response.text
    assert [c.authorized for c in sim.calls_of("boltRunStatus")] == [False, False]


def test_calls_are_recorded_with_resolved_arguments(sim: ParadimeSimulator) -> None:
    run_id = failed_run(sim)
    data(sim, RUN_STATUS, {"runId": run_id})
    data(sim, f"{{ boltRunStatus(runId: {run_id}) {{ ok }} }}")
    calls = sim.calls_of("boltRunStatus")
    assert [c.variables for c in calls] == [{"runId": run_id}] * 2
    assert all(c.authorized and c.at <= time.time() for c in calls)
    listed = requests.get(f"{sim.base_url}/_sim/calls", timeout=5).json()
    assert [c["operation"] for c in listed] == ["boltRunStatus", "boltRunStatus"]
    sim.reset_calls()
    assert sim.calls == []


# ----------------------------------------------------------------------------- artifacts


def test_resource_url_is_presigned_and_expires(sim: ParadimeSimulator) -> None:
    run_id = failed_run(sim)
    resource_id = sim.get_run(run_id).commands[2].resources[0].id
    answer = data(sim, "query R($resourceId: Int!) { boltResourceUrl(resourceId: $resourceId) { ok url } }",
                  {"resourceId": resource_id})
    assert answer["ok"] is True and answer["url"].startswith(f"{sim.base_url}/artifacts/{resource_id}?")
    downloaded = requests.get(answer["url"], timeout=5)  # no API key: the URL carries its signature
    assert downloaded.status_code == 200
    assert downloaded.headers["Content-Type"].startswith("application/json")
    assert downloaded.json()["results"][1]["status"] == "error"

    tampered = answer["url"][:-4] + ("0000" if not answer["url"].endswith("0000") else "1111")
    assert requests.get(tampered, timeout=5).status_code == 403
    assert requests.get(sim.resource_url(resource_id, ttl=-5), timeout=5).status_code == 403
    assert requests.get(f"{sim.base_url}/artifacts/{resource_id}", timeout=5).status_code == 403
    odd = f"{sim.base_url}/artifacts/{resource_id}?expires=9999999999&sig=%C3%A9"
    assert requests.get(odd, timeout=5).status_code == 403
    assert requests.get(sim.resource_url(999_999), timeout=5).status_code == 404


def test_resource_not_ready(sim: ParadimeSimulator) -> None:
    run_id = failed_run(sim)
    resource_id = sim.get_run(run_id).commands[2].resources[0].id
    query = f"{{ boltResourceUrl(resourceId: {resource_id}) {{ ok url }} }}"
    sim.resource_not_ready(resource_id, times=1)
    assert data(sim, query) == {"ok": False, "url": None}
    assert data(sim, query)["ok"] is True
    sim.resource_not_ready(resource_id)
    assert [data(sim, query)["ok"] for _ in range(3)] == [False, False, False]


# ----------------------------------------------------------------------------- mutations


def test_retry_reruns_failed_commands_with_dbt_retry(sim: ParadimeSimulator) -> None:
    original = failed_run(sim)
    answer = data(sim, RETRY, {"scheduleRunId": original})
    assert answer["ok"] is True and answer["runId"] > original
    new = sim.get_run(answer["runId"])
    assert new.state == "RUNNING" and new.retry_of == original and new.triggered_by == "retryBoltRun"
    assert [c.command for c in new.commands] == ["git clone ...", "dbt deps", "dbt retry"]
    assert all(c.return_code is None and c.end is None for c in new.commands)

    assert wait_for_state(sim, new.id) == "SUCCESS"
    retried = sim.get_run(new.id).commands[2]
    assert retried.return_code == 0
    results = json.loads(retried.resources[0].content)
    assert [(r["unique_id"], r["status"]) for r in results["results"]] == [
        ("model.shop.stg_orders", "success"),
        ("model.shop.orders", "success"),
        ("model.shop.revenue", "success"),
    ]
    assert results["args"]["which"] == "retry"
    assert sim.get_run(original).state == "ERROR"  # the original is never modified


def test_retry_keeps_later_failed_commands_verbatim(sim: ParadimeSimulator) -> None:
    original = sim.add_run("hourly", [
        SimCommand("git clone ..."), SimCommand("dbt deps"),
        SimCommand("dbt seed"), SimCommand("dbt run", 2), SimCommand("dbt test", 1),
    ])
    run_id = data(sim, f"mutation {{ retryBoltRun(scheduleRunId: {original}) {{ ok runId }} }}")["runId"]
    assert [c.command for c in sim.get_run(run_id).commands] == [
        "git clone ...", "dbt deps", "dbt retry", "dbt test"]


@pytest.mark.parametrize(
    ("commands", "state", "message"),
    [
        ([SimCommand("dbt run")], "RUNNING", "Cannot retry a run that is still in progress"),
        ([], "ERROR", "Schedule run has no commands to retry"),
        ([SimCommand("git clone ..."), SimCommand("dbt run")], None,
         "All commands were successful, nothing to retry"),
        ([SimCommand("git clone ...", 128), SimCommand("dbt deps", 1), SimCommand("dbt run")], None,
         INFRA_ONLY_MESSAGE),
    ],
)
def test_retry_refusals(sim: ParadimeSimulator, commands: list[SimCommand], state: str | None,
                        message: str) -> None:
    run_id = sim.add_run("refused", commands, state=state)
    assert error(sim, f"mutation {{ retryBoltRun(scheduleRunId: {run_id}) {{ ok runId }} }}") == message
    assert len(sim.runs) == 1


def test_retry_all_reruns_every_command(sim: ParadimeSimulator) -> None:
    original = failed_run(sim)
    answer = data(sim, f"mutation {{ retryAllBoltRun(scheduleRunId: {original}) {{ ok runId }} }}")
    new = sim.get_run(answer["runId"])
    assert answer["ok"] is True and new.triggered_by == "retryAllBoltRun" and new.retry_of == original
    assert [c.command for c in new.commands] == ["git clone ...", "dbt deps", "dbt run", "dbt test"]


def test_retry_from_failure_resumes_latest_failed_run(sim: ParadimeSimulator) -> None:
    sim.add_run("nightly", [SimCommand("dbt seed", 1), SimCommand("dbt run")])
    latest_failed = sim.add_run("nightly", [SimCommand("git clone ..."), SimCommand("dbt seed"),
                                            SimCommand("dbt run", 1), SimCommand("dbt test")])
    sim.add_run("nightly", [SimCommand("dbt seed")], state="RUNNING")
    answer = data(sim, 'mutation { retryBoltRunFromFailure(scheduleName: "nightly") { runId } }')
    new = sim.get_run(answer["runId"])
    assert new.retry_of == latest_failed
    assert [c.command for c in new.commands] == ["git clone ...", "dbt deps", "dbt retry", "dbt test"]
    sim.add_schedule("fresh", ["dbt run"])
    from_failure = 'mutation {{ retryBoltRunFromFailure(scheduleName: "{}") {{ runId }} }}'
    assert "No failed run" in error(sim, from_failure.format("fresh"))
    assert "not found" in error(sim, from_failure.format("ghost"))


def test_trigger_runs_schedule_commands_with_overrides(sim: ParadimeSimulator) -> None:
    failed_run(sim)
    plain = data(sim, 'mutation { triggerBoltRun(scheduleName: "daily run") { runId } }')["runId"]
    custom = data(
        sim,
        "mutation T($scheduleName: String!, $commands: [String!], $branch: String!) "
        "{ triggerBoltRun(scheduleName: $scheduleName, commands: $commands, branch: $branch) { runId } }",
        {"scheduleName": "daily run", "commands": ["dbt compile", "dbt test"], "branch": "feature-1"},
    )["runId"]
    inline = data(sim, 'mutation { triggerBoltRun(scheduleName: "daily run", commands: ["dbt build"]) '
                       "{ runId } }")["runId"]
    assert [c.command for c in sim.get_run(plain).commands] == [
        "git clone ...", "dbt deps", "dbt run", "dbt test"]
    assert sim.get_run(plain).triggered_by == "triggerBoltRun" and sim.get_run(plain).retry_of is None
    assert [c.command for c in sim.get_run(custom).commands][2:] == ["dbt compile", "dbt test"]
    assert sim.get_run(custom).branch == "feature-1"
    assert [c.command for c in sim.get_run(inline).commands][2:] == ["dbt build"]
    assert wait_for_state(sim, plain) == "SUCCESS"
    assert "not found" in error(sim, 'mutation { triggerBoltRun(scheduleName: "ghost") { runId } }')


def test_cancel(sim: ParadimeSimulator) -> None:
    running = sim.add_run("daily run", [SimCommand("dbt run", 1)], state="RUNNING")
    assert data(sim, f"mutation {{ cancelBoltRun(scheduleRunId: {running}) {{ ok }} }}") == {"ok": True}
    assert sim.get_run(running).state == "CANCELED"
    assert data(sim, CANCEL, {"scheduleRunId": running}) == {"ok": False}


def test_running_run_finishes_with_planned_outcome_on_set_state(sim: ParadimeSimulator) -> None:
    run_id = sim.add_run("daily run", [SimCommand("dbt deps"), SimCommand("dbt run", 1, stderr="boom")],
                         state="RUNNING")
    status = data(sim, RUN_STATUS, {"runId": run_id})
    assert status["state"] == "RUNNING"
    assert [(c["endDttm"], c["returnCode"]) for c in status["commands"]] == [(None, None), (None, None)]
    sim.set_state(run_id, "ERROR")
    status = data(sim, RUN_STATUS, {"runId": run_id})
    assert [c["returnCode"] for c in status["commands"]] == [0, 1]
    assert status["commands"][1]["stderr"] == "boom"


def test_queued_outcomes_are_used_in_order(sim: ParadimeSimulator) -> None:
    original = failed_run(sim)
    sim.queue_outcome("daily run", [SimCommand("git clone ..."), SimCommand("dbt deps"),
                                    SimCommand("dbt retry", 1, stderr="could not connect to server")])
    first = data(sim, f"mutation {{ retryBoltRun(scheduleRunId: {original}) {{ runId }} }}")["runId"]
    assert wait_for_state(sim, first) == "ERROR"
    assert sim.get_run(first).commands[2].stderr == "could not connect to server"
    second = data(sim, f"mutation {{ retryBoltRun(scheduleRunId: {first}) {{ runId }} }}")["runId"]
    assert wait_for_state(sim, second) == "SUCCESS"


# ----------------------------------------------------------------------------- faults


@pytest.mark.parametrize(("kind", "status"), [("http_500", 500), ("http_502", 502), ("http_429", 429)])
def test_http_faults(sim: ParadimeSimulator, kind: str, status: int) -> None:
    run_id = failed_run(sim)
    sim.fail_next("boltRunStatus", times=2, kind=kind)
    data(sim, f"{{ boltCommand(commandId: {sim.get_run(run_id).commands[0].id}) {{ ok }} }}")  # not matched
    responses = [gql(sim, RUN_STATUS, {"runId": run_id}) for _ in range(3)]
    assert [r.status_code for r in responses] == [status, status, 200]
    if kind == "http_429":
        assert responses[0].headers["Retry-After"] == "1"


def test_graphql_error_and_bad_json_faults(sim: ParadimeSimulator) -> None:
    run_id = failed_run(sim)
    sim.fail_next(kind="graphql_error")
    sim.fail_next(kind="bad_json")
    first = gql(sim, RUN_STATUS, {"runId": run_id})
    assert first.status_code == 200 and first.json()["data"] is None and first.json()["errors"]
    second = gql(sim, "{ boltScheduleName(scheduleName: \"daily run\") { ok } }")
    assert second.status_code == 200
    with pytest.raises(ValueError):
        second.json()
    assert data(sim, RUN_STATUS, {"runId": run_id})["ok"] is True


def test_timeout_fault_outlasts_client_timeout(sim: ParadimeSimulator) -> None:
    run_id = failed_run(sim)
    sim.fail_next("boltRunStatus", kind="timeout", delay=0.6)
    with pytest.raises(requests.Timeout):
        gql(sim, RUN_STATUS, {"runId": run_id}, timeout=0.2)
    assert data(sim, RUN_STATUS, {"runId": run_id})["ok"] is True


def test_artifact_download_fault(sim: ParadimeSimulator) -> None:
    run_id = failed_run(sim)
    url = sim.resource_url(sim.get_run(run_id).commands[2].resources[0].id)
    sim.fail_next("artifact", kind="http_502")
    assert requests.get(url, timeout=5).status_code == 502
    assert requests.get(url, timeout=5).status_code == 200


def test_unknown_fault_kind_is_rejected(sim: ParadimeSimulator) -> None:
    with pytest.raises(ValueError):
        sim.fail_next(kind="meteor")


# ----------------------------------------------------------------------------- webhooks


class Receiver:
    """A tiny webhook endpoint that hands each delivery (headers, raw body) to the test."""

    def __init__(self, status: int = 200):
        self.received: queue.Queue[tuple[dict, str]] = queue.Queue()
        app = Flask("receiver")

        @app.post("/hook")
        def hook() -> tuple[str, int]:
            self.received.put((dict(request.headers), request.get_data(as_text=True)))
            return "", status

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        quick_stop = {"poll_interval": 0.05}
        threading.Thread(target=self.server.serve_forever, kwargs=quick_stop, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def test_new_run_ends_and_delivers_signed_webhook(receiver: Receiver) -> None:
    with ParadimeSimulator(webhook_target=receiver.url, webhook_secret=SECRET, run_duration=0.05) as sim:
        original = failed_run(sim)
        new = data(sim, f"mutation {{ retryBoltRun(scheduleRunId: {original}) {{ runId }} }}")["runId"]
        headers, body = receiver.received.get(timeout=3)
        payload = Webhook(SECRET).verify(body, headers)
        assert headers["Webhook-Id"].startswith("msg_")
        assert payload["run_id"] == new and payload["state"] == "SUCCESS"
        assert payload["event_type"] == "bolt.run.completed" and payload["schedule_name"] == "daily run"
        assert payload["api_url"] == sim.graphql_url
        assert list(json.loads(body)) == sorted(payload)

        # The queries the webhook carries work as they are (inline literals).
        retry_command = payload["commands"][2]
        assert retry_command["command"] == "dbt retry" and retry_command["status"] == "succeeded"
        detail = data(sim, retry_command["api_query"])
        assert detail["scheduleRunId"] == new
        resource = retry_command["json_resources"][0]
        assert resource["path"] == "target/run_results.json"
        url = data(sim, resource["resource_query"])["url"]
        assert requests.get(url, timeout=5).json()["args"]["which"] == "retry"


def test_webhook_payload_shape(sim: ParadimeSimulator) -> None:
    run_id = failed_run(sim)
    payload = sim.webhook_payload(run_id)
    assert list(payload) == sorted(payload)
    assert {"api_url", "commands", "schedule_name", "run_id", "state", "branch", "event_type"} == set(payload)
    command = payload["commands"][2]
    assert list(command) == ["api_query", "command", "end_dttm", "id", "json_resources", "return_code",
                             "start_dttm", "status"]
    assert command["status"] == "failed" and command["return_code"] == 1
    assert f"boltCommand(commandId: {command['id']})" in command["api_query"]
    assert [r["path"] for r in command["json_resources"]] == [  # logs/dbt.log is not a JSON resource
        "target/run_results.json", "target/manifest.json"]
    assert payload["commands"][0]["status"] == "succeeded"

    running = sim.add_run("daily run", [SimCommand("dbt run")], state="RUNNING")
    started = sim.webhook_payload(running, event="bolt.run.started")
    assert started["event_type"] == "bolt.run.started"
    assert started["commands"][0]["status"] == "running"
    assert started["commands"][0]["end_dttm"] is None and started["commands"][0]["return_code"] is None

    sim.include_run_fields = False
    assert set(sim.webhook_payload(run_id)) == {"api_url", "commands"}


def test_deliver_options(receiver: Receiver) -> None:
    with ParadimeSimulator(webhook_secret=SECRET) as sim:
        run_id = failed_run(sim)
        for _ in range(2):  # a replayed delivery keeps its id
            assert sim.deliver(run_id, target=receiver.url, headers={"webhook-id": "msg_fixed"}).ok
        first, second = receiver.received.get(timeout=2), receiver.received.get(timeout=2)
        assert first[0]["Webhook-Id"] == second[0]["Webhook-Id"] == "msg_fixed"
        Webhook(SECRET).verify(second[1], second[0])

        sim.deliver(run_id, target=receiver.url, signed=False)
        headers, _ = receiver.received.get(timeout=2)
        assert "Webhook-Signature" not in headers

        sim.deliver(run_id, target=receiver.url, headers={"webhook-signature": "v1,AAAA"})
        headers, body = receiver.received.get(timeout=2)
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(body, headers)

        with pytest.raises(ValueError):
            sim.deliver(run_id)  # no target anywhere


def test_unreachable_webhook_target_does_not_break_run() -> None:
    with ParadimeSimulator(webhook_target="http://127.0.0.1:9/hook", run_duration=0.05) as sim:
        original = failed_run(sim)
        new = data(sim, f"mutation {{ retryBoltRun(scheduleRunId: {original}) {{ runId }} }}")["runId"]
        assert wait_for_state(sim, new) == "SUCCESS"


# ----------------------------------------------------------------------------- control API


def test_control_api(sim: ParadimeSimulator, receiver: Receiver) -> None:
    base = f"{sim.base_url}/_sim"
    results = make_run_results([("model.x.y", "error", "boom")])
    run_id = requests.post(f"{base}/runs", timeout=5, json={
        "schedule_name": "ctl", "branch": "dev",
        "commands": [{"command": "dbt deps"},
                     {"command": "dbt run", "return_code": 1, "stderr": "boom",
                      "artifacts": {"target/run_results.json": results}}],
    }).json()["run_id"]
    run = requests.get(f"{base}/runs/{run_id}", timeout=5).json()
    assert run["state"] == "ERROR" and run["branch"] == "dev"
    assert run["commands"][1]["resources"][0]["path"] == "target/run_results.json"
    assert requests.get(f"{base}/runs/1", timeout=5).status_code == 404

    requests.post(f"{base}/outcomes", timeout=5, json={
        "schedule_name": "ctl", "commands": [{"command": "dbt retry", "return_code": 1}]}).raise_for_status()
    new = data(sim, f"mutation {{ retryBoltRun(scheduleRunId: {run_id}) {{ runId }} }}")["runId"]
    assert wait_for_state(sim, new) == "ERROR"

    requests.post(f"{base}/fail", timeout=5, json={"operation": "boltRunStatus", "kind": "http_502"})
    assert gql(sim, RUN_STATUS, {"runId": run_id}).status_code == 502
    assert [c["operation"] for c in requests.get(f"{base}/calls", timeout=5).json()][-1] == "boltRunStatus"

    sim.webhook_target = receiver.url
    assert requests.post(f"{base}/deliver", json={"run_id": run_id}, timeout=5).json() == {"status_code": 200}
    assert json.loads(receiver.received.get(timeout=2)[1])["run_id"] == run_id


# ----------------------------------------------------------------------------- helpers and CLI


def test_make_run_results_matches_dbt_shape() -> None:
    sample = json.loads(SAMPLE.read_text())
    built = make_run_results([
        ("model.p.a", "error", "Database Error"),
        {"unique_id": "test.p.t", "status": "fail", "failures": 8},
        ("model.p.b", "skipped", None),
    ], adapter_type="snowflake")
    assert set(built) == set(sample) and set(built["metadata"]) == set(sample["metadata"])
    assert set(built["results"][0]) == set(sample["results"][0])
    assert built["metadata"]["dbt_schema_version"] == "https://schemas.getdbt.com/dbt/run-results/v6.json"
    assert built["metadata"]["generated_at"].endswith("Z")
    assert built["args"]["which"] == "run"
    error_node, fail_node, skipped = built["results"]
    assert error_node["message"] == "Database Error" and error_node["failures"] is None
    assert fail_node["failures"] == 8 and fail_node["message"] == "Got 8 results, configured to fail if != 0"
    assert fail_node["adapter_response"]["code"] == "SUCCESS" and fail_node["relation_name"] is None
    assert skipped["timing"] == [] and skipped["compiled"] is False
    assert ParadimeSimulator.make_run_results([])["results"] == []


def test_standalone_cli_serves_until_stopped() -> None:
    with ParadimeSimulator() as probe:  # borrow a free port, then release it
        port = probe.port
    process = subprocess.Popen([sys.executable, "-m", "triage.sim.paradime", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        assert requests.get(f"http://127.0.0.1:{port}/_sim/health", timeout=5).json() == {"ok": True}
    finally:
        process.terminate()
        process.wait(timeout=5)
