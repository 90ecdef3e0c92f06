"""Flaky-node memory in Redis, and how it feeds the decision."""

from __future__ import annotations

import yaml

from tests.test_pipeline import LOCK, MISSING, dbt_run, failed_run, story
from triage.config import RetryPolicy
from triage.decide import decide
from triage.history import History, NodeHistory
from triage.models import Classification, Command, Evidence, Failure
from workers import context

NODE = "model.shop.stg_orders"
ODD = "Something odd happened that no rule knows about"


def failure(verdict: str, node: str = NODE, message: str = "x") -> Failure:
    return Failure(1, "dbt run", message, Classification(verdict, "unknown" if verdict == "unknown" else "timeout",
                                                         "r" if verdict != "unknown" else None), node=node)


def evidence(*failures: Failure) -> Evidence:
    return Evidence(run_id=1, state="ERROR", commands=[Command(1, "dbt run", return_code=1)], failures=list(failures))


def test_counts_are_per_run_and_idempotent(redis):
    h = History(redis)
    h.record_failures(100, [failure("transient")])
    h.record_failures(100, [failure("transient")])  # the same run again (redelivery)
    h.record_retry(100, [NODE])
    h.record_retry(100, [NODE])
    h.record_recovery(101, [NODE])
    got = h.get([NODE, "model.shop.never_seen"])
    assert got[NODE] == NodeHistory(NODE, failures=1, transient=1, retries=1, recoveries=1,
                                    last_verdict="transient", last_run=100,
                                    previous_runs=got[NODE].previous_runs)
    assert len(got[NODE].previous_runs) == 1  # one mark per run, however often it was delivered
    assert got["model.shop.never_seen"].failures == 0
    assert [n.node for n in h.recent()] == [NODE]


def test_flakiness_needs_repeated_recoveries_and_no_deterministic_last_failure():
    assert not NodeHistory(NODE, retries=1, recoveries=1).is_flaky
    assert NodeHistory(NODE, retries=3, recoveries=2, last_verdict="transient").is_flaky
    assert not NodeHistory(NODE, retries=5, recoveries=2).is_flaky  # score 0.4
    assert not NodeHistory(NODE, retries=3, recoveries=3, last_verdict="deterministic").is_flaky


def test_unknown_failure_of_a_flaky_node_is_retried_only_when_enabled():
    flaky = {NODE: NodeHistory(NODE, retries=4, recoveries=3, last_verdict="transient")}
    ev = evidence(failure("unknown"))
    assert decide(ev, 0, RetryPolicy(), "s", flaky).action == "none"
    d = decide(ev, 0, RetryPolicy(retry_unknown_if_flaky=True), "s", flaky)
    assert d.action == "retry" and "stg_orders recovered on 3 of 4 retries" in d.reason
    other = evidence(failure("unknown"), failure("unknown", node="model.shop.other"))
    assert decide(other, 0, RetryPolicy(retry_unknown_if_flaky=True), "s", flaky).action == "none"


def test_a_node_whose_retries_never_help_is_not_retried_again():
    hopeless = {NODE: NodeHistory(NODE, retries=3, recoveries=0, last_verdict="transient")}
    d = decide(evidence(failure("transient")), 0, RetryPolicy(), "s", hopeless)
    assert d.action == "none" and "retrying never helped: stg_orders" in d.reason
    assert decide(evidence(failure("transient")), 0, RetryPolicy(give_up_after_unrecovered=0), "s",
                  hopeless).action == "retry"


def test_recoveries_on_retry_make_a_node_flaky_end_to_end(service, paradime, redis):
    for _ in range(2):
        run_id = failed_run(paradime, dbt_run(LOCK))
        paradime.deliver(run_id)
        service.drain(until=lambda r=run_id: story(service, r).get("status") == "recovered")
    h = History(redis).get([NODE])[NODE]
    assert (h.failures, h.retries, h.recoveries) == (2, 2, 2) and h.is_flaky

    # Now an unrecognised failure of that node: retried because it is known to be flaky (when enabled).
    _enable_flaky_retries()
    run_id = failed_run(paradime, dbt_run(ODD))
    paradime.deliver(run_id)
    service.drain(until=lambda: story(service, run_id).get("status") == "recovered")
    assert [c.variables["scheduleRunId"] for c in paradime.calls_of("retryBoltRun")][-1] == run_id


def test_a_deterministic_failure_resets_trust(service, paradime, redis):
    History(redis).record_retry(1, [NODE])
    History(redis).record_retry(2, [NODE])
    History(redis).record_recovery(3, [NODE])
    History(redis).record_recovery(4, [NODE])
    run_id = failed_run(paradime, dbt_run(MISSING))
    paradime.deliver(run_id)
    service.drain()
    assert not History(redis).get([NODE])[NODE].is_flaky

    _enable_flaky_retries()
    run_id = failed_run(paradime, dbt_run(ODD))
    paradime.deliver(run_id)
    service.drain()
    assert story(service, run_id)["status"] == "not_retried"
    assert paradime.calls_of("retryBoltRun") == []


def _enable_flaky_retries() -> None:
    import os
    from pathlib import Path

    path = Path(os.environ["TRIAGE_CONFIG"])
    doc = yaml.safe_load(path.read_text())
    doc["retry"]["retry_unknown_if_flaky"] = True
    path.write_text(yaml.safe_dump(doc))
    context.current.cache_clear()
