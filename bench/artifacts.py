"""Benchmark: a big ``run_results.json`` read by the service (``triage classify``) vs ``json.load``.

    python bench/artifacts.py [--results N] [--errors N] [--rounds R] [--keep PATH]

Generates a dbt-1.8-shaped run_results.json (default 50,000 results, ~100 MB, 2,500 errors: each
result with its timing, adapter_response and ~1.3 KB of compiled_code, as dbt writes them), then
measures on that same file, in alternating rounds:

* ``json.load``: the baseline, what any reader of the whole document pays;
* ``reader``: ``triage.run_results.read_run_results_path``, the reader ``triage classify`` and the
  worker use (streamed ijson events, only the fields a triage needs are built);
* ``classify``: the whole ``triage classify --json`` path: reader, 2,500 classifications, decision,
  JSON rendering (the rule set is loaded before the clock starts, as a worker has it).

Each measurement runs in its own Python process, one for wall time and max RSS, another with
``tracemalloc`` on for the peak of Python allocations. Ratios are against the ``json.load`` of the
same round, so machine load shared by the round cancels out; the spread over rounds is printed.
Targets (issue 12): reader ≤ 1.5× the time of json.load, peak memory ≤ 3× the file size.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TIME_TARGET = 1.5
MEMORY_TARGET = 3.0


def write_run_results(path: Path, results: int, errors: int, seed: int = 1) -> None:
    """Written result by result, never held whole; every ``results // errors``-th result is an error."""
    rnd = random.Random(seed)
    every = max(results // max(errors, 1), 1)
    with path.open("w") as f:
        f.write('{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json", '
                '"dbt_version": "1.8.7", "generated_at": "2026-12-04T01:00:00.123456Z", '
                '"invocation_id": "8d3c6c0e-5d0f-4c0e-9d1b-1f0f7b1e2a3c", "env": {}}, "results": [')
        for i in range(results):
            failed = i % every == 0 and i // every < errors
            test = i % 3 == 0
            uid = f"test.bench.not_null_model_{i}_id.{i:010x}" if test else f"model.bench.model_{i}"
            message = (f"Database Error in model model_{i} (models/marts/model_{i}.sql)\n  002003 (42S02): SQL "
                       f"compilation error:\n  Object 'ANALYTICS.RAW.TABLE_{i}' does not exist or not authorized."
                       if failed else "SUCCESS 1")
            result = {
                "status": "error" if failed else ("pass" if test else "success"),
                "timing": [{"name": "compile", "started_at": "2026-12-04T00:10:00.000001Z",
                            "completed_at": "2026-12-04T00:10:00.100001Z"},
                           {"name": "execute", "started_at": "2026-12-04T00:10:00.100001Z",
                            "completed_at": "2026-12-04T00:10:01.100001Z"}],
                "thread_id": f"Thread-{i % 8 + 1}", "execution_time": rnd.random() * 10,
                "adapter_response": {} if failed else {"_message": "SUCCESS 1", "code": "SUCCESS",
                                                       "rows_affected": rnd.randint(0, 10**6),
                                                       "query_id": f"01b{i:020x}"},
                "message": message, "failures": 0 if test else None, "unique_id": uid, "compiled": True,
                "compiled_code": f"select * from analytics.raw.table_{i} -- " + "x" * rnd.randint(1000, 1600),
                "relation_name": None if test else f"analytics.marts.model_{i}", "batch_results": None,
            }
            f.write(("," if i else "") + json.dumps(result))
        f.write('], "elapsed_time": 1234.5, "args": {"which": "build", "invocation_command": "dbt build", '
                '"vars": {}}}')


# --------------------------------------------------------------------------- the methods (in a child)


def _baseline(path: Path) -> dict[str, int]:
    with path.open("rb") as f:
        data = json.load(f)
    return {"results": len(data["results"]), "errors": sum(r["status"] == "error" for r in data["results"])}


def _reader(path: Path) -> dict[str, int]:
    from triage.run_results import read_run_results_path

    rr = read_run_results_path(str(path))
    return {"results": len(rr.results), "errors": len(rr.failed)}


def _classify_setup() -> Any:
    from triage.classify import RuleSet
    from triage.config import configured_rules_files

    return RuleSet.load(*configured_rules_files())


def _classify(path: Path, rules: Any) -> dict[str, int]:
    from triage import explain

    reports, notes = explain.explain([path], rules)
    out = explain.render_json(reports, notes)
    rr = reports[0].run_results
    assert rr is not None and out
    return {"results": len(rr.results), "errors": len(reports[0].evidence.failures)}


METHODS = ("json.load", "reader", "classify")


def measure(method: str, path: Path, traced: bool) -> dict[str, Any]:
    """One method, once, in this (child) process: wall time and max RSS, or the tracemalloc peak."""
    sys.path.insert(0, str(REPO))
    import ijson  # noqa: F401  (imported before measuring, as a running service has it)

    import triage.explain  # noqa: F401
    import triage.run_results  # noqa: F401

    rules = _classify_setup() if method == "classify" else None
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if traced:
        tracemalloc.start()
    t0 = time.perf_counter()
    if method == "json.load":
        result = _baseline(path)
    elif method == "reader":
        result = _reader(path)
    else:
        result = _classify(path, rules)
    wall = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if traced else None
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"wall": wall, "peak": peak, "rss_over_start": (max_rss - start_rss) * scale, "result": result}


