"""Concurrent duplicates through real processes: two ``triage web`` (gunicorn, 2 workers each) and three
``triage worker`` processes on one Redis receive 20 simultaneous copies of each of several webhooks (half
with one delivery id, half with ids of their own): one 202 per run, one triage, one retry mutation for a
transient failure (none for a deterministic one), one Slack parent message per run."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import simulated_env
from tests.faults.harness import Answer, Processes, RedisServer, Sender, triage_records, wait_for
from tests.test_pipeline import LOCK, MISSING, dbt_run, failed_run

pytestmark = pytest.mark.slow

COPIES = 20


@pytest.fixture
def crew(tmp_path: Path, paradime, slack, policy) -> Iterator[tuple[RedisServer, list[str]]]:
    server = RedisServer(tmp_path, aof=False).start()
    (tmp_path / "triage.yaml").write_text(yaml.safe_dump(policy))
    env = {**simulated_env(server.url, paradime, slack), "TRIAGE_CONFIG": str(tmp_path / "triage.yaml")}
    procs = Processes(env, tmp_path)
    try:
        webs = [procs.web("web1"), procs.web("web2")]
        for name in ("w1", "w2", "w3"):
            procs.worker(name)
        paradime.webhook_target = f"{webs[0]}/webhooks/paradime"  # where the retry runs report to
        yield server, [f"{url}/webhooks/paradime" for url in webs]
    finally:
        procs.stop()
        server.stop()


def test_twenty_concurrent_copies_of_each_webhook_make_one_triage(crew, paradime, slack):
    server, urls = crew
    transient = [failed_run(paradime, dbt_run(LOCK), schedule=f"lock{i}") for i in range(2)]
    deterministic = [failed_run(paradime, dbt_run(MISSING), schedule=f"missing{i}") for i in range(2)]
    runs = transient + deterministic
    senders = [Sender(url) for url in urls]
    start = threading.Barrier(COPIES * len(runs))

    def copy(run: int, n: int) -> None:
        body = paradime.webhook_payload(run)
        delivery = f"msg_same_{run}" if n % 2 else f"msg_{run}_{n}"
        start.wait()
        senders[n % 2].post(body, delivery)

    threads = [threading.Thread(target=copy, args=(run, n)) for run in runs for n in range(COPIES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    answers: list[Answer] = senders[0].answers + senders[1].answers
    assert len(answers) == COPIES * len(runs)
    for run in runs:
        mine = [a for a in answers if f"_{run}" in a.delivery]
        assert len(mine) == COPIES
        assert sorted(a.status for a in mine) == [200] * (COPIES - 1) + [202], mine
        assert {a.body["status"] for a in mine} == {"queued", "duplicate"}
        assert len({a.body["triage_id"] for a in mine}) == 1  # every duplicate names the one triage

    def finished() -> bool:
        stories = [json.loads(server.client().get(f"bt:story:{r}") or "{}").get("status") for r in runs]
        return stories == ["recovered"] * len(transient) + ["not_retried"] * len(deterministic)

    wait_for("every story is finished", finished, 90)
    retried = sorted(c.variables["scheduleRunId"] for c in paradime.calls_of("retryBoltRun"))
    assert retried == sorted(transient)  # one retry mutation per transient run, none for the others
    for run in runs:
        parents = [m for m in slack.top_level() if f"run_id/{run}" in json.dumps(m.blocks)]
        assert len(parents) == 1, run
    originals = [r for r in triage_records(server.client()) if r.get("triggered_by") == "webhook"
                 and r["run_id"] in runs]
    assert sorted(r["run_id"] for r in originals) == sorted(runs)
