"""``triage ls/show/events/replay/cancel/pause/resume`` against the running API (real HTTP)."""

# ruff: noqa: F811  (the fixtures are imported from tests.api_fixtures)
from __future__ import annotations

import json
import threading

from tests.api_fixtures import ADMIN, READ, api_env, edit_policy, ops, status_of, story  # noqa: F401
from tests.test_pipeline import LOCK, MISSING, dbt_run, failed_run
from triage import cli


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_lists_shows_follows_replays_pauses_and_cancels(ops, paradime, monkeypatch, capsys):
    svc, _, _ = ops
    monkeypatch.setenv("TRIAGE_API_URL", svc.url)
    monkeypatch.delenv("TRIAGE_ADMIN_TOKEN")
    monkeypatch.setenv("TRIAGE_API_TOKEN", READ)
    run_id = failed_run(paradime, dbt_run(MISSING))
    triage_id = paradime.deliver(run_id).json()["triage_id"]

    followed: list[str] = []
    follower = threading.Thread(target=lambda: followed.append(_cli(capsys, "events", triage_id, "--follow")[1]))
    follower.start()
    svc.drain()
    follower.join(20)
    assert not follower.is_alive(), "events --follow ends when the triage is final"
    assert "received" in followed[0] and "decided" in followed[0] and "done" in followed[0]

    code, out, _ = _cli(capsys, "ls")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["ID", "STATUS", "VERDICT"]
    assert triage_id in out and "not_retried" in out
    code, out, _ = _cli(capsys, "ls", "--schedule", "daily_*", "--json")
    assert [t["id"] for t in json.loads(out)["triages"]] == [triage_id]
    code, out, _ = _cli(capsys, "show", triage_id)
    assert code == 0 and "deterministic" in out and "model.shop.stg_orders" in out
    code, out, _ = _cli(capsys, "events", triage_id, "--json")
    assert "decided" in [e["type"] for e in json.loads(out)["events"]]

    code, _, err = _cli(capsys, "pause", "--for", "2h", "--reason", "incident")
    assert code == 1 and "403" in err, "the read token cannot pause"
    assert READ not in err

    monkeypatch.setenv("TRIAGE_API_TOKEN", ADMIN)
    code, out, _ = _cli(capsys, "pause", "daily_*", "--for", "2h", "--reason", "incident")
    assert code == 0 and "daily_*" in out and "incident" in out
    code, out, _ = _cli(capsys, "resume", "--json")
    assert json.loads(out)["resumed"] == ["daily_*"]
    code, out, _ = _cli(capsys, "replay", triage_id, "--json")
    new_id = json.loads(out)["results"][0]["new_triage_id"]
    assert code == 0 and new_id.startswith("tr_")
    svc.drain()
    code, _, err = _cli(capsys, "cancel", triage_id)
    assert code == 1 and "409" in err and "already done" in err
    code, _, err = _cli(capsys, "show", "tr_0000000000000000")
    assert code == 1 and "404" in err


def test_cli_cancels_a_scheduled_retry(ops, paradime, monkeypatch, capsys, slack):
    svc, _, _ = ops
    monkeypatch.setenv("TRIAGE_API_URL", svc.url)
    edit_policy(retry={"backoff_seconds": [600]})
    run_id = failed_run(paradime, dbt_run(LOCK))
    triage_id = paradime.deliver(run_id).json()["triage_id"]
    svc.drain(until=lambda: status_of(svc, triage_id) == "retry_scheduled", idle=False)
    code, out, _ = _cli(capsys, "cancel", triage_id, "--reason", "outage")
    assert code == 0 and out.strip() == f"{triage_id}: canceled"
    svc.drain()
    assert paradime.calls_of("retryBoltRun") == []
    assert story(svc, run_id)["status"] == "gave_up"


def test_cli_without_a_token_says_so(monkeypatch, capsys):
    for name in ("TRIAGE_API_TOKEN", "TRIAGE_ADMIN_TOKEN", "TRIAGE_READ_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = _cli(capsys, "ls")
    assert code == 2 and "TRIAGE_API_TOKEN" in err
