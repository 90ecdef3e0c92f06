"""``triage.decide``: one test per Reason code, in the order of the module's checks, plus the history
that feeds the conditional and repeated-error checks (``triage.history`` signatures in Redis)."""

from __future__ import annotations

import pytest

from triage.config import RetryPolicy
from triage.decide import decide
from triage.history import History, NodeHistory, PastRun, signature
from triage.models import Classification, Command, Decision, Evidence, Failure, Reason

NODE = "model.shop.stg_orders"
TIMEOUT = "000630 (57014): Statement reached its statement or warehouse timeout of 300 second(s) and was canceled."
LOCK = "000625 (57014): Statement 'x' has locked table 'ORDERS' and the number of waiters for this lock exceeds 20"


def failure(verdict: str, *, message: str = LOCK, node: str | None = NODE, category: str = "lock_conflict",
            max_retries: int | None = None, limit: str | None = None, command: str = "dbt run") -> Failure:
    rule = None if verdict == "unknown" else "some_rule"
    cap = 1 if verdict == "conditional" else max_retries
    return Failure(1, command, message, Classification(verdict, category, rule, max_retries=cap, limit=limit),
                   node=node)


def evidence(*failures: Failure, state: str = "ERROR", commands: list[Command] | None = None) -> Evidence:
    return Evidence(run_id=7, state=state, commands=commands or [Command(1, "dbt run", return_code=1)],
                    failures=list(failures))


def past(message: str, *, recovered: bool = False, origin: int = 1) -> PastRun:
    return PastRun(origin, signature(failure("transient", message=message)), recovered)


def run(ev: Evidence, attempts: int = 0, policy: RetryPolicy | None = None, schedule: str | None = "nightly",
        history: dict[str, NodeHistory] | None = None) -> Decision:
    return decide(ev, attempts, policy or RetryPolicy(), schedule, history)


# --------------------------------------------------------------------------- one test per Reason


def test_canceled() -> None:
    assert run(evidence(failure("transient"), state="CANCELED")).code is Reason.CANCELED


def test_succeeded() -> None:
    ok = Evidence(run_id=7, state="SUCCESS", commands=[Command(1, "dbt run", return_code=0)])
    assert run(ok).code is Reason.SUCCEEDED


def test_deterministic_beats_everything_else() -> None:
    d = run(evidence(failure("transient"), failure("deterministic", category="sql_error", node="model.a")))
    assert (d.action, d.code) == ("none", Reason.DETERMINISTIC)


def test_unrecognised_is_not_retried_by_default() -> None:
    assert run(evidence(failure("unknown", category="unknown"))).code is Reason.UNRECOGNISED
    assert run(evidence(failure("unknown", category="unknown")), policy=RetryPolicy(retry_unknown=True)).code \
        is Reason.TRANSIENT


def test_budget_spent() -> None:
    d = run(evidence(failure("transient")), attempts=2)
    assert (d.action, d.code) == ("none", Reason.BUDGET_SPENT)


def test_rule_cap() -> None:
    d = run(evidence(failure("transient", max_retries=1)), attempts=1)
    assert (d.action, d.code) == ("none", Reason.RULE_CAP)


def test_never_recovered() -> None:
    hopeless = {NODE: NodeHistory(NODE, retries=3, recoveries=0, last_verdict="transient")}
    assert run(evidence(failure("transient")), history=hopeless).code is Reason.NEVER_RECOVERED


def test_infra_only_triggers_the_schedule_and_needs_its_name() -> None:
    deps = [Command(1, "dbt deps", return_code=1), Command(2, "dbt run", return_code=-10)]
    ev = evidence(failure("transient", node=None, command="dbt deps", category="connection"), commands=deps)
    d = run(ev)
    assert (d.action, d.code) == ("trigger", Reason.INFRA_ONLY)
    assert run(ev, schedule=None).code is Reason.NO_SCHEDULE


def test_transient_is_retried_with_backoff() -> None:
    d = run(evidence(failure("transient")))
    assert (d.action, d.code, d.attempt, d.backoff_seconds) == ("retry", Reason.TRANSIENT, 1, 60.0)


def test_conditional_gets_one_retry() -> None:
    d = run(evidence(failure("conditional", message=TIMEOUT, category="timeout")))
    assert (d.action, d.code) == ("retry", Reason.CONDITIONAL)
    assert "may be the load or the query" in d.reason
    # ...and only one: the classification caps it at 1.
    assert run(evidence(failure("conditional", message=TIMEOUT, category="timeout")), attempts=1).code \
        is Reason.RULE_CAP


