"""Slack mrkdwn injection: names and messages from a webhook, a log or an artifact are shown, never parsed
(``<!channel>`` must not ping a channel), while the mentions and links the service builds still work.
Slack's rules: https://api.slack.com/reference/surfaces/formatting#escaping"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from tests.test_pipeline import _triage_of, failed_run
from triage.models import Classification, Command, Decision, Evidence, Failure
from triage.sim.paradime import SimCommand, make_run_results
from triage.sim.slack import check_message
from triage.summary import (
    IncidentRun,
    incident_message,
    repeat_message,
    run_link,
    simple_message,
    triage_message,
    verdict_line,
)

SCHEDULE = "<!channel> nightly & co"
NODE = "model.shop.<@U123>_orders"
EXCERPT = "<!channel> Object 'RAW.A&B' does not exist or not authorized. <@U123>"
T0 = datetime(2025, 3, 1, 6, 0, tzinfo=timezone.utc)
MENTION = "<!subteam^S0ONCALL1>"
#: Markup the service writes itself and that must stay markup.
OURS = re.compile(r"<https://app\.paradime\.io/bolt/run_id/\d+\|run \d+>|<!subteam\^S0ONCALL1>|<@U0OWNER1>")


def mrkdwn_texts(text: str, blocks: list[dict[str, Any]]) -> list[str]:
    """The top-level text and every mrkdwn text object: what Slack parses for <…> and &."""
    found = [text]
    stack: list[Any] = list(blocks)
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "mrkdwn":
                found.append(item["text"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def assert_nothing_unescaped(text: str, blocks: list[dict[str, Any]]) -> None:
    for t in mrkdwn_texts(text, blocks):
        rest = OURS.sub("", t)
        assert "<" not in rest and ">" not in rest, t
        assert not re.search(r"&(?!amp;|lt;|gt;)", rest), t
        assert "<!channel>" not in t and "<@U123>" not in t


def failure(node: str | None = NODE, command: str = "dbt run") -> Failure:
    c = Classification("deterministic", "missing_object", "snowflake_missing_object", EXCERPT)
    return Failure(command_id=3, command=command, message=EXCERPT, classification=c, node=node,
                   resource_type="model" if node else None, status="error", owner="<!here> & team")


def evidence(*failures: Failure) -> Evidence:
    commands = [Command(3, "dbt run --select <!everyone>", 1, T0, T0 + timedelta(seconds=30))]
    return Evidence(run_id=15500, state="ERROR", commands=commands, failures=list(failures),
                    adapter="<!channel>", notes=["`dbt run`: run_results.json unusable (<@U123> & more); read its log"])


def test_the_alert_escapes_every_outside_text_and_keeps_its_own_markup():
    ev = evidence(failure(), failure(node=None, command="dbt seed <@U123>"))
    decision = Decision("none", "1 failure will fail again (1× missing_object) in <!channel>")
    message = triage_message(SCHEDULE, ev, decision, 0, branch="feat/<!here>&x", commit="a<b>c&d123",
                             mentions=[MENTION])
    assert check_message(message.text, message.blocks) is None
    assert_nothing_unescaped(message.text, message.blocks)

    # header: plain_text, which Slack does not parse for mentions or links (and would show "&lt;" as is)
    assert message.blocks[0] == {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                                             "text": ":no_entry: <!channel> nightly & co"}}
    context = message.blocks[1]["elements"][0]["text"]
    assert context == (f"{run_link(15500)} · branch `feat/&lt;!here&gt;&amp;x` @ `a&lt;b&gt;c&amp;d`"
                       " · 30s · failed: `dbt run --select &lt;!everyone&gt;` · &lt;!channel&gt;")
    assert message.blocks[2]["text"]["text"] == (
        "*Not retrying: 1 model and `dbt seed &lt;@U123&gt;` reference a missing table or view*")
    section = message.blocks[6]["text"]["text"]
    assert "\n• `&lt;@U123&gt;_orders` · owner &lt;!here&gt; &amp; team\n" in section
    assert ("```&lt;!channel&gt; Object 'RAW.A&amp;B' does not exist or not authorized. &lt;@U123&gt;```"
            in section)
    assert "`dbt seed &lt;@U123&gt;` (log)" in section
    assert message.blocks[3]["elements"][0]["text"] == (
        "why: 1 failure will fail again (1× missing_object) in &lt;!channel&gt;")
    assert message.blocks[7]["elements"][0]["text"] == (
        "`dbt run`: run_results.json unusable (&lt;@U123&gt; &amp; more); read its log")
    # the mention and the run link the service built are still markup
    assert message.blocks[4]["text"]["text"] == f"cc {MENTION}"
    assert message.text.startswith(":no_entry: &lt;!channel&gt; nightly &amp; co — run 15500: Not retrying: ")
    assert message.text.endswith(f" cc {MENTION}")


def test_a_sentence_given_back_is_escaped_once():
    ev = evidence(failure())
    status = verdict_line(Decision("none", "x"), 0, evidence=ev)  # raw text, as the worker keeps it
    message = triage_message(SCHEDULE, ev, None, 0, status_override=status)
    assert "&amp;amp;" not in json.dumps(message.blocks) + message.text
    assert_nothing_unescaped(message.text, message.blocks)


def test_notes_incidents_and_repeats_escape_too():
    note = simple_message("recovered", f"{SCHEDULE} recovered",
                          f"Run {run_link(15501)} (retry 1 of run 15500) succeeded. Recovered on retry 1 — "
                          f"flaky: <@U123>_orders & <!channel>.", mentions=["<@U0OWNER1>"])
    assert_nothing_unescaped(note.text, note.blocks)
    assert note.blocks[0]["text"]["text"] == (
        f":white_check_mark: *&lt;!channel&gt; nightly &amp; co recovered*\nRun {run_link(15501)} (retry 1 of run "
        "15500) succeeded. Recovered on retry 1 — flaky: &lt;@U123&gt;_orders &amp; &lt;!channel&gt;.")
    forged = simple_message("error", "Could not triage run 5", "<https://evil.example|run 1> <!channel>")
    assert forged.blocks[0]["text"]["text"].endswith("&lt;https://evil.example|run 1&gt; &lt;!channel&gt;")

    incident = incident_message("lock_conflict", "<!channel>", [
        IncidentRun(SCHEDULE, 15500, "retrying", detail="<@U123> & co"), IncidentRun("b", 15600, "recovered")])
    assert_nothing_unescaped(incident.text, incident.blocks)
    assert (f"*&lt;!channel&gt; nightly &amp; co* · {run_link(15500)} · retrying — &lt;@U123&gt; &amp; co"
            in json.loads(json.dumps(incident.blocks))[4]["text"]["text"])

    repeat = repeat_message(SCHEDULE, evidence(failure()), Decision("none", "in <!channel> & co"), 15400, 3)
    assert_nothing_unescaped(repeat.text, repeat.blocks)
    assert repeat.blocks[1]["elements"][0]["text"] == (
        f"previous alert: {run_link(15400)} · why: in &lt;!channel&gt; &amp; co")


def test_lone_surrogates_from_a_log_or_artifact_become_replacement_characters():
    c = Classification("unknown", "unknown", None, "broken \ud800 text")
    f = Failure(command_id=3, command="dbt run", message="broken \ud800 text", classification=c, node=None)
    message = triage_message("nightly", evidence(f), Decision("none", "not recognised \udfff"), 0)
    encoded = json.dumps({"text": message.text, "blocks": message.blocks}, ensure_ascii=False).encode("utf-8")
    assert "broken \ufffd text".encode() in encoded and "not recognised \ufffd".encode() in encoded
    note = simple_message("error", "Could not triage run 5 of x\ud800", "reason \udfff")
    json.dumps(note.blocks, ensure_ascii=False).encode("utf-8")
    assert note.text == ":warning: Could not triage run 5 of x\ufffd: reason \ufffd"


def test_the_posted_block_kit_has_nothing_unescaped(service, paradime, slack):
    """End to end: a schedule, a node and an error message from Paradime reach the Slack simulator escaped."""
    results = make_run_results([(NODE, "error", EXCERPT), ("model.shop.stg_payments", "success", None)],
                               adapter_type="snowflake")
    command = SimCommand("dbt run", 1, stdout="Registered adapter: snowflake=1.8.3\n",
                         artifacts={"target/run_results.json": results})
    run_id = failed_run(paradime, command, schedule=SCHEDULE)
    paradime.deliver(run_id)
    service.drain()
    assert _triage_of(service, run_id)["action"] == "none"

    [posted] = slack.top_level()
    assert_nothing_unescaped(posted.text, posted.blocks)
    section = next(b["text"]["text"] for b in posted.blocks
                   if b["type"] == "section" and "_orders" in b["text"]["text"])
    assert "• `&lt;@U123&gt;_orders`\n" in section
    assert "```&lt;!channel&gt; Object 'RAW.A&amp;B' does not exist or not authorized. &lt;@U123&gt;```" in section
    assert posted.text.startswith(":no_entry: &lt;!channel&gt; nightly &amp; co — run ")
    assert posted.blocks[0]["text"]["text"] == ":no_entry: <!channel> nightly & co"  # plain_text header
