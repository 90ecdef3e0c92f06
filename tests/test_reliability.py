"""The state model and the at-least-once handling of intake, triage attempts and Slack posts,
against a real Redis and the web app on a socket."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET, signed_headers
from tests.test_pipeline import MISSING, dbt_run, failed_run
from triage import broker, logs
from triage.config import JobPolicy
from triage.lifecycle import IllegalTransition, StoryStatus, TriageStatus
from triage.store import Claim, PostState, PostStatus, RetryOutcome, RetryState, Store


def test_the_lifecycle_refuses_illegal_moves():
    assert TriageStatus.QUEUED.move_to(TriageStatus.TRIAGING) is TriageStatus.TRIAGING
    assert TriageStatus.FAILED.can_move_to(TriageStatus.QUEUED)  # a new attempt
    assert all(s.can_move_to(TriageStatus.DEAD_LETTER) for s in TriageStatus if not s.final)
    for final in (TriageStatus.DONE, TriageStatus.CANCELED):
        assert final.final and not any(final.can_move_to(s) for s in TriageStatus)
    with pytest.raises(IllegalTransition, match="triage cannot go from done to triaging"):
        TriageStatus.DONE.move_to(TriageStatus.TRIAGING)
    with pytest.raises(IllegalTransition, match="story cannot go from recovered to retrying"):
        StoryStatus.RECOVERED.move_to(StoryStatus.RETRYING)
    assert StoryStatus.RETRYING.move_to(StoryStatus.NEEDS_HUMAN).final


def test_store_set_status_checks_the_move(redis):
    store = Store(redis)
    store.set_status("tr_1", TriageStatus.QUEUED)
    store.set_status("tr_1", TriageStatus.TRIAGING)
    store.set_status("tr_1", TriageStatus.DONE)
    with pytest.raises(IllegalTransition):
        store.set_status("tr_1", TriageStatus.TRIAGING)
    assert store.advance("tr_1", TriageStatus.TRIAGING) is False
    assert store.triage_status("tr_1") is TriageStatus.DONE


def test_admit_writes_all_or_nothing(redis):
    store = Store(redis)
    queue = broker.queue(redis)

    def broken(pipe):
        raise ConnectionError("Redis went away between the claim and the enqueue")

    with pytest.raises(ConnectionError):
        store.admit("run-1:completed", None, "tr_a", {"status": TriageStatus.QUEUED}, broken)
    assert redis.keys("*") == []  # no claim without a job: the redelivery gets through

    def enqueue(pipe):
        broker.enqueue_triage(queue, "tr_b", {"commands": []}, JobPolicy(), job_id="triage-tr_b", pipeline=pipe)

    assert store.admit("run-1:completed", None, "tr_b", {"status": TriageStatus.QUEUED}, enqueue) is None
    assert queue.job_ids == ["triage-tr_b"] and store.triage_status("tr_b") is TriageStatus.QUEUED


def test_concurrent_admissions_of_one_event_make_one_job(redis):
    store = Store(redis)
    queue = broker.queue(redis)
    barrier = threading.Barrier(20)

    def admit(i: int):
        tid = f"tr_{i}"
        barrier.wait()
        return store.admit("run-9:completed", None, tid, {"status": TriageStatus.QUEUED}, lambda pipe:
                           broker.enqueue_triage(queue, tid, {}, JobPolicy(), job_id=f"triage-{tid}", pipeline=pipe))

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(admit, range(20)))
    winners = [a for a in answers if a is None]
    assert len(winners) == 1 and len(set(a for a in answers if a)) == 1
    assert len(queue.job_ids) == 1


def test_a_slack_post_is_claimed_once(redis):
    posts = Store(redis).posts
    assert posts.claim("1:summary", 90) is Claim.CLAIMED
    assert posts.claim("1:summary", 90) is Claim.HELD  # someone is sending it
    assert redis.ttl("bt:slack:1:summary") > 0 and time.time() - posts.claimed_at("1:summary") < 5
    assert posts.state("1:summary") == PostState(PostStatus.SENDING)
    redis.set("bt:slack:1:summary", f"pending:{time.time() - 91:.3f}")  # its sender stopped mid-post
    assert posts.claim("1:summary", 90) is Claim.STALE  # taken over: Slack may have it already
    posts.mark("1:summary", PostStatus.FAILED)
    assert posts.claim("1:summary", 90) is Claim.CLAIMED  # its last try failed: send again
    posts.posted("1:summary", "C1", "1.1")
    assert posts.claim("1:summary", 90) is Claim.HELD  # posted, for good
    assert posts.state("1:summary") == PostState(PostStatus.POSTED, "C1", "1.1")
    assert posts.state("1:summary").settled


def test_retry_states_round_trip_in_their_stored_form(redis):
    """The stored strings are those of 0.1: a guard written before an upgrade still holds after it."""
    guard = Store(redis).retries
    assert guard.claim(7, "tr_a") is True and guard.claim(7, "tr_b") is False
    state = guard.state(7)
    assert state.outcome is RetryOutcome.CLAIMED and state.detail == "tr_a" and state.claimed_at > 0
    assert redis.get("bt:retry:7").decode().startswith("claimed:tr_a:")
    guard.record(7, RetryOutcome.ISSUED, "8")
    assert redis.get("bt:retry:7") == b"issued:8" and guard.state(7).new_run == 8
    redis.set("bt:retry:9", "unknown: read timeout")
    assert guard.state(9) == RetryState(RetryOutcome.UNKNOWN, "read timeout")
    guard.release(9)
    assert guard.state(9) is None


def _deliver(service, body: dict, msg_id: str) -> requests.Response:
    raw = json.dumps(body).encode()
    return requests.post(service.webhook_url, data=raw, headers=signed_headers(WEBHOOK_SECRET, raw, msg_id),
                         timeout=10)


def test_a_redelivery_of_a_dead_lettered_triage_starts_a_new_attempt(service, paradime, redis):
    run_id = failed_run(paradime, dbt_run(MISSING))
    body = paradime.webhook_payload(run_id)
    first = _deliver(service, body, "msg_1")
    assert first.status_code == 202
    triage_id = first.json()["triage_id"]
    assert _deliver(service, body, "msg_1").json() == {"status": "duplicate", "triage_id": triage_id}

    store = Store(redis)
    service.queue.empty()  # as if the job were lost, then dead-lettered
    store.set_status(triage_id, TriageStatus.DEAD_LETTER, error="worker died")
    again = _deliver(service, body, "msg_1")
    assert again.status_code == 202 and again.json()["status"] == "requeued"
    assert again.json()["triage_id"] == triage_id
    assert service.queue.job_ids == [f"triage-{triage_id}-a2"]
    assert store.get_triage(triage_id)["attempts"] == 2
    assert _deliver(service, body, "msg_1").json()["status"] == "duplicate"  # its new job is alive


def test_a_crashing_triage_is_attempted_then_dead_lettered_with_one_note(service, paradime, slack, redis, monkeypatch):
    from workers import jobs

    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("a bug")

    monkeypatch.setattr(jobs, "decide", broken)
    run_id = failed_run(paradime, dbt_run(MISSING))
    resp = paradime.deliver(run_id)
    triage_id = resp.json()["triage_id"]
    service.drain(until=lambda: Store(redis).triage_status(triage_id) is TriageStatus.DEAD_LETTER, timeout=60)
    assert len(calls) == 3  # jobs.attempts
    record = Store(redis).get_triage(triage_id)
    assert record["error"] == "internal error (RuntimeError); see the worker log"
    service.drain(until=lambda: slack.top_level())
    [note] = slack.top_level()
    assert note.text == (f":warning: Could not triage run {run_id} of daily_orders: internal error (RuntimeError); "
                         "see the worker log")


def test_every_project_key_expires_after_a_full_run(service, paradime, slack, redis):
    from tests.test_pipeline import LOCK, story

    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.deliver(run_id)
    service.drain(until=lambda: story(service, run_id).get("status") == "recovered")
    ours = [k.decode() for k in redis.keys("bt:*")]
    assert len(ours) > 10
    assert [k for k in ours if redis.ttl(k) == -1] == []
    assert [k for k in ours if not k.startswith(_keyspace_prefixes())] == []  # every key named in keyspace


def _keyspace_prefixes() -> tuple[str, ...]:
    """What each ``triage.keyspace`` builder puts before its first argument."""
    import inspect

    from triage import keyspace

    out = {keyspace.TRIAGES, keyspace.NODES}
    for _name, fn in inspect.getmembers(keyspace, inspect.isfunction):
        if fn.__module__ == keyspace.__name__:
            n = len(inspect.signature(fn).parameters)
            out.add(fn(*["\x00"] * n).split("\x00")[0])
    return tuple(out)


def test_the_indexes_keep_only_their_newest_entries(redis):
    from triage import history
    from triage.config import Retention
    from triage.models import Classification, Failure

    s = Store(redis, retention=Retention(max_triages=3))
    for i in range(5):
        s.save_triage(f"tr_{i}", run_id=i)
    assert redis.zcard("bt:triages") == 3
    assert sorted(m.decode() for m in redis.zrange("bt:triages", 0, -1)) == ["tr_2", "tr_3", "tr_4"]
    nodes = history.History(redis, index_max=2)
    for i in range(4):
        nodes.record_failures(i, [Failure(command_id=1, command="dbt run", message="lock", node=f"model.p.m{i}",
                                          classification=Classification("transient", "lock", "rule"))])
    assert redis.zcard("bt:nodes") == 2


def test_thread_replies_are_posted_in_the_order_of_their_events(service, slack, redis):
    from triage.store import Story
    from triage.summary import simple_message
    from workers import context, notify

    ctx = context.current()
    parent = ctx.slack.post(simple_message("info", "parent", "the story's first message"), channel="#data-alerts")
    story = Story(origin=7, slack_channel=parent.channel, slack_ts=parent.ts)
    ctx.store.save_story(story)
    with logs.bound("tr_seven", run_id=7):
        notify.note(ctx, "7:first", simple_message("info", "Retry 1 started", "first event"), story=story)
        notify.note(ctx, "7:second", simple_message("info", "Recovered", "second event"), story=story)
    first, second = (job.args[0] for job in service.slack_queue.jobs)
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["triage_id"] == "tr_seven" and first["run_id"] == 7  # the delivery's log lines carry them

    assert notify.deliver(second)["status"] == "later"  # its turn has not come: the first is unsent
    assert notify.deliver(first)["status"] == "posted"
    service.drain(until=lambda: len(slack.replies(parent.ts)) == 2)
    replies = slack.replies(parent.ts)
    assert "Retry 1 started: first event" in replies[0].text and "Recovered: second event" in replies[1].text


def test_a_post_whose_sender_died_after_slack_got_it_is_found_not_posted_again(service, slack, redis):
    """The sender stopped between Slack's accepting the message and recording its ts: the next delivery
    finds it in Slack by the message id in its metadata, records it, and posts nothing."""
    from triage.summary import simple_message
    from workers import context, deliver
    from workers.slack_work import Post, to_dict

    ctx = context.current()
    message = simple_message("error", "orders failed", "a missing table")
    earlier = ctx.slack.post(message, channel="#data-alerts", message_id="41:summary")  # then it died
    redis.set("bt:slack:41:summary", f"pending:{time.time() - 120:.3f}")
    work = Post(message_id="41:summary", text=message.text, blocks=message.blocks, channel="#data-alerts", parent=41)
    assert deliver.deliver(to_dict(work))["status"] == "found in Slack"
    assert len(slack.top_level()) == 1
    assert Store(redis).posts.state("41:summary") == PostState(PostStatus.POSTED, "#data-alerts", earlier.ts)
    assert Store(redis).story(41).slack_ts == earlier.ts  # the story threads under it

    other = Post(message_id="42:summary", text=message.text, blocks=message.blocks, channel="#data-alerts")
    redis.set("bt:slack:42:summary", f"pending:{time.time() - 120:.3f}")  # died before Slack got it
    assert deliver.deliver(to_dict(other))["status"] == "posted"
    assert len(slack.top_level()) == 2
