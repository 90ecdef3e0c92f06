"""Benchmark: webhooks end to end (202 → first Slack post) with a Paradime that is 50 ms away.

    python bench/pipeline.py [--workers 1,2,4,8] [--runs N] [--latency 0.05] [--worker-class fork|simple]
                             [--burst 200] [--soak 0]

Starts a private Redis, the Paradime and Slack simulators (in this process; Paradime adds ``--latency``
seconds to every API call and download), the Procfile's ``triage web`` and ``triage worker`` processes.
Each run is a distinct schedule failing deterministically (a missing table: triaged, not retried, one
alert), so a triage is its Paradime calls and one Slack post. Slack routes spread the schedules over 64
channels; pacing (1 message per channel per second) stays on.

* ``--workers``: for each count, ``--runs`` webhooks sent one every ``--gap`` seconds (low load) and
  then as fast as the web takes them (throughput): triages/s, p50/p99 webhook 202 → first Slack post,
  and the overhead beyond the simulated I/O at low load (p50 minus calls × latency).
* ``--burst``: that many webhooks at once with 4 workers: time to the first alert, the time the
  burst takes to triage (last triage done), p99 202 → Slack against it.
* ``--soak N``: N triages through 4 workers, peak RSS of each worker process (and its work horses)
  sampled along the way: it should stay flat.

Targets (issue 12): overhead ≤ 100 ms p50 at low load; 4 workers ≥ 3× 1 worker; burst of 200: first
alert ≤ 5 s, p99 ≤ 2× the burst's triage time; RSS flat.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from _common import BIN, REPO, free_port, private_redis, stop, wait_port
from redis import Redis

sys.path.insert(0, str(REPO))
from tests.conftest import WEBHOOK_SECRET  # noqa: E402
from triage.sim.paradime import ParadimeSimulator, SimCommand, make_run_results  # noqa: E402
from triage.sim.slack import SlackSimulator  # noqa: E402

CHANNELS = 64  # enough that pacing (1 s per channel) does not cap a phase's throughput
_RUN_RE = re.compile(r"\brun (\d+)\b")  # how every alert names its run (triage.summary)
MISSING = ("Database Error in model stg_orders (models/staging/stg_orders.sql)\n  002003 (42S02): SQL compilation "
           "error:\n  Object 'RAW.SHOP.ORDERS' does not exist or not authorized.")


def policy() -> dict[str, Any]:
    routes = [{"schedule": f"bench_{c}_*", "channel": f"#bench-{c}"} for c in range(CHANNELS)]
    return {"slack": {"routes": routes, "storm": {"min_schedules": 0}, "repeat_interval_seconds": 0}}


def failing_run(paradime: ParadimeSimulator, i: int) -> int:
    artifacts = {"target/run_results.json": make_run_results(
        [("model.shop.stg_orders", "error", MISSING), ("model.shop.stg_payments", "success", None)],
        adapter_type="snowflake")}
    commands = [SimCommand("git clone", 0, stdout="done"), SimCommand("dbt deps", 0, stdout="done"),
                SimCommand("dbt run", 1, stdout="Registered adapter: snowflake=1.8.3\n", artifacts=artifacts)]
    return paradime.add_run(f"bench_{i % CHANNELS}_{i}", commands)


class Service:
    """triage web + N triage worker processes on one Redis and the simulators."""

    def __init__(self, redis_url: str, paradime: ParadimeSimulator, slack: SlackSimulator, config: Path,
                 worker_class: str):
        self.port = free_port()
        self.env = {**os.environ, "REDIS_URL": redis_url, "PARADIME_API_ENDPOINT": paradime.graphql_url,
                    "PARADIME_API_KEY": "sim-key", "PARADIME_API_SECRET": "sim-secret",
                    "PARADIME_WEBHOOK_SECRET": WEBHOOK_SECRET, "SLACK_BOT_TOKEN": slack.token,
                    "SLACK_CHANNEL": "#data-alerts", "SLACK_API_URL": slack.api_url, "TRIAGE_CONFIG": str(config),
                    "PORT": str(self.port), "LOG_LEVEL": "warning", "WORKER_CLASS": worker_class}
        self.web = self._spawn([str(BIN / "triage"), "web"])
        wait_port(self.port)
        self.workers: list[subprocess.Popen] = []

    def _spawn(self, cmd: list[str]) -> subprocess.Popen:
        return subprocess.Popen(cmd, env=self.env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def scale(self, n: int) -> None:
        while len(self.workers) > n:
            stop(self.workers.pop())
        while len(self.workers) < n:
            self.workers.append(self._spawn([str(BIN / "triage"), "worker", "--no-probe"]))
        time.sleep(2.0)  # start-up: settings, rules, scheduler

    def rss(self) -> list[int]:
        """Max RSS (VmHWM, kB) of each worker process and of its live children (work horses)."""
        out = []
        for w in self.workers:
            pids = [w.pid, *_children(w.pid)]
            out.append(max(_hwm(p) for p in pids))
        return out

    def close(self) -> None:
        for w in self.workers:
            stop(w)
        stop(self.web)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def first_posts(slack: SlackSimulator, runs: set[int]) -> dict[int, float]:
    """For each run, when Slack first received a message naming it."""
    found: dict[int, float] = {}
    for m in slack.messages:
        for run in map(int, _RUN_RE.findall(m.text)):
            if run in runs and run not in found:
                found[run] = m.at
    return found


def send(paradime: ParadimeSimulator, runs: list[int], gap: float, parallel: int = 1) -> dict[int, float]:
    """Deliver the runs' webhooks; when each got its 202."""
    accepted: dict[int, float] = {}
    lock = threading.Lock()

    def one(run: int) -> None:
        resp = paradime.deliver(run)
        assert resp.status_code == 202, resp.text
        with lock:
            accepted[run] = time.time()

    if parallel == 1:
        for run in runs:
            one(run)
            time.sleep(gap)
    else:
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(one, runs))
    return accepted


