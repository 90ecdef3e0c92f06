"""Slack delivery over the simulator: routing, mentions, threads, storms, repeats, pacing, 429s."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import yaml

from tests.test_pipeline import LOCK, MISSING, dbt_run, failed_run, story
from workers import context

OUTAGE = "390189 (08001): The service is temporarily unavailable. Please try again later."
MANIFEST = {
    "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
    "nodes": {"model.shop.stg_orders": {"unique_id": "model.shop.stg_orders", "resource_type": "model",
                                        "tags": ["pii"], "config": {"meta": {"owner": "analytics_team"}},
                                        "original_file_path": "models/stg_orders.sql"}},
    "groups": {},
}


def set_policy(**slack) -> None:
    path = Path(os.environ["TRIAGE_CONFIG"])
    doc = yaml.safe_load(path.read_text())
    doc["slack"].update(slack)
    path.write_text(yaml.safe_dump(doc))
    context.current.cache_clear()


def with_manifest(command):
    command.artifacts["target/manifest.json"] = MANIFEST
    return command


def texts(messages) -> str:
    return json.dumps([[m.text, m.blocks] for m in messages])


def test_routes_pick_the_channel_by_schedule_or_tag(service, paradime, slack):
    set_policy(routes=[{"schedule": "finance_*", "channel": "#finance-data"}, {"tag": "pii", "channel": "#gov"}])
    fin = failed_run(paradime, dbt_run(MISSING), schedule="finance_daily")
    pii = failed_run(paradime, with_manifest(dbt_run(MISSING)), schedule="shop_daily")
    other = failed_run(paradime, dbt_run(MISSING, nodes=[("model.shop.other", "error", MISSING)]),
                       schedule="shop_hourly")
    for run_id in (fin, pii, other):
        paradime.deliver(run_id)
    service.drain()
    channel_of = {m.text.split(" — ")[0].split()[-1]: m.channel for m in slack.top_level()}
    assert channel_of == {"finance_daily": "#finance-data", "shop_daily": "#gov", "shop_hourly": "#data-alerts"}


def test_owners_are_mentioned_only_when_a_human_is_needed(service, paradime, slack):
    set_policy(owners={"analytics_team": "S0ANALYTIC"}, fallback_mentions=["U0ONCALL1"])
    retried = failed_run(paradime, with_manifest(dbt_run(LOCK)), schedule="a_hourly")
    broken = failed_run(paradime, with_manifest(dbt_run(MISSING)), schedule="b_daily")
    unowned = failed_run(paradime, dbt_run(MISSING, nodes=[("model.shop.other", "error", MISSING)]),
                         schedule="c_daily")
    for run_id in (retried, broken, unowned):
        paradime.deliver(run_id)
    service.drain(until=lambda: story(service, retried).get("status") == "recovered")
    by_schedule = {m.text.split(" — ")[0].split()[-1]: m for m in slack.top_level()}
    assert "<!subteam^S0ANALYTIC>" not in texts([by_schedule["a_hourly"]]), "never ping for an automatic retry"
    assert "<!subteam^S0ANALYTIC>" in by_schedule["b_daily"].text
    assert "<!subteam^S0ANALYTIC>" in json.dumps(by_schedule["b_daily"].blocks)
    assert "<@U0ONCALL1>" in by_schedule["c_daily"].text


def test_a_storm_becomes_one_incident_message_updated_as_runs_recover(service, paradime, slack):
    set_policy(storm={"window_seconds": 900, "min_schedules": 3, "hold_seconds": 2})
    runs = [failed_run(paradime, dbt_run(OUTAGE, nodes=[(f"model.x.m{i}", "error", OUTAGE)]), schedule=f"s{i}")
            for i in range(4)]
    for run_id in runs:
        paradime.deliver(run_id)
    service.drain(until=lambda: all(story(service, r).get("status") == "recovered" for r in runs))
    top = slack.top_level()
    # The first alerts were held (nobody needs to act on a retry) and folded into the incident.
    assert len(top) == 1, texts(top)
    incident = top[0]
    assert incident.text.startswith(":rotating_light:")
    assert slack.replies(incident.ts) == [], "no per-run chatter under the incident"
    assert all(f"run_id/{r}" in json.dumps(incident.blocks) for r in runs)
    assert incident.history, "updated as runs recover"
    assert "4 recovered" in incident.text or "4 recovered" in json.dumps(incident.blocks)
    assert len(paradime.calls_of("retryBoltRun")) == 4


def test_the_same_deterministic_failure_again_is_a_reply_not_a_new_alert(service, paradime, slack):
    first = failed_run(paradime, dbt_run(MISSING))
    paradime.deliver(first)
    service.drain()
    second = failed_run(paradime, dbt_run(MISSING))
    paradime.deliver(second)
    service.drain()
    [alert] = slack.top_level()
    [reply] = slack.replies(alert.ts)
    assert f"run_id/{second}" in json.dumps(reply.blocks) + reply.text
    assert story(service, second)["repeat_of"] == first
    other = failed_run(paradime, dbt_run(MISSING, nodes=[("model.shop.other", "error", MISSING)]))
    paradime.deliver(other)
    service.drain()
    assert len(slack.top_level()) == 2, "a different failure is a new alert"


def test_messages_are_paced_per_channel(service, paradime, slack):
    set_policy(per_channel_interval_seconds=1)
    slack.rate_limit(per_second=1)
    runs = [failed_run(paradime, dbt_run(MISSING, nodes=[(f"model.x.m{i}", "error", MISSING)]),
                       schedule=f"s{i}") for i in range(3)]
    for run_id in runs:
        paradime.deliver(run_id)
    service.drain(until=lambda: len(slack.top_level()) == 3, timeout=20)
    stamps = sorted(m.at for m in slack.top_level())
    assert stamps[2] - stamps[0] >= 1.9
    assert not [r for r in slack.requests_log if r.status == 429]


def test_a_rate_limited_slack_does_not_hold_up_triage(service, paradime, slack):
    slack.fail_next(times=3, status=429, retry_after=5)  # sleeping on it would take 15 s
    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.deliver(run_id)
    started = time.time()
    service.drain(until=lambda: len(paradime.calls_of("retryBoltRun")) == 1, idle=False)
    assert time.time() - started < 4, "the retry went out while Slack deliveries waited"
    service.drain(until=lambda: story(service, run_id).get("status") == "recovered"
                  and len(slack.top_level()) == 1, timeout=40)
    [parent] = slack.top_level()
    assert "Recovered on retry 1" in parent.text


def test_recovery_before_the_first_post_still_ends_right(service, paradime, slack):
    """Slack down while the run is triaged, retried and recovers: the parent, once posted, ends up right."""
    slack.fail_next(times=2, status=429, retry_after=2)
    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.deliver(run_id)
    service.drain(until=lambda: story(service, run_id).get("status") == "recovered"
                  and bool(slack.top_level()) and "Recovered" in slack.top_level()[0].text, timeout=30)


def test_without_a_storm_a_held_alert_still_goes_out(service, paradime, slack):
    set_policy(storm={"window_seconds": 900, "min_schedules": 3, "hold_seconds": 1})
    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.deliver(run_id)
    service.drain(until=lambda: story(service, run_id).get("status") == "recovered" and len(slack.top_level()) == 1)
    [parent] = slack.top_level()
    assert "Recovered on retry 1" in parent.text


def test_could_not_triage_pings_the_fallback_mentions(service, paradime, slack):
    set_policy(fallback_mentions=["S0ONCALL1"])
    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.fail_next("boltRunStatus", times=100, kind="http_502")
    paradime.deliver(run_id)
    service.drain(timeout=30)
    [note] = slack.top_level()
    assert f"Could not triage run {run_id}" in note.text
    assert "cc <!subteam^S0ONCALL1>" in note.text and "cc <!subteam^S0ONCALL1>" in json.dumps(note.blocks)
