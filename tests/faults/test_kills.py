"""Workers die: SIGKILL of a work horse (as the OOM killer does) and of a whole worker (a platform's
kill after its grace period), at the moments that matter. Real processes: ``triage worker`` (RQ's
forking Worker with the scheduler) as subprocesses, the web app on a socket, real Redis, the
Paradime and Slack simulators. Each test asserts exactly what happened afterwards.

Bounds (workers/worker.py): a dead horse is seen at once by its worker; a dead worker's job is found
abandoned by another worker within JOB_MONITORING_SECONDS + 60 + MAINTENANCE_SECONDS = 85 s.
"""

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

from tests.faults.harness import children
from tests.test_pipeline import LOCK, MISSING, dbt_run, failed_run, story

pytestmark = pytest.mark.slow

ABANDONED_BOUND = 105 + 30  # detection bound, plus the retry interval and the triage itself


@pytest.fixture
def policy(policy: dict) -> dict:
    policy["jobs"] = {"attempts": 3, "retry_intervals": [1]}
    policy["paradime"].update(timeout_seconds=10, max_attempts=1)
    return policy


class Workers:
    """``triage worker`` processes, each in its own session so a test can kill it whole."""

    def __init__(self, env: dict[str, str], cwd: Path):
        self.env, self.cwd = env, cwd
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, worker_class: str = "fork") -> subprocess.Popen:
        log = open(self.cwd / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen([sys.executable, "-m", "triage.cli", "worker", "--name", name, "--no-probe",
                                 "--worker-class", worker_class],
                                env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def horse_of(self, proc: subprocess.Popen, timeout: float = 20) -> int:
        """The pid of the worker's work horse (RQ forks it into a process group of its own)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for pid in children(proc.pid):
                if os.getpgid(pid) == pid:
                    return pid
            time.sleep(0.05)
        raise AssertionError("the worker never forked a work horse")

    def kill_whole(self, proc: subprocess.Popen) -> None:
        """SIGKILL the worker, its scheduler and its horse, as a container runtime does."""
        horses = [pid for pid in children(proc.pid) if os.getpgid(pid) == pid]
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in horses:
            os.killpg(pid, signal.SIGKILL)
        proc.wait(10)

    def kill_one_at(self, paradime, message: str, moment: str, reached: Callable[[int], bool],
                    within: float = 30, worker_class: str = "fork") -> int:
        """Deliver a failed run's webhook to worker w1 (of ``worker_class``), SIGKILL w1 whole once
        ``reached(run_id)`` holds (the ``moment``), and start w2 to finish the job; the run id."""
        first = self.start("w1", worker_class)
        run_id = failed_run(paradime, dbt_run(message))
        paradime.deliver(run_id)
        wait_for(moment, lambda: reached(run_id), within)
        self.kill_whole(first)
        self.start("w2")
        return run_id

    def log(self, name: str) -> str:
        return (self.cwd / f"{name}.log").read_text()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def workers(service, service_env, tmp_path) -> Iterator[Workers]:
    crew = Workers({**service_env, "PATH": os.environ["PATH"], "HOME": str(tmp_path)}, tmp_path)
    yield crew
    crew.stop()


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    start = time.time()
    while not check():
        if time.time() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(0.2)
    return time.time() - start


def triage_records(redis) -> list[dict]:
    return [{k.decode(): json.loads(v) for k, v in redis.hgetall(key).items()} for key in redis.keys("bt:triage:*")]


def test_a_killed_work_horse_is_retried_by_its_worker(service, workers, paradime, slack, redis):
    paradime.fail_next("artifact", kind="timeout", delay=30)  # the first download stalls
    worker = workers.start("w1")
    run_id = failed_run(paradime, dbt_run(MISSING))
    paradime.deliver(run_id)
    wait_for("the download starts", lambda: paradime.calls_of("artifact"), 20)
    os.killpg(workers.horse_of(worker), signal.SIGKILL)

    wait_for("the triage completes", lambda: story(service, run_id).get("status") == "not_retried", 60)
    wait_for("the alert is posted", lambda: slack.top_level(), 30)
    assert len(slack.top_level()) == 1
    [record] = triage_records(redis)
    assert record["status"] == "done" and record["outcome"] == "triaged"
    assert paradime.calls_of("retryBoltRun") == []


@pytest.mark.parametrize("worker_class", ["fork", "simple"])
def test_a_killed_worker_is_finished_by_another_within_the_bound(service, workers, paradime, slack, redis,
                                                                 worker_class):
    """Also for ``--worker-class simple``, whose running job's heartbeat a thread keeps (workers.worker
    ._Heartbeat): without it RQ's SimpleWorker gives a job its timeout + 60 s (660 s) before it is found."""
    paradime.fail_next("artifact", kind="timeout", delay=300)
    run_id = workers.kill_one_at(paradime, MISSING, "the download starts", lambda _: paradime.calls_of("artifact"),
                                 within=20, worker_class=worker_class)

    took = wait_for("another worker finishes the triage", lambda: slack.top_level(), ABANDONED_BOUND)
    assert len(slack.top_level()) == 1 and "Not retrying" in str(slack.top_level()[0].blocks)
    assert took < ABANDONED_BOUND
    wait_for("the record is final", lambda: triage_records(redis)[0]["status"] == "done", 10)
    assert story(service, run_id)["status"] == "not_retried"


def test_a_worker_killed_after_sending_the_retry_never_sends_it_twice(service, workers, paradime, slack, redis):
    paradime.fail_next("retryBoltRun", kind="slow_answer", delay=300)  # carried out, answer never arrives
    run_id = workers.kill_one_at(paradime, LOCK, "the retry is sent", lambda _: paradime.calls_of("retryBoltRun"))

    wait_for("the story asks a human", lambda: story(service, run_id).get("status") == "needs_human",
             ABANDONED_BOUND + 60)
    assert len(paradime.calls_of("retryBoltRun")) == 1
    wait_for("Slack is told", lambda: any("may or may not have been sent" in m.text for m in slack.messages), 30)
    assert len(slack.top_level()) == 1  # the alert; the note is a reply in its thread
    assert not any(r["status"] in ("triaging", "retry_scheduled", "queued") for r in triage_records(redis))


@pytest.mark.parametrize("accepted", [False, True], ids=["before-slack-got-it", "after-slack-got-it"])
def test_a_worker_killed_between_the_slack_claim_and_the_post_posts_once(service, workers, paradime, slack, redis,
                                                                          accepted):
    """Killed while chat.postMessage hangs: before Slack got the message (it is posted by the next
    delivery), or after (Slack has it, the ts was never recorded: the next delivery finds it by its
    metadata and does not post it again)."""
    slack.stall_next(300, method="chat.postMessage", after=accepted)

    def sending(run: int) -> bool:
        return bool(slack.top_level()) if accepted else \
            (redis.get(f"bt:slack:{run}:summary") or b"").startswith(b"pending")

    run_id = workers.kill_one_at(paradime, MISSING, "the post is being sent", sending)

    wait_for("the post is recorded", lambda: (redis.get(f"bt:slack:{run_id}:summary") or b"").startswith(b"{"),
             ABANDONED_BOUND + 60)
    time.sleep(2)
    assert len(slack.top_level()) == 1
    assert json.loads(redis.get(f"bt:slack:{run_id}:summary"))["ts"] == slack.top_level()[0].ts
    # the next delivery found a stale claim and looked in Slack before posting (or not posting) it
    assert [r for r in slack.requests_log if r.method == "conversations.history"]