def test_conditional_failing_the_same_way_on_its_retry_gives_up() -> None:
    h = {NODE: NodeHistory(NODE, this_chain=(signature(failure("x", message=TIMEOUT)),))}
    d = run(evidence(failure("conditional", message=TIMEOUT, category="timeout")), attempts=1, history=h)
    assert (d.action, d.code) == ("none", Reason.FAILED_SAME_ON_RETRY)
    assert "failed the same way on retry: likely not transient" in d.reason


def test_conditional_that_failed_the_same_way_in_the_previous_run_is_not_retried() -> None:
    h = {NODE: NodeHistory(NODE, previous_runs=(past(TIMEOUT.replace("300", "301")),))}  # numbers are masked
    d = run(evidence(failure("conditional", message=TIMEOUT, category="timeout")), history=h)
    assert (d.action, d.code) == ("none", Reason.REPEATED_PREVIOUS_RUN)
    # A previous run that a retry recovered does not count against it.
    h = {NODE: NodeHistory(NODE, previous_runs=(past(TIMEOUT, recovered=True),))}
    assert run(evidence(failure("conditional", message=TIMEOUT, category="timeout")), history=h).code \
        is Reason.CONDITIONAL
    # A different error last time does not count either.
    h = {NODE: NodeHistory(NODE, previous_runs=(past("something else entirely"),))}
    assert run(evidence(failure("conditional", message=TIMEOUT, category="timeout")), history=h).code \
        is Reason.CONDITIONAL


def test_a_named_limit_that_repeats_counts_as_deterministic() -> None:
    message = "canceling statement due to statement timeout (statement_timeout)"
    h = {NODE: NodeHistory(NODE, previous_runs=(past(message),))}
    d = run(evidence(failure("conditional", message=message, category="timeout", limit="statement_timeout")),
            history=h)
    assert (d.action, d.code, d.detail) == ("none", Reason.LIMIT_REPEATED, "statement_timeout")
    assert "configured limit (statement_timeout) again" in d.reason


def test_history_beats_text_after_k_runs() -> None:
    three = tuple(past(LOCK, origin=o) for o in (3, 2, 1))
    d = run(evidence(failure("transient")), history={NODE: NodeHistory(NODE, previous_runs=three)})
    assert (d.action, d.code) == ("none", Reason.SAME_ERROR_HISTORY)
    assert d.detail == "failed this way in the last 3 runs"
    # K is configurable, 0 turns it off; fewer runs, a recovery or another error: retried.
    assert run(evidence(failure("transient")), policy=RetryPolicy(same_error_runs=4),
               history={NODE: NodeHistory(NODE, previous_runs=three)}).code is Reason.TRANSIENT
    assert run(evidence(failure("transient")), policy=RetryPolicy(same_error_runs=0),
               history={NODE: NodeHistory(NODE, previous_runs=three)}).code is Reason.TRANSIENT
    recovered = (past(LOCK, origin=3), past(LOCK, origin=2, recovered=True), past(LOCK, origin=1))
    assert run(evidence(failure("transient")), history={NODE: NodeHistory(NODE, previous_runs=recovered)}).code \
        is Reason.TRANSIENT


def test_a_pause_holds_a_retry_and_says_until_when(redis) -> None:
    """``triage.pauses.hold`` turns a decided retry into PAUSED while a matching pause lasts; other
    decisions and other schedules are left alone."""
    import time

    from triage.pauses import Pauses, hold
    from triage.summary import verdict_line

    retry = run(evidence(failure("transient")))
    assert hold(redis, retry, "nightly") is retry, "no pause: unchanged"
    Pauses(redis).pause("night*", time.time() + 3600, "warehouse incident")
    held = hold(redis, retry, "nightly")
    assert held.code is Reason.PAUSED and held.action == "none"
    assert verdict_line(held, 0)[1].startswith("Not retrying: automatic retries paused (warehouse incident) until ")
    assert hold(redis, retry, "hourly") is retry
    not_retried = run(evidence(failure("deterministic")))
    assert hold(redis, not_retried, "nightly") is not_retried
    assert Pauses(redis).resume(None) == ["night*"] and hold(redis, retry, "nightly") is retry


