"""``triage classify`` and ``triage eval``, run as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, SAMPLES
from triage.run_results import parse_run_results

CORPUS = REPO.parent / "shared" / "corpus" / "error-messages.jsonl"
RUN_RESULTS = sorted(p for p in SAMPLES.glob("*.json") if "manifest" not in p.name)


def triage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "triage.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_eval_on_the_shared_corpus_meets_the_bars():
    proc = triage("eval", CORPUS, "--min-transient-recall", "0.9")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deterministic retried more than once: 0" in proc.stdout
    line = next(x for x in proc.stdout.splitlines() if x.strip().startswith("transient+conditional recall"))
    recall = float(line.split("recall")[1].split("%")[0])
    assert recall >= 90.0
    assert "confusion" in proc.stdout and "held-out:" in proc.stdout and "misses (tuning part" in proc.stdout


def test_eval_fails_when_a_rule_would_retry_a_deterministic_message(tmp_path):
    """A vendor-code rule keeps the chain's full budget, so a wrong one retries a deterministic failure
    again and again; a phrase gets one retry at most (triage.decide.retry_cap), so it does not fail eval."""
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "message": "Failure: ZZZ_FROBNICATED in model x", "label": "deterministic"}\n')
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: zzz_vendor\n    kind: name\n    codes: [ZZZ_FROBNICATED]\n"
                   "    verdict: transient\n    category: timeout\n")
    proc = triage("eval", corpus, "--rules", REPO / "triage" / "defaults" / "rules.yaml", "--rules", bad)
    assert proc.returncode == 1
    assert "would be retried" in proc.stderr
    bad.write_text("rules:\n  - name: zzz_phrase\n    pattern: 'ZZZ_FROBNICATED'\n"
                   "    verdict: transient\n    category: timeout\n")
    proc = triage("eval", corpus, "--rules", REPO / "triage" / "defaults" / "rules.yaml", "--rules", bad)
    assert proc.returncode == 0, proc.stderr
    assert "retried once (capped at one retry): 1" in proc.stdout


def test_eval_reports_a_malformed_corpus_line(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "message": "x", "label": "transient"}\n{"id": "b", "message": "y", '
                      '"label": "maybe"}\n')
    proc = triage("eval", corpus)
    assert proc.returncode == 2
    assert "c.jsonl:2: label 'maybe' is not one of" in proc.stderr


@pytest.mark.parametrize("path", RUN_RESULTS, ids=lambda p: p.name.split("__")[0])
def test_classify_works_on_every_sample(path):
    proc = triage("classify", "--json", path)
    assert proc.returncode == 0, proc.stderr
    [report] = json.loads(proc.stdout)["reports"]
    parsed = parse_run_results(path.read_bytes())
    assert [f["node"] for f in report["failures"]] == [n.unique_id for n in parsed.failed]
    for f in report["failures"]:
        assert f["verdict"] in ("transient", "deterministic", "unknown")
        assert f["source"] == "run_results"
    assert report["decision"]["action"] in ("retry", "none")
    text = triage("classify", path)
    assert text.returncode == 0 and "would" in text.stdout


def test_no_sample_failure_would_be_retried():
    """Every failure in the samples is a real bug (missing tables, SQL, permissions, tests)."""
    proc = triage("classify", "--json", *RUN_RESULTS)
    reports = json.loads(proc.stdout)["reports"]
    assert len(reports) == len(RUN_RESULTS)
    assert all(r["decision"]["action"] == "none" for r in reports), [
        (r["path"], r["decision"]) for r in reports if r["decision"]["action"] != "none"]


def test_classify_reads_a_log_alone_and_a_log_beside_run_results(tmp_path):
    log = tmp_path / "dbt.log"
    log.write_text("\x1b[0m03:00:01  Running with dbt=1.8.0\n\x1b[0m03:00:01  Registered adapter: snowflake=1.8.3\n"
                   "\x1b[0m03:00:05  Encountered an error:\nDatabase Error\n  250001: Could not connect to "
                   "Snowflake backend after 2 attempt(s).Aborting\n")
    proc = triage("classify", log)
    assert proc.returncode == 0
    assert "transient" in proc.stdout and "adapter: snowflake" in proc.stdout and "would retry" in proc.stdout

    both = triage("classify", "--json", SAMPLES / "MickeyJ__fao-elt-pipelines__run_results.json", log)
    [report] = json.loads(both.stdout)["reports"]
    assert report["adapter"] == "snowflake"  # from the log's "Registered adapter" line


def test_classify_explains_unreadable_input(tmp_path):
    broken = tmp_path / "run_results.json"
    broken.write_text('{"metadata": {}, "results": [1]}')
    proc = triage("classify", broken)
    assert proc.returncode == 2
    assert "results[0] is not an object" in proc.stderr
    missing = triage("classify", tmp_path / "nope.json")
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_classify_shows_owners_from_a_manifest(tmp_path):
    from triage.sim.paradime import make_run_results

    rr = tmp_path / "run_results.json"
    rr.write_text(json.dumps(make_run_results([
        ("model.shopverse_analytics.stg_orders", "error", "Database Error\n  002003 (42S02): SQL compilation error:"
         "\n  Object 'RAW.ORDERS' does not exist or not authorized."),
    ])))
    manifest = SAMPLES / "AvinashAnalytics__shopverse-dbt-snowflake-pipeline__manifest.json"
    proc = triage("classify", rr, manifest)
    assert proc.returncode == 0, proc.stderr
    assert "OWNER" in proc.stdout and "analytics_team" in proc.stdout
    [report] = json.loads(triage("classify", "--json", rr, manifest).stdout)["reports"]
    assert report["failures"][0]["owner"] == "analytics_team"
    alone = triage("classify", manifest)
    assert alone.returncode == 0 and "a manifest; nothing to classify" in alone.stdout
