"""Redis frozen (SIGSTOP), and Redis killed and restarted with and without AOF, while signed webhooks
arrive at a real gunicorn (``triage web``) and ``triage worker`` processes run: every answer is a 202, a
200 duplicate or a 503 with ``Retry-After`` and a JSON body, within the Redis client's timeout (never a
500, never a hang); a sender that delivers again until it gets a 2xx has every run triaged exactly once;
with AOF (``appendfsync always``) nothing answered 202 is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import simulated_env
from tests.faults.harness import ANSWER_BOUND, LossyProxy, Processes, RedisServer, Sender, triage_records, wait_for
from tests.test_pipeline import MISSING, dbt_run, failed_run

pytestmark = pytest.mark.slow

RUNS = 10
SPACING = 0.6  # seconds between first deliveries: they span the outage


@pytest.fixture
def crew(request, tmp_path: Path, paradime, slack, policy) -> Iterator[tuple[RedisServer, Processes, str]]:
    """A private Redis (AOF when the test is parametrised so), gunicorn with 2 workers, 2 RQ workers."""
    server = RedisServer(tmp_path, aof=getattr(request, "param", False)).start()
    (tmp_path / "triage.yaml").write_text(yaml.safe_dump(policy))
    env = {**simulated_env(server.url, paradime, slack), "TRIAGE_CONFIG": str(tmp_path / "triage.yaml")}
    procs = Processes(env, tmp_path)
    try:
        url = procs.web()
        for name in ("w1", "w2"):
            procs.worker(name)
        yield server, procs, f"{url}/webhooks/paradime"
    finally:
        procs.stop()
        server.stop()


def _deliveries(paradime) -> list[tuple[int, dict, str]]:
    runs = [failed_run(paradime, dbt_run(MISSING), schedule=f"s{i}") for i in range(RUNS)]
    return [(run, paradime.webhook_payload(run), f"msg_outage_{run}") for run in runs]


def _check_answers(sender: Sender) -> None:
    """Each answer: 202 accepted, 200 duplicate, or 503 + Retry-After + JSON; all within the bound."""
    assert sender.answers
    for a in sender.answers:
        assert a.status in (200, 202, 503), a
        assert a.seconds < ANSWER_BOUND, a
        assert a.body is not None, a
        if a.status == 503:
            assert a.retry_after == "30" and a.body["error"] == "unavailable", a


def _about(message, run: int) -> bool:
    return f"run_id/{run}" in str(message.blocks)


def _triaged_once(slack, redis, runs: list[int]) -> None:
    """One Slack alert and one finished triage record per run."""
    for i, run in enumerate(runs):
        alerts = [m for m in slack.top_level() if _about(m, run)]
        assert len(alerts) == 1, (i, run, [m.text for m in slack.top_level()])
    records = [r for r in triage_records(redis) if r.get("run_id") in runs]
    assert sorted(r["run_id"] for r in records) == sorted(runs)
    assert all(r["status"] == "done" for r in records), records


def _outage_while_delivering(sender: Sender, items: list[tuple[int, dict, str]], outage) -> None:
    thread = sender.deliver_all([(body, wid) for _, body, wid in items], SPACING)
    time.sleep(SPACING * 2.5)  # a few delivered before the outage, the rest during and after it
    outage()
    thread.join(120)
    assert not thread.is_alive(), "deliveries not all accepted within 120 s"


def test_redis_frozen_for_8s(crew, paradime, slack):
    server, procs, url = crew
    items = _deliveries(paradime)
    sender = Sender(url)

    def freeze() -> None:
        server.freeze()
        time.sleep(8)
        server.thaw()

    _outage_while_delivering(sender, items, freeze)
    _check_answers(sender)
    assert any(a.status == 503 for a in sender.answers), "the freeze was not seen"
    runs = [run for run, _, _ in items]
    wait_for("every run is triaged", lambda: len(slack.top_level()) >= RUNS, 90)
    time.sleep(2)
    _triaged_once(slack, server.client(), runs)


@pytest.mark.parametrize("crew", [True, False], ids=["aof", "no-aof"], indirect=True)
def test_redis_killed_and_restarted(crew, paradime, slack):
    server, procs, url = crew
    items = _deliveries(paradime)
    sender = Sender(url)
    restarted = threading.Event()
    back_at: list[float] = []

    def kill_and_restart() -> None:
        server.kill()
        time.sleep(4)
        server.start()
        back_at.append(time.monotonic())
        restarted.set()

    _outage_while_delivering(sender, items, kill_and_restart)
    _check_answers(sender)
    assert any(a.status == 503 for a in sender.answers), "the outage was not seen"
    runs = [run for run, _, _ in items]
    if server.aof:  # nothing accepted is lost: every run is triaged, once
        wait_for("every run is triaged", lambda: len(slack.top_level()) >= RUNS, 120)
        time.sleep(2)
        _triaged_once(slack, server.client(), runs)
    else:  # what was accepted after the restart is triaged once; what was accepted before may be lost
        later = [run for run, _, wid in items if _accepted_after(sender, wid, back_at[0])]
        assert later
        wait_for("the runs accepted after the restart are triaged",
                 lambda: all(any(_about(m, r) for m in slack.top_level()) for r in later), 120)
        time.sleep(2)
        _triaged_once(slack, server.client(), later)
        for run in runs:
            assert sum(_about(m, run) for m in slack.top_level()) <= 1


def _accepted_after(sender: Sender, delivery: str, moment: float) -> bool:
    return any(a.finished_at >= moment for a in sender.accepted(delivery))


def test_an_admission_whose_answer_is_lost_is_triaged_once(tmp_path: Path, paradime, slack, policy):
    """The issue's first defect, made exact: Redis carries out the intake transaction (claim, record, job)
    but its answer never reaches the web, which times out. The delivery is answered 503 after one client
    timeout, its redelivery ``duplicate`` naming the triage Redis made; the run is triaged once."""
    server = RedisServer(tmp_path, aof=False).start()
    proxy = LossyProxy(server.port)
    (tmp_path / "triage.yaml").write_text(yaml.safe_dump(policy))
    env = {**simulated_env(server.url, paradime, slack), "TRIAGE_CONFIG": str(tmp_path / "triage.yaml")}
    procs = Processes(env, tmp_path)
    try:
        url = procs.web(env={"REDIS_URL": proxy.url}) + "/webhooks/paradime"  # the workers talk to Redis directly
        procs.worker("w1")
        run = failed_run(paradime, dbt_run(MISSING))
        body, sender = paradime.webhook_payload(run), Sender(url)
        proxy.lose_next_exec_answer()
        first = sender.post(body, "msg_lost_answer")
        again = sender.post(body, "msg_lost_answer")
        assert proxy.lost == 1
        _check_answers(sender)
        assert again.status == 200 and again.body["status"] == "duplicate", again
        # One client timeout, then 503 (not a second timeout); the redelivery finds the job Redis made.
        assert first.status == 503 and first.retry_after == "30" and first.seconds < ANSWER_BOUND, first
        wait_for("the run is triaged", lambda: slack.top_level(), 60)
        time.sleep(2)
        _triaged_once(slack, server.client(), [run])
        [record] = triage_records(server.client())
        assert record["job_id"] == f"triage-{again.body['triage_id']}"
    finally:
        procs.stop()
        proxy.close()
        server.stop()


def test_a_redelivery_whose_reopening_loses_redis_is_told_to_come_again(tmp_path: Path, paradime, slack, policy):
    """A dead-lettered triage is reopened by a redelivery; the connection to Redis is lost in the middle of
    that (the answer to its read of the status never comes). The redelivery must be answered 503 (deliver
    again), not "200 duplicate", which would end the sender's retries with no triage behind it."""
    policy["jobs"] = {"attempts": 1, "retry_intervals": [0]}
    server = RedisServer(tmp_path, aof=False).start()
    proxy = LossyProxy(server.port)
    (tmp_path / "triage.yaml").write_text(yaml.safe_dump(policy))
    env = {**simulated_env(server.url, paradime, slack), "TRIAGE_CONFIG": str(tmp_path / "triage.yaml")}
    procs = Processes(env, tmp_path)
    try:
        url = procs.web(env={"REDIS_URL": proxy.url}) + "/webhooks/paradime"
        procs.worker("w1")
        paradime.fail_next("boltRunStatus", times=4 * 3, kind="http_500")  # the triage and its 3 re-checks
        run = failed_run(paradime, dbt_run(MISSING))
        body, sender = paradime.webhook_payload(run), Sender(url)
        assert sender.post(body, "msg_first").status == 202
        wait_for("the triage is dead-lettered",
                 lambda: [r["status"] for r in triage_records(server.client())] == ["dead_letter"], 60)

        proxy.lose_next_answer_to("HGET")  # Store.reopen reads the status under WATCH
        lost = sender.post(body, "msg_again")
        assert proxy.lost == 1
        assert lost.status == 503 and lost.retry_after == "30" and lost.seconds < ANSWER_BOUND, lost
        accepted = sender.post(body, "msg_again")
        assert accepted.status == 202 and accepted.body["status"] == "requeued", accepted
        _check_answers(sender)
        wait_for("the reopened triage finishes",
                 lambda: [r["status"] for r in triage_records(server.client())] == ["done"], 60)
        wait_for("its alert is posted", lambda: [m for m in slack.top_level() if "Not retrying" in m.text], 30)
    finally:
        procs.stop()
        proxy.close()
        server.stop()
