"""Health, metrics and logs as deployed: ``triage web`` (gunicorn, two workers) and two ``triage worker``
processes (forking RQ workers with the scheduler) on real Redis, with the Paradime and Slack simulators.
One scrape of the web must show what every process did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from redis import Redis
from rq import Worker
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from tests.conftest import free_port
from tests.faults.test_kills import Workers, wait_for
from tests.faults.test_redis_restart import _start_redis
from tests.test_monitoring import assert_mixed_run_counted, mixed_run, scrape, story_status, value
from tests.test_pipeline import MISSING, dbt_run, failed_run
from triage import broker

pytestmark = pytest.mark.slow

READ_TOKEN = "read-tok-5f2c9a1e7b"
JSON_KEYS = {"time", "level", "logger", "message", "triage_id", "run_id"}


class Web:
    """``triage web`` on a free port; its output in ``<cwd>/web.log``."""

    def __init__(self, env: dict[str, str], cwd: Path, workers: int = 2):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / "web.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([sys.executable, "-m", "triage.cli", "web", "--bind", f"127.0.0.1:{self.port}",
                                      "--workers", str(workers)], env=env, cwd=cwd, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).ok:
                    return
            except requests.ConnectionError:
                pass
            assert self.proc.poll() is None and time.time() < deadline, self.log_path.read_text()[-3000:]
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self._log.close()


@pytest.fixture
def proc_env(service_env, tmp_path) -> dict[str, str]:
    return {**service_env, "PATH": os.environ["PATH"], "HOME": str(tmp_path), "LOG_FORMAT": "json"}


@pytest.fixture
def start_web(proc_env, tmp_path, paradime) -> Iterator[Callable[..., Web]]:
    started: list[Web] = []

    def start(**env: str) -> Web:
        web = Web({**proc_env, **env}, tmp_path)
        paradime.webhook_target = f"{web.url}/webhooks/paradime"
        started.append(web)
        return web

    yield start
    for web in started:
        web.stop()


@pytest.fixture
def crew(proc_env, tmp_path) -> Iterator[Workers]:
    workers = Workers(proc_env, tmp_path)
    yield workers
    workers.stop()


def ready(url: str) -> requests.Response:
    return requests.get(f"{url}/readyz", timeout=10)


def reason_codes(url: str) -> list[str]:
    resp = ready(url)
    return [r["code"] for r in resp.json()["reasons"]] if resp.status_code == 503 else []


def settle_with(redis: Redis) -> Callable[[Callable[[], bool]], None]:
    """Wait until ``done()`` holds and no job is queued, scheduled or running, twice half a second apart
    (a job that enqueues another is still running when it does)."""
    queues = [broker.queue(redis, name) for name in (broker.TRIAGE_QUEUE, broker.SLACK_QUEUE)]

    def idle() -> bool:
        return all(q.count == 0 and ScheduledJobRegistry(queue=q).count == 0 and StartedJobRegistry(queue=q).count == 0
                   for q in queues)

    def settle(done: Callable[[], bool]) -> None:
        def quiet() -> bool:
            if not (done() and idle()):
                return False
            time.sleep(0.5)
            return idle()

        wait_for("the service to finish", quiet, 60)

    return settle


def json_lines(path: Path) -> list[dict]:
    """Every line of a process's output, each one JSON object with the documented keys."""
    records = []
    for line in path.read_text().splitlines():
        record = json.loads(line)  # fails on any line that is not one JSON object
        assert isinstance(record, dict) and record.keys() >= JSON_KEYS, line
        records.append(record)
    return records


def test_metrics_after_a_mixed_run_from_two_workers(start_web, crew, paradime, slack, redis):
    web = start_web()
    crew.start("w1")
    crew.start("w2")
    wait_for("both workers and the scheduler are up", lambda: ready(web.url).status_code == 200, 30)

    mixed_run(paradime, f"{web.url}/webhooks/paradime", redis, settle_with(redis))

    scrapes = [scrape(web.url) for _ in range(4)]  # whichever gunicorn worker answers: the same numbers
    assert all(s == scrapes[0] for s in scrapes)
    samples = scrapes[0]
    assert_mixed_run_counted(samples, slack)
    assert value(samples, "bolt_triage_workers") == 2
    assert value(samples, "bolt_triage_scheduler_up") == 1
    done = {w.name: w.successful_job_count for w in Worker.all(connection=redis)}
    assert set(done) == {"w1", "w2"} and all(n > 0 for n in done.values()), done  # both counted some of it