def _child(method: str, path: Path, traced: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", method, "--file", str(path)] + (["--traced"] if traced else [])
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


# --------------------------------------------------------------------------- report


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=50_000)
    parser.add_argument("--errors", type=int, default=2_500)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the three methods")
    parser.add_argument("--keep", type=Path, help="write the file here and keep it (default: a temp file)")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.file, args.traced)))
        return 0

    import ijson

    path = args.keep or Path(tempfile.mkstemp(suffix="-run_results.json")[1])
    try:
        write_run_results(path, args.results, args.errors)
        size = path.stat().st_size
        print(f"run_results.json: {size / 1e6:,.1f} MB, {args.results:,} results, {args.errors:,} errors; "
              f"ijson backend {ijson.backend}; Python {sys.version.split()[0]}")
        rounds = []
        for r in range(args.rounds):
            order = METHODS if r % 2 == 0 else METHODS[::-1]  # alternate, so a trend in load cancels out
            rounds.append({m: _child(m, path, traced=False) for m in order})
        traced = {m: _child(m, path, traced=True) for m in METHODS}
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)

    answers = {m: rounds[0][m]["result"] for m in METHODS}
    expected = {"results": args.results, "errors": args.errors}
    if any(a != expected for a in answers.values()):
        print("MISMATCH:", answers)
        return 1
    print(f"all methods agree: {expected}")
    print()
    print("| method | wall s (median, min–max) | time / json.load | peak traced / file | max RSS over start / file |")
    print("|---|---:|---:|---:|---:|")
    verdicts = []
    for m in METHODS:
        walls = [rd[m]["wall"] for rd in rounds]
        ratios = [rd[m]["wall"] / rd["json.load"]["wall"] for rd in rounds]
        peak = traced[m]["peak"] / size
        rss = statistics.median(rd[m]["rss_over_start"] for rd in rounds) / size
        print(f"| {m} | {_spread(walls)} | {_spread(ratios)} | {peak:.2f} | {rss:.2f} |")
        if m != "json.load":
            verdicts.append((m, statistics.median(ratios), peak))
    print()
    for m, ratio, peak in verdicts:
        time_ok = "MET" if ratio <= TIME_TARGET else "NOT MET"
        memory_ok = "MET" if peak <= MEMORY_TARGET else "NOT MET"
        print(f"{m}: time {ratio:.2f}× json.load (target ≤ {TIME_TARGET}): {time_ok}; "
              f"peak {peak:.2f}× file (target ≤ {MEMORY_TARGET}): {memory_ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
