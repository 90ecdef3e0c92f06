"""The worker whose RQ scheduler holds the scheduler locks is SIGKILLed whole: another ``triage worker``
takes the locks over (workers.worker.release_stale_scheduler_locks) and delayed work runs again within
seconds, not after the 61 s for which RQ's lock outlives its holder."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from tests.conftest import simulated_env
from tests.faults.harness import Processes, RedisServer, children, wait_for
from triage import broker
from workers.worker import MAINTENANCE_SECONDS, SCHEDULER_STALE_SECONDS

pytestmark = pytest.mark.slow

#: Stale after SCHEDULER_STALE_SECONDS, seen by the next maintenance, then the job's own 1 s delay.
TAKEOVER_BOUND = SCHEDULER_STALE_SECONDS + MAINTENANCE_SECONDS + 10


def test_delayed_work_runs_on_another_worker_soon_after_the_scheduler_holder_is_killed(tmp_path: Path, paradime,
                                                                                       slack, policy):
    server = RedisServer(tmp_path, aof=False).start()
    (tmp_path / "triage.yaml").write_text(yaml.safe_dump(policy))
    procs = Processes({**simulated_env(server.url, paradime, slack), "TRIAGE_CONFIG": str(tmp_path / "triage.yaml")},
                      tmp_path)
    redis = server.client()
    try:
        for name in ("w1", "w2"):
            procs.worker(name)
        lock = "rq:scheduler-lock:triage"

        def holder_pid() -> int | None:  # the lock is taken before the scheduler process registers
            name = redis.get(lock)
            pid = redis.hget(f"rq:scheduler:{name.decode()}", "pid") if name else None
            return int(pid) if pid and int(pid) else None

        wait_for("a scheduler holds the lock", holder_pid, 20)
        scheduler = holder_pid()
        [holder] = [name for name, proc in procs.procs.items() if scheduler in children(proc.pid)]
        [other] = [name for name in procs.procs if name != holder]
        procs.kill(holder)
        killed = time.time()

        queue = broker.queue(redis)
        job = queue.enqueue_in(timedelta(seconds=1), "os.getpid")
        took = wait_for("the delayed job runs", lambda: job.get_status(refresh=True) == "finished", TAKEOVER_BOUND + 30)
        assert time.time() - killed < TAKEOVER_BOUND, took
        assert "Successfully completed os.getpid() job" in procs.log(other)
        assert "scheduler lock for triage released: not refreshed for" in procs.log(other)
        assert redis.hget(f"rq:scheduler:{redis.get(lock).decode()}", "pid") is not None
    finally:
        procs.stop()
        server.stop()