def test_every_reason_has_a_test() -> None:
    """A new Reason needs a test above (and its sentence in triage.summary)."""
    covered = {
        Reason.CANCELED: test_canceled, Reason.SUCCEEDED: test_succeeded,
        Reason.DETERMINISTIC: test_deterministic_beats_everything_else,
        Reason.UNRECOGNISED: test_unrecognised_is_not_retried_by_default, Reason.BUDGET_SPENT: test_budget_spent,
        Reason.RULE_CAP: test_rule_cap, Reason.NEVER_RECOVERED: test_never_recovered,
        Reason.NO_SCHEDULE: test_infra_only_triggers_the_schedule_and_needs_its_name,
        Reason.INFRA_ONLY: test_infra_only_triggers_the_schedule_and_needs_its_name,
        Reason.TRANSIENT: test_transient_is_retried_with_backoff, Reason.CONDITIONAL: test_conditional_gets_one_retry,
        Reason.FAILED_SAME_ON_RETRY: test_conditional_failing_the_same_way_on_its_retry_gives_up,
        Reason.REPEATED_PREVIOUS_RUN: test_conditional_that_failed_the_same_way_in_the_previous_run_is_not_retried,
        Reason.LIMIT_REPEATED: test_a_named_limit_that_repeats_counts_as_deterministic,
        Reason.SAME_ERROR_HISTORY: test_history_beats_text_after_k_runs,
        Reason.PAUSED: test_a_pause_holds_a_retry_and_says_until_when,
    }
    assert set(covered) == set(Reason)


# --------------------------------------------------------------------------- the history behind it


@pytest.fixture
def history(redis) -> History:
    return History(redis)


def test_history_tells_previous_runs_from_this_chain(history: History) -> None:
    f = failure("conditional", message=TIMEOUT, category="timeout")
    history.record_failures(100, [f], schedule="nightly", origin=100)  # the schedule's run 100 ...
    history.record_failures(101, [f], schedule="nightly", origin=100)  # ... and its retry, 101
    history.record_recovery(102, [NODE], schedule="nightly", origin=100)  # retry 102 passed
    history.record_failures(200, [f], schedule="nightly", origin=200)  # the next run of the schedule
    h = history.get([NODE], schedule="nightly", origin=200)[NODE]
    assert h.this_chain == (signature(f),)
    assert h.previous_runs == (PastRun(100, signature(f), True),)
    h = history.get([NODE], schedule="nightly", origin=300)[NODE]
    assert [r.origin for r in h.previous_runs] == [200, 100] and h.this_chain == ()
    assert history.get([NODE], schedule="hourly", origin=300)[NODE].previous_runs == ()  # per schedule


# --------------------------------------------------------------------------- what Slack says


def test_slack_says_what_history_showed() -> None:
    from triage.summary import verdict_line

    three = tuple(past(LOCK, origin=o) for o in (3, 2, 1))
    ev = evidence(failure("transient"))
    status, sentence = verdict_line(run(ev, history={NODE: NodeHistory(NODE, previous_runs=three)}), 0, evidence=ev)
    assert status == "not_retried" and sentence.endswith("and failed this way in the last 3 runs")

    ev = evidence(failure("conditional", message=TIMEOUT, category="timeout"))
    h = {NODE: NodeHistory(NODE, this_chain=(signature(ev.failures[0]),))}
    status, sentence = verdict_line(run(ev, attempts=1, history=h), 1, evidence=ev)
    assert status == "gave_up" and "failed the same way on retry: likely not transient" in sentence

    status, sentence = verdict_line(run(ev), 0, evidence=ev)
    assert status == "retrying" and "one retry only: this may be the load or the query itself" in sentence


# --------------------------------------------------------------------------- retry caps by evidence


def _cls(verdict: str, evidence: str, max_retries: int | None = None) -> Classification:
    return Classification(verdict, "connection", "r", max_retries=max_retries, evidence=evidence)


def test_weak_evidence_gets_one_retry_a_vendor_code_its_rule_cap() -> None:
    from triage.decide import retry_cap

    assert retry_cap(_cls("transient", "vendor_code")) is None  # the chain's budget
    assert retry_cap(_cls("transient", "vendor_code", 2)) == 2
    assert retry_cap(_cls("transient", "generic_code")) == 1  # an HTTP 503, a bare SQLSTATE
    assert retry_cap(_cls("transient", "phrase", 2)) == 1
    assert retry_cap(_cls("transient", "phrase", 0)) == 0
    assert retry_cap(_cls("conditional", "vendor_code")) == 1


def test_a_transient_phrase_that_failed_its_one_retry_is_given_up() -> None:
    f = Failure(1, "dbt run", "connection reset by peer", _cls("transient", "phrase"), node="model.p.m")
    d = run(evidence(f), attempts=1)
    assert (d.action, d.code) == ("none", Reason.RULE_CAP)
    assert run(evidence(f), attempts=0).action == "retry"
