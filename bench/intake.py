"""Benchmark: webhook intake throughput and latency, the Procfile's ``triage web`` vs a bare Flask 204.

    python bench/intake.py [--rounds R] [--duration S] [--connections C] [--setups sync:2:1,gthread:2:4] [--floor]

For each gunicorn setup (``class:processes:threads``), rounds alternate between the bare app
(``bench/bare_app.py``: Flask, ``return "", 204``, same gunicorn class, processes and threads) and the
service's web command (``triage web``, access log on, as deployed) on a private Redis. The load is
``wrk`` with ``bench/intake.lua``: distinct webhooks of distinct runs, signed beforehand (Standard
Webhooks HMAC, as Paradime signs), each thread replaying its own share, so every request is a new
delivery that the service must verify, parse, claim, record and enqueue. After each service round the
queue length is checked against the 202s. Figures are ratios against the bare round next to it.
``--floor`` adds a third app to each round (``bench/floor_app.py``: parse the JSON, one LPUSH, 202): the
least an intake that keeps what it accepts does, the ceiling of what the service's endpoint can reach.

Targets (issue 12): ≥ 0.5× the bare throughput, p99 ≤ 20 ms at 32 connections, 0 non-2xx.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _common import BIN, REPO, free_port, private_redis, spread, stop, wait_port
from redis import Redis
from standardwebhooks import Webhook

SECRET = "whsec_" + base64.b64encode(b"bolt-triage-bench-secret-0123456789").decode()
LUA = REPO / "bench" / "intake.lua"
THREADS = 2


def signed_webhooks(count: int, first_run: int) -> list[tuple[str, dict[str, str]]]:
    """``count`` webhooks of distinct runs ``first_run`` …: each body with its Standard Webhooks headers,
    signed as Paradime signs (also used by ``intake_profile.py``)."""
    hook = Webhook(SECRET)
    now = datetime.now(timezone.utc)
    out = []
    for run in range(first_run, first_run + count):
        body = json.dumps({
            "run_id": run, "schedule_name": "nightly", "state": "ERROR", "event_type": "bolt.run.completed",
            "commands": [{"id": run * 10, "command": "dbt run", "return_code": 1, "status": "failed",
                          "start_dttm": "2026-12-04 00:59:01.476387", "end_dttm": "2026-12-04 00:59:11.3",
                          "json_resources": []}],
        })
        msg_id = f"msg_bench_{run}"
        out.append((body, {"Content-Type": "application/json", "webhook-id": msg_id,
                           "webhook-timestamp": str(int(now.timestamp())),
                           "webhook-signature": hook.sign(msg_id, now, body)}))
    return out


def write_requests(path: Path, count: int, port: int, first_run: int) -> None:
    """``count`` signed raw HTTP requests, NUL-separated, for runs ``first_run`` … (all distinct)."""
    with path.open("wb") as f:
        for body, headers in signed_webhooks(count, first_run):
            head = (f"POST /webhooks/paradime HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                    + "\r\n")
            f.write(head.encode() + body.encode() + b"\0")


def start_server(kind: str, setup: tuple[str, int, int], port: int, redis_url: str) -> subprocess.Popen:
    klass, procs, threads = setup
    env = {**os.environ, "PORT": str(port), "WEB_CONCURRENCY": str(procs), "GUNICORN_THREADS": str(threads),
           "REDIS_URL": redis_url, "PARADIME_WEBHOOK_SECRET": SECRET, "LOG_LEVEL": "info",
           "GUNICORN_CMD_ARGS": f"--worker-class {klass}", "ACCESS_LOG": os.environ.get("ACCESS_LOG", "1")}
    if kind == "web":
        cmd = [str(BIN / "triage"), "web"]  # the Procfile's command
    else:
        cmd = [sys.executable, "-m", "gunicorn", "--chdir", str(REPO / "bench"), "-b", f"127.0.0.1:{port}",
               "-w", str(procs), "--threads", str(threads), f"{kind}_app:app"]  # bare_app, floor_app
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_port(port)
    return proc


def wrk(port: int, requests_file: Path, duration: int, connections: int) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t", str(THREADS), "-c", str(connections), "-d", f"{duration}s", "--timeout", "5s",
                          "-s", str(LUA), f"http://127.0.0.1:{port}/webhooks/paradime", "--",
                          str(requests_file), str(THREADS)], capture_output=True, text=True, check=True).stdout
    stats = json.loads(out.strip().splitlines()[-1])
    stats["rps"] = stats["requests"] / (stats["duration_us"] / 1e6)
    return stats


def one_round(kind: str, setup: tuple[str, int, int], redis_url: str, args: argparse.Namespace,
              first_run: int) -> dict[str, Any]:
    port = free_port()
    with tempfile.NamedTemporaryFile(suffix=".http") as tmp:
        write_requests(Path(tmp.name), args.requests, port, first_run)
        redis = Redis.from_url(redis_url)
        redis.flushdb()
        proc = start_server(kind, setup, port, redis_url)
        try:
            stats = wrk(port, Path(tmp.name), args.duration, args.connections)
        finally:
            stop(proc)
        stats["queued"] = {"web": redis.llen("rq:queue:triage"), "floor": redis.llen("bench:floor")}.get(kind)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--requests", type=int, default=60_000, help="distinct signed webhooks per round")
    parser.add_argument("--setups", default="sync:2:1", help="comma-separated gunicorn class:processes:threads")
    parser.add_argument("--floor", action="store_true",
                        help="also measure floor_app (parse JSON, one LPUSH, 202): the least a keeping intake does")
    args = parser.parse_args(argv)
    setups = [(k, int(p), int(t)) for k, p, t in (s.split(":") for s in args.setups.split(","))]

    print(f"wrk -t{THREADS} -c{args.connections} -d{args.duration}s, {args.rounds} alternating rounds per setup; "
          f"{os.cpu_count()} cores; Python {sys.version.split()[0]}")
    results = []
    with private_redis() as redis_url:
        run = 1_000_000
        for setup in setups:
            pairs = []
            kinds = ["bare", "web"] + (["floor"] if args.floor else [])
            for r in range(args.rounds):
                order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]  # each kind leads a round in turn
                pair = {}
                for kind in order:
                    pair[kind] = one_round(kind, setup, redis_url, args, run)
                    run += args.requests
                pairs.append(pair)
                w, b = pair["web"], pair["bare"]
                print(f"  {':'.join(map(str, setup))} round {r + 1}: bare {b['rps']:,.0f} req/s p99 "
                      f"{b['p99_us'] / 1000:.1f} ms | web {w['rps']:,.0f} req/s p99 {w['p99_us'] / 1000:.1f} ms, "
                      f"{w['requests']:,} requests, {w['queued']:,} queued, non-2xx {w['non2xx']}, "
                      f"socket errors {w['connect_errors'] + w['read_errors'] + w['write_errors'] + w['timeouts']}"
                      + (f" | floor {pair['floor']['rps']:,.0f} req/s p99 {pair['floor']['p99_us'] / 1000:.1f} ms"
                         if args.floor else ""))
            results.append((setup, pairs))

    print()
    print("| setup | web/bare throughput | web req/s | bare req/s | web p99 ms | bare p99 ms | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for setup, pairs in results:
        ratio = [p["web"]["rps"] / p["bare"]["rps"] for p in pairs]
        print(f"| {':'.join(map(str, setup))} | {spread(ratio)} | {spread([p['web']['rps'] for p in pairs], ',.0f')} "
              f"| {spread([p['bare']['rps'] for p in pairs], ',.0f')} "
              f"| {spread([p['web']['p99_us'] / 1000 for p in pairs], '.1f')} "
              f"| {spread([p['bare']['p99_us'] / 1000 for p in pairs], '.1f')} "
              f"| {sum(p['web']['non2xx'] for p in pairs)} |")
    if args.floor:
        print()
        print("| setup | floor/bare throughput | web/floor throughput | floor p99 ms | floor non-2xx |")
        print("|---|---:|---:|---:|---:|")
        for setup, pairs in results:
            print(f"| {':'.join(map(str, setup))} | {spread([p['floor']['rps'] / p['bare']['rps'] for p in pairs])} "
                  f"| {spread([p['web']['rps'] / p['floor']['rps'] for p in pairs])} "
                  f"| {spread([p['floor']['p99_us'] / 1000 for p in pairs], '.1f')} "
                  f"| {sum(p['floor']['non2xx'] for p in pairs)} |")
    print()
    for setup, pairs in results:
        ratio = statistics.median(p["web"]["rps"] / p["bare"]["rps"] for p in pairs)
        p99 = statistics.median(p["web"]["p99_us"] / 1000 for p in pairs)
        bad = sum(p["web"]["non2xx"] for p in pairs)
        extra = sum(p["web"]["queued"] - p["web"]["requests"] for p in pairs)
        print(f"{':'.join(map(str, setup))}: throughput {ratio:.2f}× bare (target ≥ 0.5): "
              f"{'MET' if ratio >= 0.5 else 'NOT MET'}; p99 {p99:.1f} ms (target ≤ 20): "
              f"{'MET' if p99 <= 20 else 'NOT MET'}; non-2xx {bad} (target 0): {'MET' if bad == 0 else 'NOT MET'}; "
              f"jobs queued beyond the answers wrk counted: {extra} (requests in flight when wrk stopped; "
              f"negative would mean a 202 without a job)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