def wait_posts(slack: SlackSimulator, runs: list[int], timeout: float) -> dict[int, float]:
    deadline = time.time() + timeout
    while True:
        posts = first_posts(slack, set(runs))
        if len(posts) == len(runs) or time.time() > deadline:
            return posts
        time.sleep(0.25)


def phase(paradime, slack, runs: list[int], gap: float, parallel: int, timeout: float) -> dict[str, Any]:
    t0 = time.time()
    accepted = send(paradime, runs, gap, parallel)
    posts = wait_posts(slack, runs, timeout)
    lat = sorted(posts[r] - accepted[r] for r in runs if r in posts)
    end = max(posts.values()) if posts else time.time()
    return {"n": len(runs), "posted": len(posts), "elapsed": end - t0, "rate": len(posts) / (end - t0),
            "p50": statistics.median(lat) if lat else float("nan"),
            "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan"),
            "first": min(posts.values()) - t0 if posts else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--runs", type=int, default=40, help="webhooks per phase")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between webhooks at low load")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--worker-class", choices=("fork", "simple"), default="fork")
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--soak", type=int, default=0)
    args = parser.parse_args(argv)

    counts = [int(c) for c in args.workers.split(",") if c]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the simulators' request lines
    results: dict[str, Any] = {}
    with private_redis() as redis_url, tempfile.TemporaryDirectory() as tmp, SlackSimulator() as slack:
        config = Path(tmp) / "triage.yaml"
        config.write_text(yaml.safe_dump(policy()))
        paradime = ParadimeSimulator(webhook_secret=WEBHOOK_SECRET, latency=args.latency).start()
        service = Service(redis_url, paradime, slack, config, args.worker_class)
        paradime.webhook_target = f"http://127.0.0.1:{service.port}/webhooks/paradime"
        i = 0

        def new_runs(n: int) -> list[int]:
            nonlocal i
            runs = [failing_run(paradime, i + k) for k in range(n)]
            i += n
            time.sleep(paradime.run_duration + 0.1)  # the runs finish before their webhooks are sent
            return runs

        try:
            calls_before = paradime.delayed
            for n in counts:
                service.scale(n)
                low = phase(paradime, slack, new_runs(min(args.runs, 10)), args.gap, 1, 120)
                high = phase(paradime, slack, new_runs(args.runs), 0.0, 8, 600)
                results[f"workers={n}"] = {"low": low, "high": high, "rss_kb": service.rss()}
                print(f"{n} worker(s): low load p50 {low['p50'] * 1000:.0f} ms p99 {low['p99'] * 1000:.0f} ms | "
                      f"throughput {high['rate']:.2f} triages/s, p50 {high['p50']:.2f} s p99 {high['p99']:.2f} s, "
                      f"{high['posted']}/{high['n']} posted | max RSS per worker {service.rss()} kB", flush=True)
            triaged = sum(r["low"]["n"] + r["high"]["n"] for r in results.values())
            calls = (paradime.delayed - calls_before) / max(triaged, 1)
            if args.burst:
                service.scale(4)
                burst = phase(paradime, slack, new_runs(args.burst), 0.0, 16, 900)
                done = _last_triage_done(Redis.from_url(redis_url))
                burst["triage_time"] = done - (time.time() - burst["elapsed"]) if done else float("nan")
                results["burst"] = burst
                print(f"burst {args.burst} with 4 workers: first alert {burst['first']:.2f} s, all posted "
                      f"{burst['elapsed']:.1f} s, p50 {burst['p50']:.1f} s p99 {burst['p99']:.1f} s", flush=True)
            if args.soak:
                service.scale(4)
                samples = []
                left = args.soak
                while left > 0:
                    chunk = min(left, 100)
                    phase(paradime, slack, new_runs(chunk), 0.0, 8, 600)
                    samples.append(service.rss())
                    left -= chunk
                results["soak_rss_kb"] = samples
                print(f"soak {args.soak}: max RSS per worker (kB) after each 100: {samples}", flush=True)
        finally:
            service.close()
            paradime.stop()

    print()
    one = results.get("workers=1", {}).get("high", {}).get("rate")
    io_ms = calls * args.latency * 1000
    print(f"Paradime calls and downloads per triage: {calls:.1f} × {args.latency * 1000:.0f} ms = {io_ms:.0f} ms "
          f"of simulated I/O; worker class {args.worker_class}")
    print("| workers | triages/s | ×1 worker | p50 s | p99 s | low-load p50 ms | overhead p50 ms | max RSS kB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in counts:
        r = results[f"workers={n}"]
        overhead = r["low"]["p50"] * 1000 - calls * args.latency * 1000
        print(f"| {n} | {r['high']['rate']:.2f} | {r['high']['rate'] / one:.2f} | {r['high']['p50']:.2f} | "
              f"{r['high']['p99']:.2f} | {r['low']['p50'] * 1000:.0f} | {overhead:.0f} | {max(r['rss_kb'])} |")
    print()
    if "workers=1" in results and "workers=4" in results:
        low = results["workers=1"]["low"]["p50"] * 1000 - calls * args.latency * 1000
        scale = results["workers=4"]["high"]["rate"] / one
        print(f"overhead beyond simulated I/O at low load: {low:.0f} ms p50 (target ≤ 100): "
              f"{'MET' if low <= 100 else 'NOT MET'}")
        print(f"4 workers / 1 worker throughput: {scale:.2f}× (target ≥ 3): {'MET' if scale >= 3 else 'NOT MET'}")
    if "burst" in results:
        b = results["burst"]
        print(f"burst: first alert {b['first']:.2f} s (target ≤ 5): {'MET' if b['first'] <= 5 else 'NOT MET'}; "
              f"p99 {b['p99']:.1f} s vs burst triage time {b['triage_time']:.1f} s (target ≤ 2×): "
              f"{'MET' if b['p99'] <= 2 * b['triage_time'] else 'NOT MET'}")
    return 0


def _last_triage_done(redis: Redis) -> float | None:
    """When the last triage record was last updated (its job's end), from the records' ``updated_at``."""
    latest = None
    for key in redis.scan_iter("bt:triage:*"):
        raw = redis.hget(key, "updated_at")
        if raw:
            latest = max(latest or 0.0, float(json.loads(raw)))
    return latest


if __name__ == "__main__":
    sys.exit(main())
