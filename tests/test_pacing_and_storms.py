"""Unit tests of the Slack pacer, storm incidents and repeats, on a fake clock (no sleeping)."""

from __future__ import annotations

from triage.incidents import Storms
from triage.models import Classification, Failure
from triage.repeats import Repeats, failure_signature
from triage.slack import Pacer


class FakeClock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


def test_the_pacer_hands_out_one_slot_per_interval_in_order(redis):
    clock = FakeClock()
    pacer = Pacer(redis, 1.0, clock=clock, sleep=clock.sleep)
    assert [pacer.reserve("C1") for _ in range(3)] == [0, 1.0, 2.0]  # queued in order, one a second
    assert pacer.reserve("C2") == 0  # channels are paced apart
    clock.now += 0.5
    assert pacer.reserve("C1") == 2.5  # after the three already handed out
    clock.now += 10
    assert pacer.reserve("C1") == 0  # an idle channel sends at once


def test_settle_sleeps_out_only_what_is_left_of_the_interval(redis):
    clock = FakeClock()
    pacer = Pacer(redis, 1.0, clock=clock, sleep=clock.sleep)
    pacer.settle("C1")  # never sent: no wait
    pacer.sent("C1")
    clock.now += 0.7
    pacer.settle("C1")
    assert clock.slept == [0.3]
    clock.now += 5
    pacer.settle("C1")
    assert clock.slept == [0.3]


def test_a_storm_starts_at_the_threshold_and_takes_in_the_earlier_runs(redis):
    clock = FakeClock()
    storms = Storms(redis, window_seconds=300, min_schedules=3, clock=clock)
    assert storms.join("C1", "connection", "snowflake", "orders", 1) is None
    clock.now += 10
    assert storms.join("C1", "connection", "snowflake", "orders", 2) is None  # same schedule: no storm
    clock.now += 10
    assert storms.join("C1", "connection", "snowflake", "finance", 3) is None
    clock.now += 10
    incident = storms.join("C1", "connection", "snowflake", "marketing", 4)
    assert incident is not None and incident.category == "connection" and incident.adapter == "snowflake"
    assert [origin for _, origin in incident.members] == [1, 2, 3, 4]
    later = storms.join("C1", "connection", "snowflake", "sales", 5)
    assert later.key == incident.key and [o for _, o in later.members][-1] == 5  # one incident per storm
    assert storms.join("C2", "connection", "snowflake", "x", 6) is None  # another channel: its own window


def test_failures_outside_the_window_do_not_make_a_storm(redis):
    clock = FakeClock()
    storms = Storms(redis, window_seconds=60, min_schedules=2, clock=clock)
    storms.join("C1", "timeout", None, "orders", 1)
    clock.now += 61
    assert storms.join("C1", "timeout", None, "finance", 2) is None


def test_an_incident_message_is_claimed_once_and_remembers_where_it_went(redis):
    storms = Storms(redis, 60, 2)
    assert storms.posted_at("incident:C1:x:1") is None
    assert storms.claim_post("incident:C1:x:1") is True
    assert storms.claim_post("incident:C1:x:1") is False
    storms.record_post("incident:C1:x:1", "C1", "17.1")
    assert storms.posted_at("incident:C1:x:1").ts == "17.1"


def _failure(node: str, rule: str) -> Failure:
    return Failure(command_id=1, command="dbt run", message="x", node=node,
                   classification=Classification("deterministic", "sql_error", rule))


def test_the_same_failure_again_is_a_repeat_of_the_first_run(redis):
    repeats = Repeats(redis, interval_seconds=3600)
    sig = failure_signature([_failure("model.p.a", "sql_compilation")])
    assert sig == failure_signature([_failure("model.p.a", "sql_compilation")] * 2)  # order and copies ignored
    assert sig != failure_signature([_failure("model.p.b", "sql_compilation")])
    assert repeats.seen("orders", sig, 10) is None  # the first: remembered
    assert repeats.seen("orders", sig, 10) is None  # the same run again (redelivery) is no repeat
    assert repeats.seen("orders", sig, 11) == (10, 2)
    assert repeats.seen("orders", sig, 12) == (10, 3)
    assert repeats.seen("finance", sig, 13) is None  # another schedule
    assert Repeats(redis, 0).seen("orders", sig, 14) is None  # turned off
