"""No configured secret leaks during a faulty run. ``triage web`` and ``triage worker`` at DEBUG (libraries
log URLs and headers then) through Paradime 5xx, 429 and GraphQL errors, Slack 429s, a work horse
SIGKILLed mid-download, refused and malformed webhooks, then a worker in incoming-webhook mode: every log
line of every process, every value in Redis, every Slack text and block, and every HTTP answer of the web
is searched for the webhook secret, the Paradime key and secret, the workspace token in the Paradime
endpoint's path, the Slack token and the Slack webhook URL (and its secret part). None is found.
(tests/test_deploy.py scans a clean run; this is the faulty one.)
"""

from __future__ import annotations

import json
import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import WEBHOOK_SECRET, signed_headers, simulated_env
from tests.faults.harness import Processes, RedisServer, children, wait_for
from tests.test_pipeline import LOCK, MISSING, dbt_run, failed_run
from triage.sim.paradime import ParadimeSimulator
from triage.sim.slack import SlackSimulator

pytestmark = pytest.mark.slow


@pytest.fixture
def paradime() -> Iterator[ParadimeSimulator]:
    sim = ParadimeSimulator(api_key="pk_" + secrets.token_hex(12), api_secret="ps_" + secrets.token_hex(12),
                            webhook_secret=WEBHOOK_SECRET, run_duration=0.2).start()
    yield sim
    sim.stop()


@pytest.fixture
def slack() -> Iterator[SlackSimulator]:
    sim = SlackSimulator(token="xoxb-" + secrets.token_hex(12),
                         webhook_path=f"/services/T0SEC/B0SEC/{secrets.token_hex(12)}").start()
    yield sim
    sim.stop()


@pytest.fixture
def policy(policy: dict) -> dict:
    policy["jobs"] = {"attempts": 3, "retry_intervals": [1]}
    return policy


def _redis_dump(redis) -> str:
    """Every key and value in the database, whatever its type."""
    out = []
    for key in redis.scan_iter("*"):
        kind = redis.type(key).decode()
        if kind == "string":
            value = redis.get(key)
        elif kind == "hash":
            value = redis.hgetall(key)
        elif kind == "list":
            value = redis.lrange(key, 0, -1)
        elif kind == "set":
            value = redis.smembers(key)
        elif kind == "zset":
            value = redis.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = redis.xrange(key)
        else:
            value = kind
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


