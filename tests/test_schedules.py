"""Which schedule a run belongs to when the documented payload (``api_url`` and ``commands`` only) does
not say: the ``?schedule=`` hint, the Bolt API (``triage.schedules``), and the owner as a mention."""

from __future__ import annotations

from tests.test_pipeline import DEPS_LOG, _triage_of, dbt_run, failed_run, ok, story
from triage.config import SlackSettings
from triage.errors import UpstreamError
from triage.models import Classification, Failure
from triage.routing import mentions_for
from triage.schedules import ScheduleDirectory
from triage.sim.paradime import SimCommand


class FakeBolt:
    def __init__(self, latest: dict[str, int | None], owners: dict[str, str] | None = None):
        self.latest, self.owners, self.calls = latest, owners or {}, []

    def list_schedules(self, offset: int, limit: int):
        self.calls.append(("list", offset))
        names = sorted(self.latest)
        return [(n, self.owners.get(n)) for n in names[offset:offset + limit]], len(names)

    def schedule(self, name: str):
        self.calls.append(("schedule", name))
        if name == "broken":
            raise UpstreamError("Paradime boltScheduleName: GraphQL error")
        return self.latest[name], self.owners.get(name)


def test_the_run_is_matched_to_the_schedule_whose_latest_run_it_is_and_answers_are_cached():
    now = [0.0]
    bolt = FakeBolt({"hourly": 40, "nightly": 42}, {"nightly": "ana@shop.io"})
    directory = ScheduleDirectory(bolt, ttl=60, clock=lambda: now[0])
    found = directory.of_run(42)
    assert (found.name, found.owner) == ("nightly", "ana@shop.io")
    calls = len(bolt.calls)
    assert directory.of_run(42).name == "nightly" and len(bolt.calls) == calls  # cached
    assert directory.of_run(41) is None  # nobody's latest run
    now[0] = 61.0
    bolt.latest["hourly"] = 43
    assert directory.of_run(43).name == "hourly"  # stale answers are asked again


def test_paradime_errors_leave_the_run_unnamed():
    assert ScheduleDirectory(FakeBolt({"broken": None})).of_run(7) is None
    assert ScheduleDirectory(FakeBolt({"broken": None})).named("broken").owner is None


def test_the_schedule_owner_is_the_mention_fallback_through_slack_owners():
    settings = SlackSettings(owners={"ana@shop.io": "U1", "data-team": "S2"}, fallback_mentions=("S9",))
    f = Failure(1, "dbt run", "x", Classification("deterministic", "sql_error", "r"), node="model.a",
                schedule_owner="ana@shop.io")
    assert mentions_for(settings, "not_retried", [f]) == ["U1"]
    owned = Failure(1, "dbt run", "x", Classification("deterministic", "sql_error", "r"), node="model.a",
                    owner="data-team", schedule_owner="ana@shop.io")
    assert mentions_for(settings, "not_retried", [owned]) == ["S2"]  # the node's own owner comes first
    nobody = Failure(1, "dbt run", "x", Classification("deterministic", "sql_error", "r"), node="model.a",
                     schedule_owner="someone@else.io")
    assert mentions_for(settings, "not_retried", [nobody]) == ["S9"]


def test_documented_payload_the_schedule_is_asked_of_bolt(service, paradime, slack):
    """Only ``api_url`` and ``commands``: the header names the schedule and a failed dbt deps is triggered."""
    paradime.include_run_fields = False
    run_id = paradime.add_run("nightly", [ok("git clone"), SimCommand("dbt deps", 2, stdout=DEPS_LOG),
                                          SimCommand("dbt run", -10)])
    assert "schedule_name" not in paradime.webhook_payload(run_id)
    paradime.deliver(run_id)
    service.drain(until=lambda: story(service, run_id).get("status") == "recovered")
    [trigger] = paradime.calls_of("triggerBoltRun")
    assert trigger.variables["scheduleName"] == "nightly"
    assert paradime.calls_of("boltScheduleName") and story(service, run_id)["schedule_name"] == "nightly"
    assert "nightly" in slack.top_level()[0].text


def test_a_schedule_hint_on_the_webhook_url_names_the_run(service, paradime):
    paradime.include_run_fields = False
    run_id = failed_run(paradime, dbt_run("Something odd that no rule knows"), schedule="daily_orders")
    resp = paradime.deliver(run_id, target=service.webhook_url + "?schedule=orders%20daily")
    assert resp.status_code == 202, resp.text
    service.drain()
    assert story(service, run_id)["schedule_name"] == "orders daily"
    assert paradime.calls_of("listBoltSchedules") == []  # the hint spared the lookup
    assert _triage_of(service, run_id)["action"] == "none"


def test_a_schedule_hint_must_be_short_printable_text(service, paradime):
    run_id = failed_run(paradime, dbt_run("x"))
    resp = paradime.deliver(run_id, target=service.webhook_url + "?schedule=" + "a" * 201)
    assert resp.status_code == 400 and "schedule" in resp.json()["message"]
