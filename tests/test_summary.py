"""The Slack messages: plain-word verdicts, what a phone shows, and Slack's limits on huge runs.

Pure rendering: no Redis, no simulators (except ``check_message``, Slack's rules as a function),
plus ``triage slack-preview`` run as a user runs it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk.models.blocks import Block

from tests.conftest import REPO, SAMPLES
from triage.classify import RuleSet
from triage.explain import explain
from triage.models import Classification, Command, Decision, Evidence, Failure, Reason
from triage.sim.slack import check_message
from triage.summary import (
    IncidentRun,
    SlackMessage,
    _ordinal,
    incident_message,
    preview,
    repeat_message,
    run_link,
    simple_message,
    triage_message,
    verdict_line,
)

BIG_SAMPLE = SAMPLES / "2moonyo__global-trade-intelligence-pipeline__run_results.json"
BIG_MANIFEST = SAMPLES / "2moonyo__global-trade-intelligence-pipeline__manifest.json"
DATA_TESTS_SAMPLE = SAMPLES / "Nikhil201716__05-AI-Augmented-Data-Quality-Validation-Framework__run_results.json"
T0 = datetime(2025, 3, 1, 6, 0, tzinfo=timezone.utc)
LOCK = Classification("transient", "lock_conflict", "snowflake_lock_waiters", "Lock wait timeout exceeded")
MISSING = Classification("deterministic", "missing_object", "snowflake_missing_object",
                         "Object 'RAW.ORDERS' does not exist or not authorized.")
DATA_TEST = Classification("deterministic", "data_test", "dbt_test_failure",
                           "Got 12 results, configured to fail if != 0")
SQL = Classification("deterministic", "sql_error", "sql_syntax_error", "syntax error at or near 'form'")
UNKNOWN = Classification("unknown", "unknown", None, "something odd happened")
DEPS = Classification("transient", "connection", "dbt_deps_download_error", "Connection to hub.getdbt.com timed out")


def node(name: str, c: Classification, kind: str = "model", **kw) -> Failure:
    return Failure(command_id=3, command="dbt run", message=c.excerpt, classification=c, node=f"{kind}.shop.{name}",
                   resource_type=kind, status="fail" if c.category == "data_test" else "error", **kw)


def evidence(*failures: Failure, adapter: str | None = "snowflake", run_id: int = 15500, **kw) -> Evidence:
    commands = [Command(1, "git clone", 0, T0, T0 + timedelta(seconds=5)),
                Command(2, "dbt deps", 0, T0 + timedelta(seconds=5), T0 + timedelta(seconds=20)),
                Command(3, "dbt run", 1, T0 + timedelta(seconds=20), T0 + timedelta(seconds=252))]
    return Evidence(run_id=run_id, state="ERROR", commands=commands, failures=list(failures), adapter=adapter, **kw)


def lock_evidence() -> Evidence:
    return evidence(*(node(n, LOCK) for n in ("stg_orders", "stg_payments", "fct_orders")))


RETRY = Decision("retry", "transient: 3× lock_conflict", 1, 120, code=Reason.TRANSIENT, detail="3× lock_conflict")
BUDGET = Decision("none", "retry budget spent: 2 automatic retries already made (retry.max_attempts: 2)",
                  code=Reason.BUDGET_SPENT)


def valid(message: SlackMessage) -> None:
    """What Slack would accept: the simulator's rules, and slack-sdk's own models (to_dict validates)."""
    assert check_message(message.text, message.blocks) is None
    assert [b.to_dict() for b in Block.parse_all(message.blocks)] == message.blocks
    assert len(message.blocks) <= 50 and "\n" not in message.text
    for b in message.blocks:
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= 3000
        if b["type"] == "header":
            assert len(b["text"]["text"]) <= 150 and b["text"]["emoji"] is True


def texts(message: SlackMessage) -> list[str]:
    out = []
    for b in message.blocks:
        if "text" in b:
            out.append(b["text"]["text"])
        out += [e["text"] for e in b.get("elements", [])]
    return out


# --- the verdict in one sentence ---------------------------------------------------------------------

def test_retry_sentence_names_count_category_and_warehouse():
    assert verdict_line(RETRY, 0, evidence=lock_evidence()) == (
        "retrying", "Retrying in 2 min: 3 models hit a Snowflake lock conflict")


def test_data_tests_and_missing_objects_are_not_retried():
    ev = evidence(node("not_null_orders_id.a1b2c3", DATA_TEST, "test"),
                  node("unique_orders_id.d4e5", DATA_TEST, "test"))
    assert verdict_line(Decision("none", "2 failures will fail again (2× data_test)"), 0, evidence=ev) == (
        "not_retried", "Not retrying: 2 data tests failed")
    ev = evidence(node("stg_orders", MISSING))
    assert verdict_line(Decision("none", "1 failure will fail again (1× missing_object)"), 0, evidence=ev) == (
        "not_retried", "Not retrying: 1 model references a missing table or view")


def test_only_dbt_deps_failed_triggers_the_schedule_again():
    ev = evidence(Failure(2, "dbt deps", DEPS.excerpt, DEPS), adapter=None)
    decision = Decision("trigger", "only infrastructure commands failed (1× connection); triggering schedule "
                                   "'hourly_orders' again", 1, 60)
    assert verdict_line(decision, 0, evidence=ev) == (
        "retrying", "Triggering the schedule again in 1 min: `dbt deps` could not reach the package hub")


def test_a_retry_run_that_fails_again():
    assert verdict_line(BUDGET, 2, evidence=lock_evidence()) == (
        "gave_up", "Failed again on retry 2 — not retrying: retry budget spent")
    assert verdict_line(BUDGET, 2) == ("gave_up", "Failed again on retry 2 — not retrying: retry budget spent")
    ev = evidence(node("stg_orders", MISSING))
    assert verdict_line(Decision("none", "1 failure will fail again"), 1, evidence=ev)[1] == (
        "Failed again on retry 1 — not retrying: 1 model references a missing table or view")
    assert verdict_line(Decision("retry", "transient: 1× lock_conflict", 2, 0), 1,
                        evidence=evidence(node("stg_orders", LOCK)))[1] == (
        "Failed again on retry 1 — retrying now: 1 model hit a Snowflake lock conflict")


@pytest.mark.parametrize(("failures", "adapter", "decision", "sentence"), [
    ([node("a", LOCK), node("b", LOCK, "snapshot"), node("c", LOCK)], "snowflake", RETRY,
     "Retrying in 2 min: 2 models and 1 snapshot hit a Snowflake lock conflict"),
    ([node("a", LOCK)], None, Decision("retry", "transient", 1, 30),
     "Retrying in 30s: 1 model hit a warehouse lock conflict"),
    ([node("a", LOCK)], "athena", Decision("retry", "transient", 1, 0),
     "Retrying now: 1 model hit an Athena lock conflict"),
    ([node("a", Classification("transient", "timeout", "bigquery_job_timeout")),
      node("b", Classification("transient", "rate_limit", "bigquery_rate_limit"))], "bigquery",
     Decision("retry", "transient", 1, 300),
     "Retrying in 5 min: 1 model hit a BigQuery rate limit; 1 model timed out in BigQuery"),
    # a deterministic failure decides, whatever else failed beside it
    ([node("a", LOCK), node("b", SQL), node("c", SQL)], "postgres", Decision("none", "2 failures will fail again"),
     "Not retrying: 2 models have SQL errors"),
    ([node("a", SQL), node("b", MISSING), node("t", DATA_TEST, "test"), node("a2", MISSING)], "redshift",
     Decision("none", "4 failures will fail again"),
     "Not retrying: 2 models reference a missing table or view; 1 data test failed (+1 more category)"),
    ([node("a", UNKNOWN)], "databricks",
     Decision("none", "1 failure not recognised; a human should look", code=Reason.UNRECOGNISED),
     "Not retrying: 1 model failed with an error no rule recognises"),
    ([node("a", Classification("deterministic", "resource_limit", "snowflake_resource_monitor"))], "snowflake",
     Decision("none", "1 failure will fail again"), "Not retrying: 1 model exceeded a Snowflake resource limit"),
    ([node("a", LOCK)], "snowflake", Decision("none", "this kind of failure is worth only 2 retries, and 2 retries "
                                                      "already failed"),
     "Not retrying: this kind of failure is worth only 2 retries, and 2 retries already failed"),
])
def test_sentences_for_category_mixes(failures, adapter, decision, sentence):
    assert verdict_line(decision, 0, evidence=evidence(*failures, adapter=adapter))[1] == sentence


def test_without_evidence_the_reason_is_used():
    assert verdict_line(Decision("retry", "transient: 1× lock_conflict", 1, 0, code=Reason.TRANSIENT,
                                 detail="1× lock_conflict"), 0) == ("retrying", "Retrying now: 1× lock_conflict")
    assert verdict_line(Decision("none", "the run was cancelled; not retrying a cancelled run"), 0) == (
        "not_retried", "Not retrying: the run was cancelled; not retrying a cancelled run")


# --- the alert ---------------------------------------------------------------------------------------

def test_first_alert_header_context_verdict_and_fallback():
    message = triage_message("hourly_orders", lock_evidence(), RETRY, 0, branch="main", commit="abc1234def5678")
    valid(message)
    assert message.text == (":repeat: hourly_orders — run 15500: "
                            "Retrying in 2 min: 3 models hit a Snowflake lock conflict")
    header, context, verdict, why = message.blocks[:4]
    assert header["text"]["text"] == ":repeat: hourly_orders"
    assert context["elements"][0]["text"] == (f"{run_link(15500)} · branch `main` @ `abc1234` · 4m 12s · "
                                              "failed: `dbt run` · Snowflake")
    assert verdict["text"]["text"] == "*Retrying in 2 min: 3 models hit a Snowflake lock conflict*"
    assert why["elements"][0]["text"] == "why: transient: 3× lock_conflict · next: retry 1"


def test_a_retry_run_links_its_origin():
    ev = evidence(node("stg_orders", MISSING), run_id=15501)
    message = triage_message(None, ev, Decision("none", "1 failure will fail again"), 1, origin=15500)
    valid(message)
    assert message.blocks[0]["text"]["text"] == ":x: Bolt run"
    assert f"{run_link(15501)} · retry 1 of {run_link(15500)}" in message.blocks[1]["elements"][0]["text"]


def test_status_override_rerenders_the_parent_without_a_decision():
    """How the worker updates the first message when the story ends (recovered, gave up)."""
    message = triage_message("hourly_orders", lock_evidence(), None, 0, branch="main",
                             status_override=("recovered", "Recovered on retry 1 — flaky: stg_orders"))
    valid(message)
    assert message.blocks[0]["text"]["text"] == ":white_check_mark: hourly_orders"
    assert message.text == ":white_check_mark: hourly_orders — run 15500: Recovered on retry 1 — flaky: stg_orders"
    assert not any(t.startswith("why:") for t in texts(message))
    with pytest.raises(ValueError):
        triage_message("x", lock_evidence(), None, 0)


def test_failures_grouped_by_category_with_owner_rows_and_excerpt():
    ev = evidence(node("stg_orders", MISSING, owner="ana@shop.io"),
                  node("not_null_orders_id.a1b2c3d4e5", DATA_TEST, "test", failures=12, owner="@data-eng"),
                  node("accepted_values_status.f6", DATA_TEST, "test", failures=1),
                  node("fct_orders", LOCK),
                  warnings=["test.shop.warn_me.x"], skipped=7, notes=["owners unknown: manifest.json unusable"])
    message = triage_message("daily_finance", ev, Decision("none", "3 failures will fail again"), 0)
    valid(message)
    sections = [b["text"]["text"] for b in message.blocks if b["type"] == "section"]
    data_test, missing, lock = sections[1:]
    assert data_test.startswith("*data_test* · deterministic · rule `dbt_test_failure` · 2 failed")
    assert "• `not_null_orders_id` · owner @data-eng · 12 failing rows\n```Got 12 results" in data_test
    assert "• `accepted_values_status` · 1 failing row" in data_test
    assert missing.startswith("*missing_object* · deterministic · rule `snowflake_missing_object` · 1 failed")
    assert "• `stg_orders` · owner ana@shop.io\n```Object 'RAW.ORDERS' does not exist" in missing
    assert lock.startswith("*lock_conflict* · transient")
    assert message.blocks[-1]["elements"][0]["text"] == (
        "1 warning (not failures) · 7 skipped · owners unknown: manifest.json unusable")
    assert message.text.endswith("Not retrying: 2 data tests failed; 1 model references a missing table or view")


def test_log_only_failures_name_their_command():
    ev = evidence(Failure(2, "dbt deps", DEPS.excerpt, DEPS), adapter=None)
    message = triage_message("hourly_orders", ev, Decision("trigger", "only infrastructure commands failed", 1, 60), 0)
    valid(message)
    assert "• `dbt deps` (log)\n```Connection to hub.getdbt.com timed out```" in texts(message)[-1]


def test_mentions_near_the_top_and_in_the_fallback():
    mentions = ["<@U123>", "<!subteam^S456>"]
    message = triage_message("daily_finance", evidence(node("stg_orders", MISSING)),
                             Decision("none", "1 failure will fail again"), 0, mentions=mentions)
    valid(message)
    assert message.blocks[4] == {"type": "section", "text": {"type": "mrkdwn", "text": "cc <@U123> <!subteam^S456>"}}
    assert message.text == (":no_entry: daily_finance — run 15500: Not retrying: 1 model references a missing "
                            "table or view cc <@U123> <!subteam^S456>")
    assert not any("cc " in t for t in texts(triage_message("x", lock_evidence(), RETRY, 0)))


# --- Slack's limits ----------------------------------------------------------------------------------

def test_the_real_big_run_fits():
    [report], _ = explain([BIG_SAMPLE], RuleSet.load())
    assert len(report.evidence.failures) == 17 and report.evidence.skipped == 398
    message = triage_message("daily_trade", report.evidence, report.decision, 0)
    valid(message)
    assert message.text.endswith("Not retrying: 17 models reference a missing table or view")
    assert "_…and 12 more_" in json.dumps(message.blocks, ensure_ascii=False)
    assert "398 skipped" in texts(message)


def test_a_huge_synthetic_run_is_truncated_never_refused():
    kinds = [Classification("deterministic", f"category_{k:02d}_" + "y" * 80, f"rule_{k % 7}", "E" * 5000)
             for k in range(60)]
    failures = [node(f"model_{i:03d}_" + "x" * 200, kinds[i % 60], owner="o" * 300) for i in range(500)]
    failures = [Failure(**{**f.__dict__, "message": "M" * 5000}) for f in failures]
    ev = evidence(*failures, warnings=[f"w{i}" for i in range(900)], skipped=12000, notes=["n" * 4000] * 10)
    for decision, attempt in ((Decision("none", "R" * 5000), 0), (Decision("retry", "r" * 5000, 1, 60), 1)):
        message = triage_message("s" * 400, ev, decision, attempt, branch="b" * 300, origin=1,
                                 mentions=[f"<@U{i:05d}>" for i in range(2000)])
        valid(message)
        dump = json.dumps(message.blocks, ensure_ascii=False)
        assert "_…and 50 more categories (410 failures)_" in dump
        assert "_…and 5 more_" in dump  # nodes cut within a category (9 failed, 4 fit)
        assert re.search(r" <@U\d{5}> \+\d+ more$", message.text)  # whole mentions only, then a count
    incident = incident_message("c" * 500, "snowflake", [IncidentRun("s" * 500, i, "retrying", "d" * 5000)
                                                         for i in range(200)])
    valid(incident)
    assert "_…and 170 more runs_" in json.dumps(incident.blocks, ensure_ascii=False)
    valid(repeat_message("s" * 500, ev, Decision("none", "R" * 5000), 1, 3))
    valid(simple_message("info", "t" * 5000, "b" * 5000))


# --- storm control and repeats -----------------------------------------------------------------------

def test_incident_message_one_line_per_run_and_a_summary():
    runs = [IncidentRun("hourly_orders", 15500, "recovered"), IncidentRun("hourly_events", 15501, "retrying"),
            IncidentRun("daily_finance", 15502, "retrying", "retry 1 in 2 min"),
            IncidentRun("hourly_sessions", 15503, "recovered")]
    message = incident_message("lock_conflict", "snowflake", runs)
    valid(message)
    assert message.blocks[0]["text"]["text"] == ":rotating_light: Snowflake lock conflicts across 4 schedules"
    assert message.text == ":rotating_light: Snowflake lock conflicts across 4 schedules: 2 recovered, 2 retrying"
    lines = message.blocks[-1]["text"]["text"].splitlines()
    assert lines[0] == f":white_check_mark: *hourly_orders* · {run_link(15500)} · recovered"
    assert lines[2] == f":repeat: *daily_finance* · {run_link(15502)} · retrying — retry 1 in 2 min"

    done = incident_message("lock_conflict", "snowflake",
                            [IncidentRun(r.schedule, r.run_id, "recovered") for r in runs])
    assert done.text == ":rotating_light: Snowflake lock conflicts across 4 schedules: 4 recovered"
    other = incident_message("connection", None, [IncidentRun(None, 1, "gave_up"), IncidentRun(None, 2, "not_retried")])
    assert other.text == ":rotating_light: Connection failures across 2 schedules: 1 gave up, 1 not retried"


def test_repeat_message_is_a_compact_reply():
    ev = evidence(node("not_null_orders_id.a1", DATA_TEST, "test"), node("unique_id.b2", DATA_TEST, "test"),
                  run_id=15600)
    message = repeat_message("hourly_events", ev, Decision("none", "2 failures will fail again (2× data_test)"),
                             15500, 3)
    valid(message)
    assert message.text == (":no_entry: hourly_events: Failed again the same way (3rd time): run 15600 — "
                            "Not retrying: 2 data tests failed")
    assert message.blocks[0]["text"]["text"] == (f":no_entry: *Failed again the same way (3rd time):* "
                                                 f"{run_link(15600)}\nNot retrying: 2 data tests failed")
    assert message.blocks[1]["elements"][0]["text"].startswith(f"previous alert: {run_link(15500)} · why: ")
    assert [_ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"]


# --- offline preview ---------------------------------------------------------------------------------

def test_preview_reads_owners_from_the_manifest():
    message = preview([str(BIG_SAMPLE), str(BIG_MANIFEST)], schedule="daily_trade")
    valid(message)
    assert message.blocks[0]["text"]["text"] == ":no_entry: daily_trade"
    assert "BigQuery" in message.blocks[1]["elements"][0]["text"]


def triage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "triage.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(("path", "sentence"), [
    (BIG_SAMPLE, "Not retrying: 17 models reference a missing table or view"),
    (DATA_TESTS_SAMPLE, "Not retrying: 2 data tests failed"),
])
def test_slack_preview_cli_prints_block_kit_json(path, sentence):
    proc = triage("slack-preview", path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"blocks", "text"}
    valid(SlackMessage(out["text"], out["blocks"]))
    assert out["text"].endswith(sentence)
    assert out["blocks"][0]["type"] == "header"


def test_slack_preview_cli_refuses_unreadable_input(tmp_path):
    proc = triage("slack-preview", tmp_path / "missing.json")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "triage slack-preview:" in proc.stderr and "cannot read" in proc.stderr
    proc = triage("slack-preview", BIG_MANIFEST)
    assert proc.returncode == 2 and "found no run_results.json or dbt log" in proc.stderr
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules: 3\n")
    proc = triage("slack-preview", BIG_SAMPLE, "--rules", bad)
    assert proc.returncode == 2 and "triage slack-preview:" in proc.stderr


def test_flaky_is_said_only_of_nodes_that_meet_the_definition():
    from triage.history import NodeHistory
    from triage.summary import recovered_nodes_sentence

    once = recovered_nodes_sentence(["model.shop.stg_orders"], [])
    assert once == "stg_orders passed on retry"
    flaky = NodeHistory("model.shop.stg_orders", retries=4, recoveries=3, last_verdict="transient")
    both = recovered_nodes_sentence(["model.shop.stg_orders", "model.shop.stg_payments"], [flaky])
    assert both == "stg_payments passed on retry; flaky: stg_orders recovered on 3 of 4 retries"


def test_the_why_line_never_repeats_the_verdict():
    from triage.models import Classification, Command, Decision, Evidence, Failure, Reason
    from triage.summary import triage_message

    ev = Evidence(run_id=5, state="ERROR", commands=[Command(1, "dbt run", return_code=1)],
                  failures=[Failure(1, "dbt run", "x", Classification("transient", "lock_conflict", "r", max_retries=1),
                                    node="model.a.b")])
    capped = Decision("none", "this kind of failure is worth only 1 retry, and 1 retry already failed",
                      code=Reason.RULE_CAP)
    text = json.dumps(triage_message("s", ev, capped, 1).blocks)
    assert text.count("worth only 1 retry") == 1
    retry = Decision("retry", "transient: 1× lock_conflict", 1, 60.0, code=Reason.TRANSIENT, detail="1× lock_conflict")
    blocks = json.dumps(triage_message("s", ev, retry, 0).blocks, ensure_ascii=False)
    assert "why: transient: 1× lock_conflict" in blocks