def test_no_secret_in_logs_redis_slack_or_answers_of_a_faulty_run(tmp_path: Path, paradime, slack, policy):
    server = RedisServer(tmp_path, aof=False).start()
    (tmp_path / "triage.yaml").write_text(yaml.safe_dump(policy))
    env = {**simulated_env(server.url, paradime, slack), "TRIAGE_CONFIG": str(tmp_path / "triage.yaml"),
           "SLACK_WEBHOOK_URL": slack.webhook_url, "LOG_LEVEL": "DEBUG"}  # the URL is configured (and ignored)
    procs = Processes(env, tmp_path)
    answers: list[str] = []
    try:
        web = procs.web()
        hook = f"{web}/webhooks/paradime"
        paradime.webhook_target = hook
        w1 = procs.worker("w1")
        procs.worker("w2")

        # Paradime failing on the query side, Slack rate limiting, a work horse killed mid-download.
        paradime.fail_next("boltRunStatus", times=2, kind="http_500")
        paradime.fail_next("boltCommand", times=1, kind="http_429")
        paradime.fail_next("boltScheduleName", times=1, kind="graphql_error")
        paradime.fail_next("artifact", times=1, kind="timeout", delay=30)
        slack.fail_next(2, status=429, retry_after=1, method="chat.postMessage")
        lock_run = failed_run(paradime, dbt_run(LOCK), schedule="with_faults")
        resp = paradime.deliver(lock_run)
        answers.append(resp.text + json.dumps(dict(resp.headers)))
        wait_for("the download starts", lambda: paradime.calls_of("artifact"), 30)
        horses = [pid for pid in children(w1.pid) + children(procs.procs["w2"].pid) if os.getpgid(pid) == pid]
        for pid in horses:
            os.killpg(pid, signal.SIGKILL)

        # What else a sender may send: a duplicate, bad signatures, bad bodies, unknown paths.
        raw = json.dumps(paradime.webhook_payload(lock_run)).encode()
        for url, body, headers in [
            (hook, raw, signed_headers(WEBHOOK_SECRET, raw, "msg_dup")),
            (hook, raw, signed_headers(WEBHOOK_SECRET, raw, "msg_dup")),
            (hook, raw, {**signed_headers(WEBHOOK_SECRET, raw), "webhook-signature": "v1,Zm9v"}),
            (hook, b'{"run_id": "--1"}', signed_headers(WEBHOOK_SECRET, b'{"run_id": "--1"}')),
            (hook, b"\xff\xfe", {}),
            (f"{hook}/{WEBHOOK_SECRET[6:]}", raw, {}),
            (f"{web}/nothing-here", b"", {}),
        ]:
            resp = requests.post(url, data=body, headers=headers, timeout=10)
            answers.append(f"{resp.status_code} {resp.text} {json.dumps(dict(resp.headers))}")
        answers.append(requests.get(f"{web}/healthz", timeout=5).text)

        story = lambda: json.loads(server.client().get(f"bt:story:{lock_run}") or "{}")  # noqa: E731
        wait_for("the transient failure is retried and recovers", lambda: story().get("status") == "recovered", 90)

        def told_in_slack() -> bool:
            parents = [m for m in slack.top_level() if "with_faults" in m.text]
            return bool(parents) and "Recovered on retry 1" in parents[0].text and \
                len(slack.replies(parents[0].ts)) >= 2

        wait_for("Slack is told (after its 429s)", told_in_slack, 60)

        # Incoming-webhook mode: its own worker, the URL its only Slack credential.
        procs.stop()
        procs.procs.clear()
        webhook_env = {"SLACK_BOT_TOKEN": "", "SLACK_CHANNEL": "", "SLACK_API_URL": ""}
        procs.worker("w3", env=webhook_env)
        slack.fail_next(1, status=429, retry_after=1, method="webhook")
        web = procs.web("web2", env=webhook_env)
        paradime.webhook_target = f"{web}/webhooks/paradime"
        missing_run = failed_run(paradime, dbt_run(MISSING), schedule="webhook_mode")
        answers.append(paradime.deliver(missing_run).text)
        wait_for("the webhook-mode alert is posted",
                 lambda: any("webhook_mode" in m.text for m in slack.messages), 60)
    finally:
        procs.stop()
        written = {name: (tmp_path / f"{name}.log").read_text(errors="replace")
                   for name in ("web", "w1", "w2", "w3", "web2") if (tmp_path / f"{name}.log").exists()}
        stored = _redis_dump(server.client())
        server.stop()

    told = json.dumps([{"text": m.text, "blocks": m.blocks, "history": m.history} for m in slack.messages])
    assert horses and "Work-horse terminated unexpectedly" in written["w1"] + written["w2"]
    assert "DEBUG" in written["w1"] and "POST /webhooks/paradime" in written["web"]  # the scan saw real output
    assert len(slack.messages) >= 4 and "bt:story:" in stored
    path_token = paradime.graphql_url.split("/api/v1/")[1].split("/")[0]
    configured = {"webhook secret": WEBHOOK_SECRET, "webhook secret key": WEBHOOK_SECRET[6:],
                  "Paradime key": paradime.api_key, "Paradime secret": paradime.api_secret,
                  "Paradime workspace token": f"/{path_token}/", "Slack token": slack.token,
                  "Slack webhook URL": slack.webhook_url, "Slack webhook secret": slack.webhook_path.rsplit("/", 1)[1]}
    places = {**{f"log of {name}": text for name, text in written.items()}, "Redis": stored, "Slack": told,
              "HTTP answers": "\n".join(answers)}
    leaks = [(what, where) for what, secret in configured.items() for where, text in places.items()
             if secret in text]
    assert leaks == []
