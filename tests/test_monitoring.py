"""``/healthz``, ``/readyz`` and ``/metrics`` over HTTP, with the web app on a socket, real Redis, real RQ
workers draining the queue in this process and the Paradime and Slack simulators. The same mixed run
is played by real ``triage web`` and ``triage worker`` processes in ``test_monitoring_processes.py``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Worker
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from tests.conftest import WEBHOOK_SECRET, free_port, signed_headers
from tests.test_pipeline import LOCK, MISSING, dbt_run, failed_run
from triage import keyspace, metrics
from triage.app import create_app
from triage.checkconfig import check
from triage.config import load_settings
from triage.errors import ConfigError, UpstreamError
from triage.slack import RateLimited, SlackNotifier
from triage.summary import SlackMessage
from workers import context

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, **headers: str) -> Samples:
    """``GET /metrics``, parsed by prometheus-client's own parser: {(sample name, labels): value}."""
    resp = requests.get(f"{url}/metrics", headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def story_status(redis: Redis, origin: int) -> str | None:
    raw = redis.get(keyspace.story(origin))
    return json.loads(raw)["status"] if raw else None


def triage_status(redis: Redis, triage_id: str) -> str | None:
    raw = redis.hget(keyspace.triage(triage_id), "status")
    return json.loads(raw) if raw else None


def mixed_run(paradime, webhook_url: str, redis: Redis, settle: Callable[[Callable[[], bool]], None]) -> None:
    """Two failed runs at once (a lock conflict, retried and recovered; a missing table, not retried),
    a duplicate, an unsigned and an unparsable delivery, a run whose first status query fails
    (HTTP 500 three times), and a webhook for a run Paradime does not know (dead-lettered)."""
    a, b = failed_run(paradime, dbt_run(LOCK)), failed_run(paradime, dbt_run(MISSING))
    with ThreadPoolExecutor(2) as pool:  # at once: two workers take one each
        assert [r.status_code for r in pool.map(paradime.deliver, [a, b])] == [202, 202]
    settle(lambda: story_status(redis, a) == "recovered" and story_status(redis, b) == "not_retried")

    assert paradime.deliver(b).json()["status"] == "duplicate"
    assert requests.post(webhook_url, data=b"{}", timeout=10).status_code == 401
    raw = b"not json"
    assert requests.post(webhook_url, data=raw, headers=signed_headers(WEBHOOK_SECRET, raw), timeout=10).status_code \
        == 400

    paradime.fail_next("boltRunStatus", times=3, kind="http_500")  # one query, all its HTTP attempts
    c = failed_run(paradime, dbt_run(MISSING), schedule="hourly_finance")
    assert paradime.deliver(c).status_code == 202
    settle(lambda: story_status(redis, c) == "not_retried")

    raw = json.dumps({"run_id": 987654321, "event_type": "bolt.run.completed", "schedule_name": "ghost",
                      "commands": []}).encode()
    resp = requests.post(webhook_url, data=raw, headers=signed_headers(WEBHOOK_SECRET, raw), timeout=10)
    assert resp.status_code == 202
    settle(lambda: triage_status(redis, resp.json()["triage_id"]) == "dead_letter")


def assert_mixed_run_counted(samples: Samples, slack) -> None:
    """Exactly what ``mixed_run`` did, whichever processes did it."""
    webhooks = {o: value(samples, "bolt_triage_webhooks_total", outcome=o) for o in sorted(metrics.WEBHOOK_OUTCOMES)}
    # a, b, the retry run of a (announced by Paradime), c, the unknown run
    assert webhooks == {"queued": 5, "duplicate": 1, "unauthorized": 1, "invalid": 1, "requeued": 0, "too_large": 0,
                        "unavailable": 0, "error": 0, "other": 0}
    triages = {k: v for k, v in samples.items() if k[0] == "bolt_triage_triages_total"}
    assert triages == {
        ("bolt_triage_triages_total", (("category", "lock_conflict"), ("verdict", "retrying"))): 1,
        ("bolt_triage_triages_total", (("category", "none"), ("verdict", "recovered"))): 1,
        ("bolt_triage_triages_total", (("category", "missing_object"), ("verdict", "not_retried"))): 2,
        ("bolt_triage_triages_total", (("category", "none"), ("verdict", "could_not_triage"))): 1,
    }
    assert value(samples, "bolt_triage_triage_duration_seconds_count") == 4  # the verdicts a triage job reached
    assert value(samples, "bolt_triage_triage_duration_seconds_bucket", le="+Inf") == 4
    assert 0 < value(samples, "bolt_triage_triage_duration_seconds_sum") < 60
    retries = {k: v for k, v in samples.items() if k[0] == "bolt_triage_retries_total" and v}
    assert retries == {("bolt_triage_retries_total", (("action", "retry"), ("outcome", "issued"))): 1}
    # c: one failed status query; the unknown run: its first attempt and 3 re-checks
    assert value(samples, "bolt_triage_upstream_errors_total", service="paradime") == 5
    assert value(samples, "bolt_triage_upstream_errors_total", service="slack") == 0
    posts = [r for r in slack.requests_log if r.method == "chat.postMessage" and r.status == 200]
    updates = [r for r in slack.requests_log if r.method == "chat.update" and r.status == 200]
    # a's alert, "Retry 1 started" and "recovered" in its thread; b's and c's alerts; "Could not triage run …"
    assert len(posts) == 6
    assert value(samples, "bolt_triage_slack_deliveries_total", outcome="posted") == 6
    assert value(samples, "bolt_triage_slack_deliveries_total", outcome="updated") == len(updates) > 0
    assert value(samples, "bolt_triage_slack_deliveries_total", outcome="error") == 0
    assert value(samples, "bolt_triage_dead_letter_size") == 1
    assert value(samples, "bolt_triage_queue_depth", queue="triage") == 0
    assert value(samples, "bolt_triage_queue_depth", queue="slack") == 0
    assert value(samples, "bolt_triage_redis_up") == 1


def test_metrics_after_a_mixed_run(service, paradime, slack, redis):
    mixed_run(paradime, service.webhook_url, redis, lambda done: service.drain(until=done, timeout=30))
    samples = scrape(service.url)
    assert_mixed_run_counted(samples, slack)
    assert value(samples, "bolt_triage_workers") == 0  # SimpleWorkers in this process come and go
    assert scrape(service.url) == samples  # a scrape reads, it changes nothing


def test_a_replayed_dead_letter_leaves_the_gauge(service, redis):
    metrics.dead_lettered("tr_gone")
    metrics.dead_lettered("tr_still")
    redis.hset(keyspace.triage("tr_still"), "status", json.dumps("dead_letter"))
    redis.hset(keyspace.triage("tr_gone"), "status", json.dumps("queued"))  # replayed meanwhile
    assert value(scrape(service.url), "bolt_triage_dead_letter_size") == 1
    assert redis.smembers(keyspace.METRICS_DEAD_LETTER) == {b"tr_still"}


def test_a_413_is_counted(service):
    resp = requests.post(service.webhook_url, data=b"x" * 1_100_000, timeout=10,
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert value(scrape(service.url), "bolt_triage_webhooks_total", outcome="too_large") == 1


def test_healthz_is_up_without_redis_and_readyz_names_redis(service_env, monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    client = create_app(load_settings()).test_client()
    assert (client.get("/healthz").status_code, client.get("/healthz").get_json()) == (200, {"status": "ok"})
    ready = client.get("/readyz")
    assert ready.status_code == 503
    [reason] = ready.get_json()["reasons"]
    assert reason["code"] == "redis_unreachable" and reason["message"].startswith("Redis unreachable: ")
    scraped = client.get("/metrics")
    assert scraped.status_code == 200 and "bolt_triage_redis_up 0.0" in scraped.text
    assert "bolt_triage_webhooks_total" not in scraped.text  # unknown, not zero


@pytest.fixture
def policy(policy: dict) -> dict:
    policy["monitoring"] = {"ready_max_queue_depth": 2}
    return policy


def test_readyz_reasons(service, redis):
    reasons = requests.get(f"{service.url}/readyz", timeout=10)
    assert reasons.status_code == 503
    assert [r["code"] for r in reasons.json()["reasons"]] == ["no_worker", "scheduler_not_running"]
    assert "no RQ worker heartbeat within 60 s" in reasons.json()["reasons"][0]["message"]

    queues = [service.queue, service.slack_queue]
    worker = Worker(queues, connection=redis, serializer=JSONSerializer, name="ready-w")
    worker.register_birth()  # RQ's own registration and heartbeat, as a running worker writes them
    scheduler = RQScheduler([q.name for q in queues], connection=redis)
    assert scheduler.acquire_locks() == {"triage", "slack"}
    try:
        ready = requests.get(f"{service.url}/readyz", timeout=10)
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        assert value(scrape(service.url), "bolt_triage_workers") == 1
        for _ in range(3):
            service.queue.enqueue("os.getpid")
        deep = requests.get(f"{service.url}/readyz", timeout=10)
        assert deep.status_code == 503
        assert deep.json()["reasons"] == [{"code": "queue_too_deep", "message": "queue triage holds 3 jobs, over the "
                                           "bound of 2 (monitoring.ready_max_queue_depth)"}]
    finally:
        scheduler.release_locks()
        worker.register_death()


@pytest.mark.parametrize("how", ["policy", "env"])
def test_metrics_can_require_the_read_token(how, service_env, policy, tmp_path, monkeypatch, redis):
    monkeypatch.setenv("TRIAGE_READ_TOKEN", "read-tok-0123456789")
    monkeypatch.setenv("TRIAGE_ADMIN_TOKEN", "admin-tok-0123456789")
    if how == "env":
        monkeypatch.setenv("TRIAGE_METRICS_AUTH", "token")
    else:
        policy["monitoring"]["metrics_auth"] = "token"
        (tmp_path / "triage.yaml").write_text(json.dumps(policy))
    client = create_app(load_settings()).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic read-tok-0123456789"}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401 and refused.get_json()["error"] == "unauthorized"
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert "tok-0123456789" not in refused.text
    for token in ("read-tok-0123456789", "admin-tok-0123456789"):
        ok = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and "bolt_triage_webhooks_total" in ok.text and token not in ok.text
    assert client.get("/healthz").status_code == 200  # probes stay open
    assert client.get("/readyz").status_code == 503
    said: list[str] = []
    assert check(say=said.append) == 0
    assert "metrics: GET /metrics needs a Bearer token (TRIAGE_READ_TOKEN or TRIAGE_ADMIN_TOKEN); /readyz fails " \
           "over 2 queued jobs" in said
    assert not any("tok-0123456789" in line for line in said)


def test_metrics_are_open_by_default_and_speak_openmetrics_too(service):
    assert "bolt_triage_queue_depth" in requests.get(f"{service.url}/metrics", timeout=10).text
    om = requests.get(f"{service.url}/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=10)
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n") and 'bolt_triage_webhooks_total{outcome="queued"} 0' in om.text


def test_token_mode_without_a_token_refuses_to_start(service_env, monkeypatch):
    monkeypatch.setenv("TRIAGE_METRICS_AUTH", "token")
    monkeypatch.delenv("TRIAGE_READ_TOKEN", raising=False)
    monkeypatch.delenv("TRIAGE_ADMIN_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"^TRIAGE_READ_TOKEN: required by monitoring.metrics_auth: token"):
        create_app(load_settings())
    monkeypatch.setenv("TRIAGE_METRICS_AUTH", "tokn")
    with pytest.raises(ConfigError, match=r"^TRIAGE_METRICS_AUTH: 'tokn' is not one of open, token"):
        load_settings()


def test_a_redis_error_while_counting_is_logged_once_and_the_triage_goes_on(service, paradime, slack, redis,
                                                                           monkeypatch, caplog):
    context.current()  # the worker context first: building it installs the real Redis for metrics
    metrics.install(Redis(port=free_port(), socket_connect_timeout=0.2))
    monkeypatch.setattr(metrics, "PAUSE_AFTER_ERROR", 0)  # try (and fail) at every count
    caplog.set_level(logging.INFO, logger="triage.metrics")
    run_id = failed_run(paradime, dbt_run(MISSING))
    assert paradime.deliver(run_id).status_code == 202
    service.drain(until=lambda: story_status(redis, run_id) == "not_retried")
    assert len(slack.top_level()) == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "triage.metrics"]
    assert lines == ["metrics not recorded (ConnectionError); going on without them until Redis answers"]
    metrics.install(redis)
    metrics.count(metrics.WEBHOOKS, outcome="queued")
    assert [r.getMessage() for r in caplog.records if r.name == "triage.metrics"][-1] == "metrics recorded again"
    # 2: this count, and the webhook's own, which went with its admission (Store.admit's one round trip)
    # and so never through the failing recorder
    assert value(scrape(service.url), "bolt_triage_webhooks_total", outcome="queued") == 2


def test_slack_errors_are_counted_and_a_429_is_not(service, slack, redis):
    notifier = SlackNotifier(load_settings().slack, timeout=5)
    slack.fail_next(times=10, status=500, method="chat.postMessage")
    with pytest.raises(UpstreamError):
        notifier.post(SlackMessage("hello", []))
    slack.reset()
    slack.fail_next(times=10, status=429, method="chat.postMessage")
    with pytest.raises(RateLimited):
        notifier.post(SlackMessage("hello", []))
    assert value(scrape(service.url), "bolt_triage_upstream_errors_total", service="slack") == 1


def test_labels_are_bounded():
    assert metrics.WEBHOOKS.field({"outcome": "queued"}) == "queued"
    assert metrics.WEBHOOKS.field({"outcome": "https://hooks.slack.com/services/T1/B2/secret"}) == "other"
    assert metrics.TRIAGES.field({"verdict": "retrying", "category": "Lock_Conflict"}) == "retrying|lock_conflict"
    assert metrics.TRIAGES.field({"verdict": "run 123", "category": "a b|c"}) == "other|other"
