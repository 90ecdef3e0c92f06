"""Never twice, secrets stay secret, and Slack trouble never changes what is done to a run."""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import WEBHOOK_SECRET
from tests.test_pipeline import LOCK, dbt_run, failed_run, story
from workers import jobs


def test_concurrent_identical_deliveries_enqueue_one_job(service, paradime):
    run_id = failed_run(paradime, dbt_run(LOCK))
    barrier = threading.Barrier(16)

    def deliver(_):
        barrier.wait()
        return paradime.deliver(run_id, headers={"webhook-id": "msg_storm"}).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(deliver, range(16)))
    assert sorted(codes) == [200] * 15 + [202]
    assert service.queue.count == 1


def test_concurrent_retry_jobs_send_one_mutation(service, paradime):
    run_id = failed_run(paradime, dbt_run(LOCK))
    service.redis.set(f"bt:chain:{run_id}", json.dumps({"origin": run_id, "attempt": 0}))
    barrier = threading.Barrier(8)

    def retry(_):
        barrier.wait()
        return jobs.perform_retry("tr_race", run_id, run_id, 1, "retry", "daily_orders")["status"]

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(retry, range(8)))
    assert sorted(outcomes) == ["already"] * 7 + ["issued"]
    assert len(paradime.calls_of("retryBoltRun")) == 1


def test_slack_outage_does_not_change_what_is_done_to_the_run(service, paradime, slack, caplog):
    slack.fail_next(times=1000, status=500)
    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.deliver(run_id)
    with caplog.at_level(logging.WARNING):
        service.drain(until=lambda: story(service, run_id).get("status") == "recovered", timeout=30, idle=False)
    assert len(paradime.calls_of("retryBoltRun")) == 1
    assert slack.messages == []
    assert "Slack chat.postMessage: internal_error" in caplog.text
    # The deliveries wait in RQ's scheduled registry for their next try (bounded: Retry(max=3)).
    from rq.registry import ScheduledJobRegistry
    assert ScheduledJobRegistry(queue=service.slack_queue).count >= 1


def test_slack_rate_limit_is_honoured(service, paradime, slack):
    slack.fail_next(times=1, status=429, retry_after=1)
    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.deliver(run_id)
    service.drain(until=lambda: story(service, run_id).get("status") == "recovered")
    assert len(slack.top_level()) == 1
    assert any(r.status == 429 for r in slack.requests_log)


def test_no_secret_reaches_logs_slack_or_redis(service, paradime, slack, caplog):
    secrets = [paradime.api_key, paradime.api_secret, WEBHOOK_SECRET, WEBHOOK_SECRET[6:], slack.token,
               "simworkspace"]  # the endpoint path holds the workspace token
    paradime.fail_next("boltCommand", times=1, kind="http_500")
    run_id = failed_run(paradime, dbt_run(LOCK))
    paradime.deliver(run_id)
    with caplog.at_level(logging.DEBUG):
        service.drain(until=lambda: story(service, run_id).get("status") == "recovered")
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("triage", "workers", "rq"))
    stored = "\n".join(str(service.redis.dump(k)) for k in service.redis.keys("*"))
    posted = json.dumps([m.text for m in slack.messages] + [m.blocks for m in slack.messages])
    for secret in secrets:
        assert secret not in ours
        assert secret not in posted
        assert secret not in stored
