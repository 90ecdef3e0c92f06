"""Benchmark: owners of failed nodes from a big manifest.json, ``json.load`` vs ``triage.manifest``.

    python bench/manifest_owners.py [--nodes N] [--keep PATH]

Generates a synthetic manifest shaped like dbt's (models with config, columns, raw and compiled
code; generic tests attached to them; sources, macros, groups, parent/child maps), then measures,
on that same file, the baseline (``json.load`` + dict lookups) and ``read_node_info``. Each
measurement runs in its own Python process, so one method's memory does not pollute the other's
maximum RSS: one process per method for wall time and max RSS, another with ``tracemalloc`` on for
the peak of Python allocations (tracemalloc slows allocation, so its wall time is not reported).
Both methods' answers are compared before the figures are printed.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_NODES = 67_000  # about 200 MB with the shapes below
GROUPS = ("finance", "marketing", "core", "platform", "ops")
OWNERS: tuple[Any, ...] = ("analytics_team", "finance_team", ["alice@example.com", "bob@example.com"],
                           {"name": "Data Platform", "email": "platform@example.com"})


# --------------------------------------------------------------------------- the synthetic manifest


def _model(i: int, rnd: random.Random) -> tuple[str, dict[str, Any]]:
    uid = f"model.bench.model_{i}"
    roll = rnd.random()
    meta = {"owner": OWNERS[i % len(OWNERS)], "tier": "gold"} if roll < 0.6 else {}
    group = GROUPS[i % len(GROUPS)] if 0.6 <= roll < 0.8 else None
    sql = f"select * from {{{{ ref('model_{max(i - 1, 0)}') }}}} -- " + "x" * rnd.randint(500, 1500)
    return uid, {
        "database": "analytics", "schema": "marts", "name": f"model_{i}", "resource_type": "model",
        "package_name": "bench", "path": f"marts\\model_{i}.sql", "original_file_path": f"models\\marts\\model_{i}.sql",
        "unique_id": uid, "fqn": ["bench", "marts", f"model_{i}"], "alias": f"model_{i}",
        "checksum": {"name": "sha256", "checksum": f"{i:064x}"},
        "config": {"enabled": True, "alias": None, "schema": "marts", "tags": ["nightly"], "meta": meta, "group": group,
                   "materialized": "table", "post-hook": [], "pre-hook": [], "quoting": {}, "column_types": {},
                   "persist_docs": {}, "full_refresh": None, "on_schema_change": "ignore", "grants": {},
                   "docs": {"show": True, "node_color": None}, "contract": {"enforced": False, "alias_types": True},
                   "access": "protected"},
        "tags": ["nightly"], "description": "A model generated for the benchmark. " * 3,
        "columns": {f"col_{c}": {"name": f"col_{c}", "description": f"Column {c}.", "meta": {}, "data_type": None,
                                 "constraints": [], "quote": None, "tags": [], "granularity": None, "doc_blocks": []}
                    for c in range(8)},
        "meta": meta, "group": group, "docs": {"show": True, "node_color": None},
        "patch_path": "bench://models\\marts\\schema.yml", "build_path": None,
        "unrendered_config": {"materialized": "table", "meta": meta}, "created_at": 1754414678.7,
        "relation_name": f"analytics.marts.model_{i}", "raw_code": sql, "language": "sql",
        "refs": [{"name": f"model_{max(i - 1, 0)}", "package": None, "version": None}], "sources": [], "metrics": [],
        "depends_on": {"macros": ["macro.bench.audit"], "nodes": [f"model.bench.model_{max(i - 1, 0)}"]},
        "compiled_path": f"target/compiled/bench/models/marts/model_{i}.sql", "compiled": True,
        "compiled_code": sql.replace("{{ ref(", "analytics.marts.(").replace(") }}", ")"),
        "extra_ctes_injected": True, "extra_ctes": [], "contract": {"enforced": False, "alias_types": True,
                                                                    "checksum": None},
        "access": "protected", "constraints": [], "version": None, "latest_version": None,
    }


def _test_id(i: int, models: int) -> tuple[str, int]:
    """The id of the i-th node when it is a test, and the model it tests (spread over all models)."""
    model = (i * 7919) % models
    return f"test.bench.not_null_model_{model}_col_{i % 8}.{i:010x}", model


def _test(i: int, models: int) -> tuple[str, dict[str, Any]]:
    uid, model = _test_id(i, models)
    return uid, {
        "database": "analytics", "schema": "dbt_test__audit", "name": f"not_null_model_{model}_col_{i % 8}",
        "resource_type": "test", "package_name": "bench", "path": f"not_null_model_{model}_col_{i % 8}.sql",
        "original_file_path": "models\\marts\\schema.yml", "unique_id": uid,
        "fqn": ["bench", "marts", f"not_null_model_{model}"], "alias": f"not_null_model_{model}",
        "checksum": {"name": "none", "checksum": ""},
        "config": {"enabled": True, "schema": "dbt_test__audit", "tags": [], "meta": {}, "group": None,
                   "materialized": "test", "severity": "ERROR", "store_failures": None, "where": None,
                   "limit": None, "fail_calc": "count(*)", "warn_if": "!= 0", "error_if": "!= 0"},
        "tags": [], "description": "", "columns": {}, "meta": {}, "group": None,
        "raw_code": "{{ test_not_null(**_dbt_generic_test_kwargs) }}", "language": "sql",
        "refs": [{"name": f"model_{model}", "package": None, "version": None}], "sources": [], "metrics": [],
        "depends_on": {"macros": ["macro.dbt.test_not_null"], "nodes": [f"model.bench.model_{model}"]},
        "compiled_code": f"select col_{i % 8} from analytics.marts.model_{model} where col_{i % 8} is null",
        "column_name": f"col_{i % 8}", "file_key_name": f"models.model_{model}",
        "attached_node": f"model.bench.model_{model}",
        "test_metadata": {"name": "not_null", "namespace": None, "kwargs": {
            "column_name": f"col_{i % 8}", "model": f"{{{{ get_where_subquery(ref('model_{model}')) }}}}"}},
    }


def write_manifest(path: Path, nodes: int, seed: int = 1) -> dict[str, int]:
    """A third of the nodes are models, the rest tests on them; written entry by entry, never held whole."""
    rnd = random.Random(seed)
    models = max(nodes // 3, 1)
    with path.open("w") as f:
        f.write('{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json", '
                '"dbt_version": "1.10.3", "adapter_type": "snowflake"}, "nodes": {')
        for i in range(nodes):
            uid, node = _model(i, rnd) if i < models else _test(i, models)
            f.write(("," if i else "") + json.dumps(uid) + ": " + json.dumps(node))
        f.write('}, "sources": {')
        for i in range(200):
            uid = f"source.bench.raw.table_{i}"
            source = {"resource_type": "source", "unique_id": uid, "original_file_path": "models\\raw\\sources.yml",
                      "meta": {}, "config": {"meta": {"owner": "ingestion"}}, "tags": [], "columns": {}}
            f.write(("," if i else "") + json.dumps(uid) + ": " + json.dumps(source))
        f.write('}, "macros": {')
        for i in range(3000):
            macro = {"name": f"m{i}", "resource_type": "macro", "macro_sql": "{% macro m() %}" + "y" * 1500,
                     "depends_on": {"macros": []}, "arguments": [], "meta": {}}
            f.write(("," if i else "") + json.dumps(f"macro.bench.m{i}") + ": " + json.dumps(macro))
        groups = {f"group.bench.{g}": {"name": g, "resource_type": "group", "owner": {"email": f"{g}@example.com",
                                                                                       "name": None}}
                  for g in GROUPS}
        f.write(f'}}, "docs": {{}}, "exposures": {{}}, "metrics": {{}}, "groups": {json.dumps(groups)}, '
                '"selectors": {}, "disabled": {}, "parent_map": {')
        for i in range(nodes):
            f.write(("," if i else "") + f'"n{i}": ["model.bench.model_{i % models}", "source.bench.raw.table_1"]')
        f.write('}, "child_map": {')
        for i in range(nodes):
            f.write(("," if i else "") + f'"n{i}": ["test.bench.x{i}", "model.bench.model_{i % models}"]')
        f.write('}, "group_map": {}, "saved_queries": {}, "semantic_models": {}, "unit_tests": {}}')
    return {"models": models, "tests": nodes - models}


def pick_ids(counts: dict[str, int], seed: int = 2) -> list[str]:
    """What a bad night looks like: failed models and tests from all over the file, and ids that are not there."""
    rnd = random.Random(seed)
    models, nodes = counts["models"], counts["models"] + counts["tests"]
    failed_models = [f"model.bench.model_{i}" for i in rnd.sample(range(models), min(20, models))]
    failed_tests = [_test_id(i, models)[0] for i in rnd.sample(range(models, nodes), min(20, nodes - models))]
    return failed_models + failed_tests + ["source.bench.raw.table_7", "model.bench.gone", "test.bench.gone.0"]


# --------------------------------------------------------------------------- the two methods


def baseline(path: Path, ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """What one would write first: load everything, then look the nodes up. Same rules as triage.manifest."""
    from triage.manifest import TEST_TYPES, TESTED_TYPES, owner_text

    with path.open("rb") as f:
        manifest = json.load(f)
    entries = {**manifest["nodes"], **manifest["sources"], **(manifest.get("unit_tests") or {})}
    groups = {g["name"]: owner_text(g.get("owner")) for g in manifest.get("groups", {}).values()}

    def own(node: dict) -> tuple[str | None, str | None]:
        for source, meta in (("config.meta.owner", node.get("config", {}).get("meta", {})),
                             ("meta.owner", node.get("meta", {}))):
            if owner_text(meta.get("owner")):
                return owner_text(meta.get("owner")), source
        group = node.get("group") or node.get("config", {}).get("group")
        return (groups[group], f"group:{group}") if groups.get(group) else (None, None)

    result = {}
    for uid in ids:
        if uid not in entries:
            continue
        node = entries[uid]
        owner, source = own(node)
        if owner is None and node.get("resource_type") in TEST_TYPES:
            parents = [p for p in node.get("depends_on", {}).get("nodes", []) if p.split(".")[0] in TESTED_TYPES]
            tested = node.get("attached_node") or (parents[0] if parents else None)
            if tested in entries and own(entries[tested])[0]:
                owner, source = own(entries[tested])[0], f"attached:{tested}"
        result[uid] = (owner, source)
    return result


def streaming(path: Path, ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
    from triage.manifest import read_node_info_path

    return {uid: (n.owner, n.owner_source) for uid, n in read_node_info_path(path, ids).items()}


METHODS = {"baseline": baseline, "streaming": streaming}


def measure(method: str, path: Path, ids: list[str], traced: bool) -> dict[str, Any]:
    """Run in a child process: one method, once; wall time and max RSS, or the tracemalloc peak."""
    sys.path.insert(0, str(REPO))
    import ijson  # noqa: F401  (imported before measuring, as a service would have it)

    import triage.manifest  # noqa: F401

    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if traced:
        tracemalloc.start()
    t0 = time.perf_counter()
    result = METHODS[method](path, ids)
    wall = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if traced else None
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return {"wall": wall, "peak": peak, "max_rss": max_rss * scale, "start_rss": start_rss * scale,
            "result": {k: list(v) for k, v in result.items()}}


def _child(method: str, path: Path, ids: list[str], traced: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", method, "--file", str(path), "--ids", json.dumps(ids)]
    out = subprocess.run(cmd + (["--traced"] if traced else []), check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


# --------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES, help=f"nodes in the manifest ({DEFAULT_NODES:,}"
                                                                         " ≈ 200 MB)")
    parser.add_argument("--keep", type=Path, help="write the manifest here and keep it (default: a temp file)")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(measure(args.child, args.file, json.loads(args.ids), args.traced)))
        return 0

    path = args.keep or Path(tempfile.mkstemp(suffix="-manifest.json")[1])
    try:
        t0 = time.perf_counter()
        counts = write_manifest(path, args.nodes)
        ids = pick_ids(counts)
        size = path.stat().st_size
        print(f"manifest: {size / 1e6:,.1f} MB, {args.nodes:,} nodes ({counts['models']:,} models, "
              f"{counts['tests']:,} tests), {len(ids)} ids requested; written in {time.perf_counter() - t0:.1f} s")
        runs = {m: (_child(m, path, ids, traced=False), _child(m, path, ids, traced=True)) for m in METHODS}
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)

    answers = {m: plain["result"] for m, (plain, _) in runs.items()}
    if answers["baseline"] != answers["streaming"]:
        print("MISMATCH between the two methods:", json.dumps(answers, indent=1))
        return 1
    found = answers["streaming"]
    print(f"both methods agree: {len(found)} of {len(ids)} ids found, "
          f"{sum(1 for owner, _ in found.values() if owner)} with an owner")

    (b_plain, b_traced), (s_plain, s_traced) = runs["baseline"], runs["streaming"]
    rows = [
        ("wall time (s)", b_plain["wall"], s_plain["wall"]),
        ("peak traced memory (MB)", b_traced["peak"] / 1e6, s_traced["peak"] / 1e6),
        ("max RSS of the process (MB)", b_plain["max_rss"] / 1e6, s_plain["max_rss"] / 1e6),
        ("max RSS over start (MB)", (b_plain["max_rss"] - b_plain["start_rss"]) / 1e6,
         (s_plain["max_rss"] - s_plain["start_rss"]) / 1e6),
    ]
    print()
    print(f"| {'':<28} | {'json.load + dicts':>17} | {'read_node_info':>14} | {'streaming/baseline':>18} |")
    print(f"|{'-' * 30}|{'-' * 18}:|{'-' * 15}:|{'-' * 19}:|")
    for label, base, stream in rows:
        ratio = stream / base if base else float("nan")
        print(f"| {label:<28} | {base:>17,.2f} | {stream:>14,.2f} | {ratio:>18.4f} |")
    print(f"\nmanifest size {size / 1e6:,.1f} MB; interpreter RSS at start ≈ {s_plain['start_rss'] / 1e6:.0f} MB; "
          f"Python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
