"""Start-up checks, as a user meets them: real processes (``triage web`` under gunicorn,
``triage worker``, ``triage check-config``) run from a folder that is not the checkout, with
only environment variables, against the Paradime and Slack simulators. Each check answers with
one line naming the setting, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET, free_port, simulated_env

CLI = [sys.executable, "-m", "triage.cli"]


@pytest.fixture
def env(tmp_path, redis_url, redis, paradime, slack) -> dict[str, str]:
    """A worker's and a web's environment, nothing inherited but PATH (as a systemd unit has)."""
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **simulated_env(redis_url, paradime, slack)}


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_worker_starts_with_only_its_own_settings(env, tmp_path):
    del env["PARADIME_WEBHOOK_SECRET"]  # a web-only setting: a worker's env file need not hold it
    proc = run(["worker", "--burst"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "paradime: ok (http://127.0.0.1:" in proc.stderr and "key accepted" in proc.stderr
    assert "slack: ok (api mode: bolt-triage in Bolt Triage Sim)" in proc.stderr


@pytest.mark.parametrize("change, message", [
    ({"PARADIME_API_KEY": ""},
     "bolt-triage worker: configuration error: PARADIME_API_KEY: not set; the worker needs it to read runs and "
     "retry them"),
    ({"PARADIME_API_KEY": "wrong-key"},
     "bolt-triage worker: paradime: http://127.0.0.1:{paradime_port}/…: Paradime listBoltSchedules: HTTP 401: "
     "the API key/secret were refused"),
    ({"SLACK_BOT_TOKEN": "xoxb-wrong"}, "bolt-triage worker: slack: api mode: Slack auth.test: invalid_auth"),
    ({"SLACK_BOT_TOKEN": "", "SLACK_WEBHOOK_URL": "{slack_base}/services/T000SIM/B000SIM/deadhook123"},
     "bolt-triage worker: slack: webhook mode: Slack incoming webhook: HTTP 404 'no_service': the URL was "
     "refused (revoked, or the channel is gone)"),
    ({"SLACK_BOT_TOKEN": "", "SLACK_WEBHOOK_URL": "hooks.slack.com/services/T1/B1/x"},
     "bolt-triage worker: configuration error: SLACK_WEBHOOK_URL: expected https://hooks.slack.com/services/T…/B…/…"),
    ({"REDIS_URL": "127.0.0.1:6379"},
     "bolt-triage worker: configuration error: REDIS_URL: expected redis://host:port/db, rediss://… or unix://…, "
     "got '127.0.0.1:6379'"),
])
def test_worker_refuses_a_wrong_setting_with_one_line(env, tmp_path, paradime, slack, change, message):
    fill = {"paradime_port": paradime.base_url.rsplit(":", 1)[1], "slack_base": slack.base_url}
    env.update({k: v.format(**fill) for k, v in change.items()})
    proc = run(["worker", "--burst"], env, tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == message.format(**fill)
    assert "Traceback" not in proc.stderr
    assert "wrong-key" not in proc.stderr and "xoxb-wrong" not in proc.stderr and "deadhook123" not in proc.stderr


def test_worker_waits_for_an_unreachable_redis_without_a_traceback(env, tmp_path):
    env["REDIS_URL"] = f"redis://:pw-secret@127.0.0.1:{free_port()}/0"
    proc = subprocess.Popen([*CLI, "worker"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    waits = [line for line in err.splitlines() if "waiting for Redis at redis://:***@127.0.0.1:" in line]
    assert len(waits) >= 2, err
    assert "Connection refused" in waits[0] and "next try in 1s" in waits[0]
    assert "Traceback" not in err and "pw-secret" not in err


def start_web(env: dict[str, str], cwd: Path, *options: str, timeout: float = 20) -> tuple[subprocess.Popen, str]:
    """``triage web`` on a free port (``options``: gunicorn's, default one worker), once it answers."""
    port = free_port()
    proc = subprocess.Popen([*CLI, "web", "--bind", f"127.0.0.1:{port}", *(options or ("--workers", "1"))],
                            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            requests.get(f"{url}/healthz", timeout=1)
            return proc, url
        except requests.ConnectionError:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("gunicorn did not answer")


def test_web_starts_with_redis_down_and_answers_503(env, tmp_path):
    env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    proc, url = start_web(env, tmp_path)
    try:
        assert requests.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}  # liveness: no Redis call
        ready = requests.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 503 and [r["code"] for r in ready.json()["reasons"]] == ["redis_unreachable"]
        intake = requests.post(f"{url}/webhooks/paradime", data=b"{}", timeout=10)
        assert intake.status_code in (401, 503)  # unsigned: refused before Redis is needed
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.mark.parametrize("change, message", [
    ({"TRIAGE_CONFIG": "policy.yaml"}, "bolt-triage web: configuration error: retry.max_attemps: unknown key "
                                       "(allowed: backoff_seconds, give_up_after_unrecovered, max_attempts, "
                                       "retry_unknown, retry_unknown_if_flaky, same_error_runs)"),
    ({"PARADIME_WEBHOOK_SECRET": ""}, "bolt-triage web: configuration error: PARADIME_WEBHOOK_SECRET: not set, "
                                      "nor PARADIME_WEBHOOK_TOKEN; set one, or set webhook.verification: none (or "
                                      "TRIAGE_WEBHOOK_VERIFICATION=none) to accept unverified webhooks"),
    ({"REDIS_URL": "localhost"}, "bolt-triage web: configuration error: REDIS_URL: expected redis://host:port/db, "
                                 "rediss://… or unix://…, got 'localhost'"),
    ({"WEB_CONCURRENCY": "two"}, "bolt-triage web: configuration error: WEB_CONCURRENCY: expected a whole number "
                                 ">= 1, got 'two'"),
])
def test_web_refuses_a_wrong_setting_with_one_line_under_gunicorn(env, tmp_path, change, message):
    (tmp_path / "policy.yaml").write_text("retry:\n  max_attemps: 1\n")
    env.update(change)
    proc = run(["web", "--bind", f"127.0.0.1:{free_port()}"], env, tmp_path, timeout=30)
    assert proc.returncode == 2
    assert one_line(proc.stderr + proc.stdout) == message


def test_check_config_shows_the_resolved_setup_without_secrets(env, tmp_path, paradime):
    (tmp_path / "policy.yaml").write_text("retry:\n  max_attempts: 1\n")
    env.update(TRIAGE_CONFIG="policy.yaml", REDIS_URL="redis://:pw-secret@127.0.0.1:6399/3")
    proc = run(["check-config"], env, tmp_path)
    assert proc.returncode == 0, proc.stdout
    out = proc.stdout.splitlines()
    assert f"policy: {tmp_path.resolve() / 'policy.yaml'} over the shipped defaults" in out
    assert "redis: redis://:***@127.0.0.1:6399/3" in out
    assert f"paradime endpoint: {paradime.base_url}/…" in out
    assert "slack: api mode, channel #data-alerts, 0 route(s)" in out
    assert "retry: at most 1 automatic retries a run, backoff [60, 300] s" in out
    assert "web: ok" in out and "worker: ok" in out
    for secret in ("pw-secret", paradime.api_key, paradime.api_secret, env["SLACK_BOT_TOKEN"], WEBHOOK_SECRET):
        assert secret not in proc.stdout


def test_check_config_fails_when_a_process_would_refuse(env, tmp_path):
    del env["PARADIME_API_KEY"]
    proc = run(["check-config"], env, tmp_path)
    assert proc.returncode == 2
    assert "worker: would refuse to start: PARADIME_API_KEY: not set; the worker needs it to read runs and retry " \
           "them" in proc.stdout.splitlines()
    assert "web: ok" in proc.stdout.splitlines()
    assert run(["check-config", "--only", "web"], env, tmp_path).returncode == 0


def test_check_config_probe_tries_each_connection(env, tmp_path, paradime):
    proc = run(["check-config", "--probe"], env, tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert any(line.startswith("probe redis: ok (redis://127.0.0.1:") for line in proc.stdout.splitlines())
    assert f"probe paradime: ok ({paradime.base_url}/…: key accepted, 0 active schedule(s))" in proc.stdout
    assert "probe slack: ok (api mode: bolt-triage in Bolt Triage Sim)" in proc.stdout
    env.update(PARADIME_API_SECRET="wrong-secret", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    proc = run(["check-config", "--probe"], env, tmp_path)
    assert proc.returncode == 1
    assert f"probe paradime: FAILED ({paradime.base_url}/…: Paradime listBoltSchedules: HTTP 401: the API " \
           "key/secret were refused)" in proc.stdout
    assert "probe redis: FAILED (redis://127.0.0.1:" in proc.stdout and "Connection refused" in proc.stdout
    assert "wrong-secret" not in proc.stdout