def test_web_and_worker_write_one_json_object_per_line(start_web, crew, paradime, slack, redis, tmp_path):
    web = start_web()
    crew.start("w1")
    wait_for("the worker is up", lambda: ready(web.url).status_code == 200, 30)
    run_id = failed_run(paradime, dbt_run(MISSING))
    triage_id = paradime.deliver(run_id).json()["triage_id"]
    wait_for("the triage is told", lambda: story_status(redis, run_id) == "not_retried" and slack.top_level(), 30)
    time.sleep(1)
    crew.stop()
    web.stop()

    web_lines = json_lines(tmp_path / "web.log")
    assert any(r["logger"] == "gunicorn.access" and "POST /webhooks/paradime" in r["message"] for r in web_lines)
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in web_lines)
    [queued] = [r for r in web_lines if r["logger"] == "triage.intake"]
    assert (queued["triage_id"], queued["run_id"]) == (triage_id, run_id) and "queued" in queued["message"]
    assert all(r["triage_id"] is None for r in web_lines if r["logger"] == "gunicorn.access")  # not carried over
    worker_lines = json_lines(tmp_path / "w1.log")
    job_lines = [r for r in worker_lines if r["triage_id"] == triage_id]
    assert {r["run_id"] for r in job_lines} == {run_id}
    assert any(r["logger"] == "workers.jobs" and r["level"] == "INFO" for r in job_lines)
    assert any(r["logger"].startswith("rq.") for r in worker_lines)  # RQ's own lines too
    for r in web_lines + worker_lines:
        assert r["time"].endswith("Z") and r["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def test_readyz_without_a_worker_and_after_it_stops(start_web, crew, redis):
    web = start_web()
    first = ready(web.url).json()
    assert [r["code"] for r in first["reasons"]] == ["no_worker", "scheduler_not_running"], first
    worker = crew.start("w1")
    wait_for("ready with a worker", lambda: ready(web.url).status_code == 200, 30)
    os.killpg(worker.pid, signal.SIGTERM)  # a worker that stops deregisters: no wait for its heartbeat to age
    worker.wait(20)
    after = ready(web.url).json()
    assert after["reasons"][0] == {"code": "no_worker", "message": "no RQ worker heartbeat within 60 s"}, after


def test_readyz_names_redis_when_it_goes_down(start_web, crew, tmp_path):
    port = free_port()
    server = _start_redis(port, tmp_path)
    try:
        web = start_web(REDIS_URL=f"redis://127.0.0.1:{port}/0")
        crew.env = {**crew.env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
        crew.start("w1")
        wait_for("ready", lambda: ready(web.url).status_code == 200, 30)
        server.send_signal(signal.SIGKILL)
        server.wait(5)
        resp = ready(web.url)
        assert resp.status_code == 503
        [reason] = resp.json()["reasons"]
        assert reason["code"] == "redis_unreachable" and "Redis unreachable: " in reason["message"]
        assert requests.get(f"{web.url}/healthz", timeout=5).json() == {"status": "ok"}
        scraped = requests.get(f"{web.url}/metrics", timeout=10)
        assert scraped.status_code == 200 and "bolt_triage_redis_up 0.0" in scraped.text
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)


def test_metrics_behind_the_read_token(start_web, tmp_path):
    web = start_web(TRIAGE_METRICS_AUTH="token", TRIAGE_READ_TOKEN=READ_TOKEN)
    assert requests.get(f"{web.url}/metrics", timeout=10).status_code == 401
    assert requests.get(f"{web.url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401
    ok = requests.get(f"{web.url}/metrics", headers={"Authorization": f"Bearer {READ_TOKEN}"}, timeout=10)
    assert ok.status_code == 200 and "bolt_triage_webhooks_total" in ok.text
    web.stop()
    assert READ_TOKEN not in (tmp_path / "web.log").read_text()


def test_worker_output_stays_json_through_a_redis_outage(crew, tmp_path):
    """RQ's scheduler process dies with the connection and the worker starts another: every line of the
    worker's output through that, whoever writes it, is one JSON object."""
    port = free_port()
    server = _start_redis(port, tmp_path)
    crew.env = {**crew.env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    crew.start("w1")
    try:
        wait_for("the scheduler starts", lambda: "Scheduler for" in (tmp_path / "w1.log").read_text(), 20)
        server.send_signal(signal.SIGKILL)
        server.wait(5)
        time.sleep(6)  # the scheduler polls Redis every second: it dies meanwhile
        server = _start_redis(port, tmp_path)
        # RQ's maintenance (every 30 s, workers/worker.py) starts a new one; slack under a loaded machine
        wait_for("the scheduler is restarted", lambda: (tmp_path / "w1.log").read_text().count("Scheduler for") >= 2,
                 120)
    finally:
        crew.stop()
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    records = json_lines(tmp_path / "w1.log")
    assert any(r["logger"] == "rq.scheduler" and r["level"] == "ERROR" and "stopped" in r["message"] for r in records)
