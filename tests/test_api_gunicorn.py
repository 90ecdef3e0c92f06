"""The API as deployed: ``triage web`` under gunicorn (two forked workers, threads) and a real
``triage worker`` process; SSE across processes; no token in any log line, even at DEBUG and even
when a client puts one in a URL."""

from __future__ import annotations

import json
import subprocess
import threading

import requests

from tests.api_fixtures import ADMIN, READ
from tests.test_pipeline import MISSING, dbt_run, failed_run
from tests.test_startup import CLI, env, start_web  # noqa: F401  (env: the fixture)


def test_api_under_gunicorn_with_a_worker_process(env, tmp_path, paradime, slack):  # noqa: F811
    env.update(TRIAGE_ADMIN_TOKEN=ADMIN, TRIAGE_READ_TOKEN=READ, LOG_LEVEL="debug")
    proc, url = start_web(env, tmp_path, "--workers", "2", "--threads", "4", timeout=30)
    try:
        paradime.webhook_target = f"{url}/webhooks/paradime"
        run_id = failed_run(paradime, dbt_run(MISSING))
        triage_id = paradime.deliver(run_id).json()["triage_id"]
        auth = {"Authorization": f"Bearer {READ}"}
        kinds: list[str] = []

        def follow() -> None:
            with requests.get(f"{url}/api/v1/triages/{triage_id}/stream?heartbeat=1", headers=auth, stream=True,
                              timeout=60) as resp:
                for line in resp.iter_lines(decode_unicode=True):
                    if line.startswith("event:"):
                        kinds.append(line[6:].strip())
                        if kinds[-1] == "end":
                            return

        reader = threading.Thread(target=follow)
        reader.start()
        worker = subprocess.run([*CLI, "worker", "--burst", "--no-probe"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert worker.returncode == 0, worker.stderr[-2000:]
        reader.join(30)
        assert not reader.is_alive() and kinds[-1] == "end"
        assert {"received", "started", "decided", "done"} <= set(kinds)

        # any gunicorn worker answers, reading the same Redis
        for _ in range(4):
            one = requests.get(f"{url}/api/v1/triages/{triage_id}", headers=auth, timeout=5).json()
            assert one["decision"]["reason_code"] == "deterministic" and one["status"] == "done"
        bundle = requests.get(f"{url}/api/v1/triages/{triage_id}/debug-bundle", headers=auth, timeout=5)
        assert any(c["operation"] == "boltRunStatus" for c in bundle.json()["calls"])
        assert any(c["service"] == "slack" for c in bundle.json()["calls"])
        # a token where it does not belong: refused, and masked in the logs
        bad = requests.get(f"{url}/api/v1/triages?cursor={ADMIN}", headers=auth, timeout=5)
        assert bad.status_code == 400 and ADMIN not in bad.text
        assert requests.post(f"{url}/api/v1/retries/pause", json={"for_seconds": 9}, headers=auth,
                             timeout=5).status_code == 403
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    logged = out + worker.stdout + worker.stderr
    assert "/api/v1/triages?cursor=" in out, "the access log has the line, masked"
    assert ADMIN not in logged and READ not in logged
    assert json.dumps(ADMIN) not in logged
