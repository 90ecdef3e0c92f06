"""Paradime and Slack failing for a while, through real processes (``triage web`` and ``triage worker``
subprocesses, the simulators over HTTP): 500s, 429 with Retry-After, malformed JSON, timeouts, 502 HTML
pages and a GraphQL error on the query side, 429s then 500s from Slack. A transient failure is still retried exactly
once and told in one Slack parent message with its replies in order; a Paradime that never recovers ends
in one "Could not triage" note and a dead-lettered triage, and the calls stop (no crash loop)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import simulated_env
from tests.faults.harness import Processes, RedisServer, triage_records, wait_for
from tests.test_pipeline import LOCK, MISSING, dbt_run, failed_run

pytestmark = pytest.mark.slow


@pytest.fixture
def policy(policy: dict) -> dict:
    policy["jobs"] = {"attempts": 3, "retry_intervals": [1]}
    return policy


@pytest.fixture
def crew(tmp_path: Path, paradime, slack, policy) -> Iterator[tuple[RedisServer, Processes]]:
    server = RedisServer(tmp_path, aof=False).start()
    (tmp_path / "triage.yaml").write_text(yaml.safe_dump(policy))
    env = {**simulated_env(server.url, paradime, slack), "TRIAGE_CONFIG": str(tmp_path / "triage.yaml")}
    procs = Processes(env, tmp_path)
    try:
        paradime.webhook_target = f"{procs.web()}/webhooks/paradime"
        procs.worker("w1")
        procs.worker("w2")
        yield server, procs
    finally:
        procs.stop()
        server.stop()


def _story(server: RedisServer, run: int) -> dict:
    return json.loads(server.client().get(f"bt:story:{run}") or "{}")


def test_a_transient_failure_survives_failing_upstreams(crew, paradime, slack):
    server, procs = crew
    paradime.fail_next("boltRunStatus", times=2, kind="http_500")
    paradime.fail_next("boltCommand", times=1, kind="http_429")  # with Retry-After: 1
    paradime.fail_next("boltCommand", times=1, kind="bad_json")  # a 200 whose body is cut off
    paradime.fail_next("boltResourceUrl", times=1, kind="timeout", delay=3)  # the client waits 2 s
    paradime.fail_next("boltResourceUrl", times=1, kind="http_502")  # a gateway's HTML page
    paradime.fail_next("artifact", times=1, kind="http_502")  # an HTML gateway page
    paradime.fail_next("boltScheduleName", times=1, kind="graphql_error")
    slack.fail_next(2, status=429, retry_after=1, method="chat.postMessage")
    slack.fail_next(2, status=500, method="chat.postMessage")
    slack.fail_next(1, status=503, method="chat.update")
    run = failed_run(paradime, dbt_run(LOCK))
    assert paradime.deliver(run).status_code == 202

    wait_for("the retry recovers", lambda: _story(server, run).get("status") == "recovered", 90)
    assert [c.variables["scheduleRunId"] for c in paradime.calls_of("retryBoltRun")] == [run]
    wait_for("the recovery reply is posted",
             lambda: any("recovered" in m.text for m in slack.messages if m.thread_ts), 30)
    [parent] = slack.top_level()
    assert "Recovered on retry 1" in parent.text
    replies = [m.text for m in slack.replies(parent.ts)]
    started = next(i for i, t in enumerate(replies) if "Retry 1 started" in t)
    recovered = next(i for i, t in enumerate(replies) if "recovered" in t)
    assert started < recovered, replies
    assert len(replies) == len(set(replies)), replies  # none posted twice
    assert sum(1 for r in slack.requests_log if r.method == "chat.postMessage" and r.status == 429) == 2
    assert "Traceback" not in procs.log("w1") + procs.log("w2")


def test_a_paradime_that_never_recovers_ends_in_one_note_and_a_dead_letter(crew, paradime, slack):
    server, procs = crew
    paradime.fail_next("boltRunStatus", times=10_000, kind="http_500")
    run = failed_run(paradime, dbt_run(MISSING))
    assert paradime.deliver(run).status_code == 202

    wait_for("Slack is told", lambda: slack.top_level(), 90)
    [note] = slack.top_level()
    assert f"Could not triage run {run}" in note.text and "HTTP 500" in json.dumps(note.blocks), note.text
    wait_for("the triage is dead-lettered",
             lambda: [r["status"] for r in triage_records(server.client())] == ["dead_letter"], 20)
    calls = len(paradime.calls_of("boltRunStatus"))
    # The triage and its 3 re-checks (policy: recheck_seconds has 3 entries), 3 requests each (max_attempts).
    assert calls == 4 * 3, procs.log("w1")[-6000:] + procs.log("w2")[-6000:]
    time.sleep(5)
    assert len(paradime.calls_of("boltRunStatus")) == calls, "still calling: a crash loop"
    assert len(slack.top_level()) == 1
    # The give-up is one line with its reason (workers.worker.GaveUpInOneLine), not a traceback.
    written = procs.log("w1") + procs.log("w2")
    assert "Traceback" not in written, written[-3000:]
    assert re.search(r"job \S+: gave up \(workers\.jobs\.triage_webhook\): triage tr_\w+: Paradime "
                     r"boltRunStatus: HTTP 500 after 3 attempts\n", written), written[-3000:]
