"""Tests for triage.run_results and triage.dbt_log against the real dbt artifacts in /work/shared/samples.

The log fixtures are written the way dbt prints to a terminal: each line starts with
``ESC[0m`` and an ``HH:MM:SS`` timestamp, continuation lines of a multi-line message
have neither, and summaries are coloured (``ESC[31m`` red). Their wording comes from
real dbt output quoted in public issues (cited next to each fixture).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from triage.adapter import adapter_from_log, adapter_from_run_results
from triage.dbt_log import LogError, extract_log_errors, strip_ansi
from triage.errors import ArtifactError
from triage.run_results import NodeResult, RunResults, parse_run_results

SAMPLES = Path(__file__).parents[2] / "shared" / "samples"
RUN_RESULTS_FILES = sorted(p.name for p in SAMPLES.glob("*run_results*.json"))

# Facts from samples/README.md: dbt version, schema, command (args.which), counts by status,
# and the adapter adapter_from_run_results should find (None where the file holds no signal).
EXPECTED = {
    "9161517284b-png__dbt-datavault-postgres__run_results.json":
        ("1.4.0", 4, "run", {"error": 2}, None),
    "yu-iskw__dbt-artifacts-parser__run_results_v4_dbt1.0_bigquery.json":
        ("1.0.0", 4, "build", {"success": 8, "pass": 20, "error": 1}, "bigquery"),
    "Aasma-Aas__Kasper_Sindri_Media__run_results.json":
        ("1.7.17", 5, "run", {"error": 1}, None),
    "3fid__DBT-Hackathon-2024__run_results.json":
        ("1.7.14", 5, "build", {"error": 2, "skipped": 2}, "snowflake"),
    "MickeyJ__fao-elt-pipelines__run_results.json":
        ("1.8.0", 6, "run", {"error": 2, "skipped": 4}, None),
    "AndreaBozzo__Mini-Lakehouse-Didattico__run_results.json":
        ("1.10.1", 6, "test", {"error": 1}, None),
    "devrafael26__dbt-databricks-cicd__run_results.json":
        ("1.10.3", 6, "test", {"pass": 17, "error": 9, "fail": 1}, "databricks"),
    "AnalyticsByRussell__swans-demo__run_results.json":
        ("1.11.6", 6, "run", {"success": 1, "error": 1, "skipped": 1}, "postgres"),
    "Kshitijbhatt1998__fintech-fraud-pipeline__run_results.json":
        ("1.11.7", 6, "build", {"pass": 6, "success": 1, "error": 1, "skipped": 14}, None),
    "2moonyo__global-trade-intelligence-pipeline__run_results.json":
        ("1.11.7", 6, "build", {"error": 17, "success": 10, "pass": 35, "skipped": 398}, "bigquery"),
    "AnusaraSen__brazelian-e-commerce-data-pipeline__run_results.json":
        ("1.11.11", 6, "run", {"error": 1}, "snowflake"),
    "Nikhil201716__05-AI-Augmented-Data-Quality-Validation-Framework__run_results.json":
        ("1.12.0", 6, "test", {"pass": 24, "fail": 2, "warn": 1}, None),
    "Ajcamara__ETL-SCD2-SNOWFLAKE__run_results_fusion.json":
        ("2.0.0-preview.190", 6, "run", {"success": 2, "error": 1, "skipped": 1}, "snowflake"),
    "AshHimself__dbt_sandbox_snowflake__run_results_v2_dbt0.20.json":
        ("0.20.0rc1", 2, "test", {"error": 1, "pass": 1, "fail": 1}, "snowflake"),
}


def _load(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


# --------------------------------------------------------------------------- samples


def test_every_sample_has_expectations():
    assert RUN_RESULTS_FILES, f"no samples found in {SAMPLES}"
    assert set(RUN_RESULTS_FILES) == set(EXPECTED)


@pytest.mark.parametrize("name", RUN_RESULTS_FILES)
def test_sample_facts(name):
    raw = _load(name)
    rr = parse_run_results(raw)
    version, schema, command, counts, adapter = EXPECTED[name]
    assert rr.dbt_version == version
    assert rr.schema_version == schema
    assert rr.command == command
    assert rr.counts() == counts
    assert len(rr.results) == sum(counts.values())
    assert rr.generated_at is not None and rr.generated_at.tzinfo is None
    assert rr.invocation_id == json.loads(raw)["metadata"]["invocation_id"]

    file_results = json.loads(raw)["results"]
    assert [n.unique_id for n in rr.results] == [r["unique_id"] for r in file_results]
    failing = ("error", "fail", "runtime error")
    failed_in_file = {r["unique_id"] for r in file_results if r["status"] in failing}
    assert {n.unique_id for n in rr.failed} == failed_in_file
    assert all(n.failed for n in rr.failed)
    assert len(rr.warned) == counts.get("warn", 0)
    assert len(rr.skipped) == counts.get("skipped", 0)
    for node in rr.results:
        assert node.resource_type == node.unique_id.split(".")[0]
        assert node.name and "." not in node.name
        assert isinstance(node.adapter_response, dict)
    for node in rr.failed:
        assert node.message  # every failure in the samples says why

    assert adapter_from_run_results(rr) == adapter
    assert adapter_from_run_results(raw) == adapter


def test_2moonyo_one_root_cause_many_skips():
    rr = parse_run_results(_load("2moonyo__global-trade-intelligence-pipeline__run_results.json"))
    assert len(rr.results) == 460
    assert len(rr.failed) == 17 and len(rr.skipped) == 398
    assert rr.notes == ()
    first = rr.failed[0]
    assert first == NodeResult(
        unique_id="model.capstone_monthly.stg_comtrade_trade_base",
        resource_type="model",
        name="stg_comtrade_trade_base",
        status="error",
        message=first.message,
        failures=None,
        relation_name="`fullcap-10111`.`analytics_staging`.`stg_comtrade_trade_base`",
        execution_time=first.execution_time,
        adapter_response={},
    )
    assert "Not found: Table fullcap-10111:raw.comtrade_fact was not found" in first.message
    assert rr.generated_at == datetime(2026, 4, 12, 19, 18, 44, 606134)


def test_2moonyo_parses_quickly():
    raw = _load("2moonyo__global-trade-intelligence-pipeline__run_results.json")
    start = time.perf_counter()
    for _ in range(10):
        parse_run_results(raw)
        adapter_from_run_results(raw)
    assert (time.perf_counter() - start) / 10 < 0.1


def test_nikhil_fail_and_warn_carry_failure_counts():
    rr = parse_run_results(
        _load("Nikhil201716__05-AI-Augmented-Data-Quality-Validation-Framework__run_results.json"))
    assert sorted(n.failures for n in rr.failed) == [21, 52]
    assert [(n.failures, n.message) for n in rr.warned] == [(22, "Got 22 results, configured to warn if >0")]
    fail = next(n for n in rr.failed if n.name == "assert_no_extreme_line_totals")
    assert fail.resource_type == "test" and fail.status == "fail"
    assert fail.message == "Got 52 results, configured to fail if != 0"
    assert all(n.failures == 0 for n in rr.results if n.status == "pass")


def test_generic_test_name_drops_the_hash():
    rr = parse_run_results(_load("3fid__DBT-Hackathon-2024__run_results.json"))
    assert [n.name for n in rr.failed] == ["not_null_my_first_dbt_model_id", "unique_my_first_dbt_model_id"]
    assert rr.failed[0].unique_id == "test.Revolt_BI_Hackathon.not_null_my_first_dbt_model_id.5fb22c2710"
    # Windows paths stay as dbt wrote them
    assert "(models\\example\\schema.yml)" in rr.failed[0].message


def test_timing_empty_before_dbt_1_7_is_fine():
    raw = _load("9161517284b-png__dbt-datavault-postgres__run_results.json")
    assert all(r["timing"] == [] for r in json.loads(raw)["results"])
    rr = parse_run_results(raw)
    assert [n.name for n in rr.failed] == ["customer_order_rank", "order_dynamics"]
    assert all(n.execution_time is not None and n.relation_name is None for n in rr.failed)


def test_fusion_file_lacks_failures_and_says_so():
    rr = parse_run_results(_load("Ajcamara__ETL-SCD2-SNOWFLAKE__run_results_fusion.json"))
    assert all(n.failures is None for n in rr.results)
    assert rr.notes == ("Fusion (dbt 2.0.0-preview.190): no failures count for tests, no compiled code",)
    # nanosecond timestamp, cut to microseconds
    assert rr.generated_at == datetime(2026, 6, 14, 16, 55, 21, 212483)
    node = rr.failed[0]
    assert (node.name, node.relation_name) == ("product_raw", "DEA_BATCH_SCD2.RAW.product_raw")
    assert node.message.startswith("Database Error in model product_raw")
    assert "[Snowflake] 002003 (02000): SQL compilation error:" in node.message


def test_schema_v2_is_read_with_a_note():
    rr = parse_run_results(_load("AshHimself__dbt_sandbox_snowflake__run_results_v2_dbt0.20.json"))
    assert rr.notes == (
        "schema v2 (dbt 0.20.0rc1) predates dbt 1.0: read status, message and failures; "
        "relation_name and compiled code are not in it",
    )
    by_name = {n.name: n for n in rr.results}
    assert by_name["assert_city_exists"].status == "error"  # singular test: no hash to drop
    assert by_name["unique_stg_customers_city"].failures == 19
    assert by_name["not_null_stg_customers_city"].status == "pass"


def test_results_are_hashable():
    rr = parse_run_results(_load("devrafael26__dbt-databricks-cicd__run_results.json"))
    assert len(set(rr.results)) == len(rr.results)
    assert hash(rr)


def test_runtime_error_status_counts_as_failed():
    rr = parse_run_results({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json"},
        "results": [
            {"unique_id": "source.p.raw.orders", "status": "Runtime Error", "message": "boom"},
            {"unique_id": "model.p.orders", "status": "success"},
        ],
    })
    assert [n.status for n in rr.failed] == ["runtime error"]
    assert rr.failed[0].resource_type == "source" and rr.failed[0].name == "orders"


def test_log_names_match_run_results_names():
    """dbt prints ``  <message>`` for each error in the summary; the log fallback must name the
    same nodes run_results.json does, Windows paths included."""
    for name in RUN_RESULTS_FILES:
        rr = parse_run_results(_load(name))
        errors = [n for n in rr.failed if n.status == "error"]
        log = "\n".join(f"\x1b[0m10:00:00  \n\x1b[0m10:00:00    {n.message}" for n in errors)
        found = extract_log_errors(log)
        assert [e.node for e in found] == [n.name for n in errors], name


# --------------------------------------------------------------------------- malformed input

SCHEMAS = "https://schemas.getdbt.com/dbt"
V6 = f"{SCHEMAS}/run-results/v6.json"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "run_results.json is empty"),
        ("  \n", "run_results.json is empty"),
        (b"\xff\xfe{}", "run_results.json is not UTF-8 text: invalid start byte at byte 0"),
        ('{"metadata": {}, "results": [', "run_results.json is not valid JSON: Expecting value "
                                          "at line 1 column 30 (char 29)"),
        ("{not json", "run_results.json is not valid JSON: Expecting property name enclosed in double "
                      "quotes at line 1 column 2 (char 1)"),
        ("<html>Access Denied</html>", "run_results.json is not valid JSON: Expecting value "
                                        "at line 1 column 1 (char 0)"),
        ("[]", "run_results.json must be a JSON object, got array"),
        ('"results"', "run_results.json must be a JSON object, got string"),
        ("null", "run_results.json must be a JSON object, got null"),
        (json.dumps({"metadata": {"dbt_schema_version": V6}}), 'run_results.json has no "results" list'),
        ('{"results": {}}', 'run_results.json "results" must be a list, got object'),
        ('{"results": null}', 'run_results.json "results" must be a list, got null'),
        ('{"metadata": [], "results": []}', 'run_results.json "metadata" must be an object, got array'),
        ({"results": [{"unique_id": "model.a.b", "status": "success"}, 3]},
         "results[1] is not an object (got number)"),
        ({"results": [None]}, "results[0] is not an object (got null)"),
        ({"results": [{"status": "error"}]}, 'results[0] has no "unique_id"'),
        ({"results": [{"unique_id": "model.a.b"}]}, 'results[0] (model.a.b) has no "status"'),
        ({"metadata": {"dbt_schema_version": f"{SCHEMAS}/manifest/v12.json"}, "nodes": {}},
         f"unsupported schema {SCHEMAS}/manifest/v12.json: a manifest artifact, not run-results"),
        ({"metadata": {"dbt_schema_version": f"{SCHEMAS}/sources/v3.json"}, "results": []},
         f"unsupported schema {SCHEMAS}/sources/v3.json: a sources artifact, not run-results"),
        ({"metadata": {"dbt_schema_version": f"{SCHEMAS}/run-results/v1.json"}, "results": []},
         "unsupported run-results schema v1 (dbt 0.19 or older): only v2 and later are read"),
        ({"metadata": {"dbt_schema_version": "https://example.com/schema.json"}, "results": []},
         "unsupported schema 'https://example.com/schema.json': not a dbt run-results schema URL"),
    ],
)
def test_malformed_input(raw, message):
    with pytest.raises(ArtifactError) as info:
        parse_run_results(raw)
    assert str(info.value) == message


def test_manifest_sample_is_refused():
    with pytest.raises(ArtifactError) as info:
        parse_run_results(_load("2moonyo__global-trade-intelligence-pipeline__manifest.json"))
    url = f"{SCHEMAS}/manifest/v12.json"
    assert str(info.value) == f"unsupported schema {url}: a manifest artifact, not run-results"


def test_max_nodes():
    raw = {"results": [{"unique_id": f"model.p.m{i}", "status": "success"} for i in range(3)]}
    with pytest.raises(ArtifactError) as info:
        parse_run_results(raw, max_nodes=2)
    assert str(info.value) == "run_results.json has 3 results, more than max_nodes=2"
    assert len(parse_run_results(raw, max_nodes=3).results) == 3


# --------------------------------------------------------------------------- tolerance


def test_minimal_file_without_metadata():
    rr = parse_run_results('{"results": [{"unique_id": "model.p.orders", "status": "error"}]}')
    assert rr == RunResults(
        schema_version=None, dbt_version=None, generated_at=None, invocation_id=None, command=None,
        results=(NodeResult("model.p.orders", "model", "orders", "error", None, None, None, None, {}),),
        notes=("no metadata: schema, dbt version and generation time unknown",),
    )
    assert rr.is_stale(datetime(2024, 1, 1)) is True  # cannot prove it is fresh
    assert rr.is_stale(None) is False


def test_unknown_fields_odd_types_and_newer_schema():
    rr = parse_run_results({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v7.json",
                     "dbt_version": "1.13.0", "generated_at": "2026-01-02T03:04:05+02:00",
                     "adapter_type": "Snowflake", "something_new": {"x": 1}},
        "results": [{
            "unique_id": "model.p.dim_customers.v2", "status": "ERROR", "message": 42, "failures": "3",
            "execution_time": True, "relation_name": ["x"], "adapter_response": [], "new_field": 1,
        }],
        "args": "not a dict",
    })
    assert rr.schema_version == 7
    assert rr.notes == ("schema v7 is newer than v6: read the fields v6 has",)
    assert rr.generated_at == datetime(2026, 1, 2, 1, 4, 5)
    assert rr.command is None
    assert rr.adapter_type == "snowflake"
    assert adapter_from_run_results(rr) == "snowflake"
    node = rr.results[0]
    assert (node.name, node.status, node.message) == ("dim_customers.v2", "error", "42")
    assert (node.failures, node.execution_time, node.relation_name) == (None, None, None)
    assert node.adapter_response == {}


def test_unreadable_generated_at():
    metadata = {"dbt_schema_version": V6, "generated_at": "yesterday"}
    rr = parse_run_results({"metadata": metadata, "results": []})
    assert rr.generated_at is None
    assert rr.notes == ("metadata.generated_at 'yesterday' unreadable: cannot tell if stale",)


def test_bom_is_accepted():
    rr = parse_run_results(b"\xef\xbb\xbf" + _load("Aasma-Aas__Kasper_Sindri_Media__run_results.json"))
    assert rr.counts() == {"error": 1}


# --------------------------------------------------------------------------- staleness


def test_is_stale():
    rr = parse_run_results(_load("2moonyo__global-trade-intelligence-pipeline__run_results.json"))
    # generated 2026-04-12T19:18:44.606134Z; the invocation started at 19:18:10
    assert rr.is_stale(datetime(2026, 4, 12, 19, 18, 10)) is False
    assert rr.is_stale(datetime(2026, 4, 12, 19, 18, 44, 606134)) is False
    assert rr.is_stale(datetime(2026, 4, 12, 19, 18, 44, 606135)) is True
    assert rr.is_stale(datetime(2026, 4, 13, 2, 0)) is True  # next night's command, yesterday's file
    assert rr.is_stale(None) is False
    # an aware start is compared in UTC
    cest = timezone(timedelta(hours=2))
    assert rr.is_stale(datetime(2026, 4, 12, 21, 18, 10, tzinfo=cest)) is False
    assert rr.is_stale(datetime(2026, 4, 12, 21, 30, tzinfo=cest)) is True


# --------------------------------------------------------------------------- adapter


@pytest.mark.parametrize(
    ("response", "adapter"),
    [
        ({"_message": "SUCCESS 1", "code": "SUCCESS", "rows_affected": 1,
          "query_id": "01b2c3d4-0000-a1b2-0000-0001a2b3c4d5"}, "snowflake"),
        ({"_message": "CREATE TABLE (218.0 rows, 18.5 KiB processed)", "code": "CREATE TABLE",
          "rows_affected": 218, "bytes_processed": 18931, "bytes_billed": 10485760, "location": "US",
          "project_id": "p", "job_id": "j", "slot_ms": 1}, "bigquery"),
        ({"_message": "OK", "query_id": "01f06ed3-8a5a-13b7-a2be-c8402ecb2a0e"}, "databricks"),
        ({"_message": "SUCCESS", "rows_affected": 12}, "redshift"),
        ({"_message": "SUCCESS", "query": "select 1", "query_id": "20240101_000000_00001_abcde",
          "rows_affected": 1}, "trino"),
        ({"_message": "INSERT 0 100", "code": "INSERT", "rows_affected": 100}, "postgres"),
        ({"_message": "OK"}, None),
        ({"rows_affected": 0}, None),
        ({}, None),
    ],
)
def test_adapter_from_response_shapes(response, adapter):
    raw = {"results": [{"unique_id": "model.p.m", "status": "success", "adapter_response": response}]}
    assert adapter_from_run_results(raw) == adapter


def test_strong_adapter_signal_beats_postgres_like_seed_responses():
    # yu-iskw (BigQuery, dbt 1.0): seeds answer {"_message": "INSERT 100", "code": "INSERT", ...}
    raw = json.loads(_load("yu-iskw__dbt-artifacts-parser__run_results_v4_dbt1.0_bigquery.json"))
    seeds = [r for r in raw["results"] if r["unique_id"].startswith("seed.")]
    assert seeds[0]["adapter_response"] == {"_message": "INSERT 100", "code": "INSERT", "rows_affected": 100}
    assert adapter_from_run_results({"results": seeds}) == "postgres"  # alone, ambiguous
    assert adapter_from_run_results(raw) == "bigquery"


def test_adapter_from_log():
    assert adapter_from_log(CONNECTION_FAILURE) == "snowflake"
    assert adapter_from_log(TEST_FAILURE) == "postgres"
    assert adapter_from_log("\x1b[0m12:00:00  Registered adapter: databricks=1.8.7\n") == "databricks"
    assert adapter_from_log(DEPS_FAILURE) is None
    assert adapter_from_log("") is None


# --------------------------------------------------------------------------- log fallback

# dbt 1.7 + Snowflake, `dbt build --fail-fast`: with --fail-fast dbt prints the failing node's
# error as soon as it happens (print_run_result_error on FailFastError) and again in the
# end-of-run summary. Message text from a real 002003 error as in dbt-snowflake issues.
FAIL_FAST_BUILD = (
    "\x1b[0m09:14:02  Running with dbt=1.7.4\n"
    "\x1b[0m09:14:03  Registered adapter: snowflake=1.7.1\n"
    "\x1b[0m09:14:04  Found 12 models, 31 tests, 4 sources, 0 exposures, 0 metrics, 548 macros, 0 groups, "
    "0 semantic models\n"
    "\x1b[0m09:14:04  \n"
    "\x1b[0m09:14:06  Concurrency: 8 threads (target='prod')\n"
    "\x1b[0m09:14:06  \n"
    "\x1b[0m09:14:06  1 of 43 START sql view model analytics.stg_customers ..........................."
    " [RUN]\n"
    "\x1b[0m09:14:06  2 of 43 START sql view model analytics.stg_orders .............................."
    " [RUN]\n"
    "\x1b[0m09:14:07  1 of 43 OK created sql view model analytics.stg_customers ...................... "
    "[\x1b[32mSUCCESS 1\x1b[0m in 0.92s]\n"
    "\x1b[0m09:14:07  2 of 43 ERROR creating sql view model analytics.stg_orders ..................... "
    "[\x1b[31mERROR\x1b[0m in 0.81s]\n"
    "\x1b[0m09:14:07  \n"
    "\x1b[0m09:14:07    Database Error in model stg_orders (models/staging/stg_orders.sql)\n"
    "  002003 (42S02): SQL compilation error:\n"
    "  Object 'RAW.JAFFLE_SHOP.ORDERS' does not exist or not authorized.\n"
    "  compiled Code at target/run/jaffle_shop/models/staging/stg_orders.sql\n"
    "\x1b[0m09:14:07  CANCEL query model.jaffle_shop.stg_payments .................................... "
    "[\x1b[31mCANCEL\x1b[0m]\n"
    "\x1b[0m09:14:07  \n"
    "\x1b[0m09:14:07  Finished running 6 view models, 6 table models, 31 tests in 0 hours 0 minutes"
    " and 5.02 seconds (5.02s).\n"
    "\x1b[0m09:14:07  \n"
    "\x1b[0m09:14:07  \x1b[31mCompleted with 1 error and 0 warnings:\x1b[0m\n"
    "\x1b[0m09:14:07  \n"
    "\x1b[0m09:14:07    Database Error in model stg_orders (models/staging/stg_orders.sql)\n"
    "  002003 (42S02): SQL compilation error:\n"
    "  Object 'RAW.JAFFLE_SHOP.ORDERS' does not exist or not authorized.\n"
    "  compiled Code at target/run/jaffle_shop/models/staging/stg_orders.sql\n"
    "\x1b[0m09:14:07  \n"
    "\x1b[0m09:14:07  Done. PASS=1 WARN=0 ERROR=1 SKIP=41 TOTAL=43\n"
)

# dbt 1.7 + Snowflake, `dbt run` when the warehouse cannot be reached: dbt dies while listing
# schemas, before any node runs (so no fresh run_results.json). The 250001 wording is from
# dbt-labs/dbt-snowflake#70; the "Finished running  in …" / "Encountered an error:" shape from
# Data-Engineer-Camp/dbt-dimensional-modelling#3.
CONNECTION_FAILURE = (
    "\x1b[0m02:00:11  Running with dbt=1.7.4\n"
    "\x1b[0m02:00:12  Registered adapter: snowflake=1.7.1\n"
    "\x1b[0m02:00:13  Found 45 models, 120 tests, 12 sources, 0 exposures, 0 metrics, 590 macros, 0 groups, "
    "0 semantic models\n"
    "\x1b[0m02:00:13  \n"
    "\x1b[0m02:01:14  \n"
    "\x1b[0m02:01:14  Finished running  in 0 hours 1 minutes and 1.12 seconds (61.12s).\n"
    "\x1b[0m02:01:14  Encountered an error:\n"
    "Database Error\n"
    "  250001: Could not connect to Snowflake backend after 0 attempt(s).Aborting\n"
)

# dbt 1.9 `dbt deps` with hub.getdbt.com unreachable, traceback and all
# (dbt-labs/dbt-core#11877; frames shortened).
DEPS_FAILURE = (
    "\x1b[0m05:45:22  Running with dbt=1.9.6\n"
    "\x1b[0m05:46:36  Encountered an error:\n"
    "External connection exception occurred: HTTPSConnectionPool(host='hub.getdbt.com', port=443): "
    "Max retries exceeded with url: /api/v1/index.json (Caused by NameResolutionError(\"<urllib3.connection."
    "HTTPSConnection object at 0x7ffffa9a87d0>: Failed to resolve 'hub.getdbt.com' ([Errno -3] Temporary "
    "failure in name resolution)\"))\n"
    "\x1b[0m05:46:36  Traceback (most recent call last):\n"
    '  File "/usr/local/lib/python3.12/site-packages/urllib3/connection.py", line 198, in _new_conn\n'
    "    sock = connection.create_connection(\n"
    "           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    '  File "/usr/local/lib/python3.12/socket.py", line 963, in getaddrinfo\n'
    "    for res in _socket.getaddrinfo(host, port, family, type, proto, flags):\n"
    "socket.gaierror: [Errno -3] Temporary failure in name resolution\n"
    "\n"
    "The above exception was the direct cause of the following exception:\n"
    "\n"
    "Traceback (most recent call last):\n"
    '  File "/usr/local/lib/python3.12/site-packages/urllib3/connection.py", line 205, in _new_conn\n'
    "    raise NameResolutionError(self.host, self, e) from e\n"
    "urllib3.exceptions.NameResolutionError: <urllib3.connection.HTTPSConnection object at 0x7ffffad3b470>: "
    "Failed to resolve 'hub.getdbt.com' ([Errno -3] Temporary failure in name resolution)\n"
    "\n"
    "During handling of the above exception, another exception occurred:\n"
    "\n"
    "Traceback (most recent call last):\n"
    '  File "/usr/local/lib/python3.12/site-packages/dbt/clients/registry.py", line 38, in _get\n'
    "    resp = requests.get(url, timeout=30)\n"
    '  File "/usr/local/lib/python3.12/site-packages/requests/adapters.py", line 700, in send\n'
    "    raise ConnectionError(e, request=request)\n"
    "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='hub.getdbt.com', port=443): "
    "Max retries exceeded with url: /api/v1/index.json\n"
)

# dbt 1.8 + Postgres, `dbt test` with one failing data test: RunResultFailure is red, the
# "Got N results" line and the compiled path are separate timestamped events.
TEST_FAILURE = (
    "\x1b[0m13:02:55  Running with dbt=1.8.3\n"
    "\x1b[0m13:02:55  Registered adapter: postgres=1.8.2\n"
    "\x1b[0m13:02:56  Found 5 models, 3 seeds, 20 data tests, 417 macros\n"
    "\x1b[0m13:02:56  \n"
    "\x1b[0m13:02:56  Concurrency: 4 threads (target='prod')\n"
    "\x1b[0m13:02:56  \n"
    "\x1b[0m13:02:56  1 of 2 START test not_null_orders_order_id ....................................."
    " [RUN]\n"
    "\x1b[0m13:02:56  2 of 2 START test unique_orders_order_id ......................................."
    " [RUN]\n"
    "\x1b[0m13:02:56  1 of 2 PASS not_null_orders_order_id ........................................... "
    "[\x1b[32mPASS\x1b[0m in 0.05s]\n"
    "\x1b[0m13:02:56  2 of 2 FAIL 3 unique_orders_order_id ........................................... "
    "[\x1b[31mFAIL 3\x1b[0m in 0.06s]\n"
    "\x1b[0m13:02:56  \n"
    "\x1b[0m13:02:56  Finished running 2 data tests in 0 hours 0 minutes and 0.21 seconds (0.21s).\n"
    "\x1b[0m13:02:56  \n"
    "\x1b[0m13:02:56  \x1b[31mCompleted with 1 error and 0 warnings:\x1b[0m\n"
    "\x1b[0m13:02:56  \n"
    "\x1b[0m13:02:56  \x1b[31mFailure in test unique_orders_order_id (models/schema.yml)\x1b[0m\n"
    "\x1b[0m13:02:56    Got 3 results, configured to fail if != 0\n"
    "\x1b[0m13:02:56  \n"
    "\x1b[0m13:02:56    compiled code at target/compiled/jaffle_shop/models/schema.yml/"
    "unique_orders_order_id.sql\n"
    "\x1b[0m13:02:56  \n"
    "\x1b[0m13:02:56  Done. PASS=1 WARN=0 ERROR=1 SKIP=0 TOTAL=2\n"
)

# dbt 1.6 + Postgres, a ref to a missing model stops dbt at parse time (DalgoT4D/webapp#628).
COMPILATION_AT_PARSE = (
    "\x1b[0m04:48:47  Running with dbt=1.6.6\n"
    "\x1b[0m04:48:47  Registered adapter: postgres=1.6.6\n"
    "\x1b[0m04:48:47  Encountered an error:\n"
    "Compilation Error\n"
    "  Model 'model.dbtrepo.diabetes3' (models/intermediate/diabetes3.sql) depends on a node named "
    "'diabetes2' which was not found\n"
)

# dbt 1.x `dbt compile` where the error names a node inside "Encountered an error:"
# (duneanalytics/spellbook#5744).
NESTED_NODE = (
    "09:23:02  Running with dbt=1.7.9\n"
    "09:23:02  Encountered an error:\n"
    "Runtime Error\n"
    "  Database Error in model depin_revenue (models/_sector/depin/depin_revenue.sql)\n"
    "    failed to execute: HTTPConnectionPool(host='trino', port=1234): Max retries exceeded with url: "
    "/v1/statement (Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at "
    "0x7fd5d60afe80>: Failed to establish a new connection: [Errno -3] Temporary failure in name "
    "resolution'))\n"
)

# dbt 1.11 + DuckDB on Windows, summary of a `dbt build` (message from the Kshitijbhatt1998 sample).
WINDOWS_RUNTIME_ERROR = (
    "\x1b[0m12:36:45  \x1b[31mCompleted with 1 error, 0 partial successes, and 0 warnings:\x1b[0m\n"
    "\x1b[0m12:36:45  \n"
    "\x1b[0m12:36:45    Runtime Error in model stg_transactions (models\\staging\\stg_transactions.sql)\n"
    "  Binder Error: Referenced column \"dist2\" not found in FROM clause!\n"
    "  Candidate bindings: \"dist1\", \"has_identity\", \"addr2\", \"isFraud\", \"ProductCD\"\n"
    "  \n"
    "  LINE 26:     dist1, dist2,\n"
    "                      ^\n"
    "\x1b[0m12:36:45  \n"
    "\x1b[0m12:36:45  Done. PASS=7 WARN=0 ERROR=1 SKIP=14 NO-OP=0 TOTAL=22\n"
)


def test_fail_fast_error_printed_twice_is_kept_once():
    assert extract_log_errors(FAIL_FAST_BUILD) == [
        LogError(
            title="Database Error in model stg_orders (models/staging/stg_orders.sql)",
            node="stg_orders",
            message="002003 (42S02): SQL compilation error:\n"
                    "Object 'RAW.JAFFLE_SHOP.ORDERS' does not exist or not authorized.\n"
                    "compiled Code at target/run/jaffle_shop/models/staging/stg_orders.sql",
        )
    ]


def test_snowflake_connection_failure():
    assert extract_log_errors(CONNECTION_FAILURE) == [
        LogError(
            title="Encountered an error:",
            node=None,
            message="Database Error\n"
                    "250001: Could not connect to Snowflake backend after 0 attempt(s).Aborting",
        )
    ]


def test_deps_failure_traceback_reduced_to_last_exception():
    [error] = extract_log_errors(DEPS_FAILURE)
    assert error.title == "Encountered an error:"
    assert error.node is None
    first, last = error.message.split("\n")
    pool = "HTTPSConnectionPool(host='hub.getdbt.com', port=443)"
    assert first.startswith(f"External connection exception occurred: {pool}: Max retries exceeded")
    assert last == (f"requests.exceptions.ConnectionError: {pool}: "
                    "Max retries exceeded with url: /api/v1/index.json")
    assert "Traceback" not in error.message and "File " not in error.message


def test_failure_in_test():
    assert extract_log_errors(TEST_FAILURE) == [
        LogError(
            title="Failure in test unique_orders_order_id (models/schema.yml)",
            node="unique_orders_order_id",
            message="Got 3 results, configured to fail if != 0\n"
                    "compiled code at target/compiled/jaffle_shop/models/schema.yml/"
                    "unique_orders_order_id.sql",
        )
    ]


def test_compilation_error_at_parse_time():
    assert extract_log_errors(COMPILATION_AT_PARSE) == [
        LogError(
            title="Encountered an error:",
            node=None,
            message="Compilation Error\nModel 'model.dbtrepo.diabetes3' (models/intermediate/diabetes3.sql) "
                    "depends on a node named 'diabetes2' which was not found",
        )
    ]


def test_node_named_inside_encountered_an_error():
    [error] = extract_log_errors(NESTED_NODE)
    assert error.title == "Encountered an error:"
    assert error.node == "depin_revenue"
    assert error.message.startswith(
        "Runtime Error\nDatabase Error in model depin_revenue (models/_sector/depin/depin_revenue.sql)\n"
        "failed to execute: HTTPConnectionPool(host='trino', port=1234)"
    )


def test_windows_paths_and_blank_line_inside_message():
    [error] = extract_log_errors(WINDOWS_RUNTIME_ERROR)
    assert error.title == "Runtime Error in model stg_transactions (models\\staging\\stg_transactions.sql)"
    assert error.node == "stg_transactions"
    assert error.message == (
        'Binder Error: Referenced column "dist2" not found in FROM clause!\n'
        'Candidate bindings: "dist1", "has_identity", "addr2", "isFraud", "ProductCD"\n'
        "LINE 26:     dist1, dist2,\n"
        "^"
    )


def test_log_without_timestamps_dbt_0_18_deps():
    # calogica/dbt-expectations#10
    log = (
        "Running with dbt=0.18.1\n"
        "Encountered an error:\n"
        "Got a non-zero returncode running: ['git', 'clone', '--depth', '1', "
        "'git@github.com:calogica/dbt-expectations.git', '302c8ef7290af78b223a10403d76f27f']\n"
    )
    assert extract_log_errors(log) == [
        LogError("Encountered an error:", None,
                 "Got a non-zero returncode running: ['git', 'clone', '--depth', '1', "
                 "'git@github.com:calogica/dbt-expectations.git', '302c8ef7290af78b223a10403d76f27f']")
    ]


def test_several_errors_in_summary_keep_their_order():
    log = (
        "12:00:09  Completed with 2 errors and 0 warnings:\n"
        "12:00:09  \n"
        "12:00:09    Database Error in model a (models/a.sql)\n"
        "  relation \"raw.a\" does not exist\n"
        "12:00:09  \n"
        "12:00:09    Compilation Error in snapshot orders_snapshot (snapshots/orders_snapshot.sql)\n"
        "  'dbt_utils' is undefined\n"
        "12:00:09  \n"
        "12:00:09  Done. PASS=0 WARN=0 ERROR=2 SKIP=0 TOTAL=2\n"
    )
    assert [(e.node, e.message) for e in extract_log_errors(log)] == [
        ("a", 'relation "raw.a" does not exist'),
        ("orders_snapshot", "'dbt_utils' is undefined"),
    ]


def test_fusion_error_line():
    # dbt-labs/dbt-fusion#1545
    log = (
        "dbt-fusion 2.0.0-preview.190\n"
        "   Loading profiles.yml\n"
        "error: dbt1001: Failed to read file: /repo/target/run_results.json: No such file or directory\n"
    )
    assert extract_log_errors(log) == [
        LogError("error: dbt1001", None,
                 "Failed to read file: /repo/target/run_results.json: No such file or directory")
    ]


def test_fusion_error_between_progress_lines():
    # Shape assumed: progress lines as in dbt-labs/dbt-fusion#828, "error: dbtNNNN:" as in #1545,
    # the message as in the Ajcamara Fusion sample.
    log = (
        "dbt-fusion 2.0.0-preview.190\n"
        "   Loading ~/.dbt/profiles.yml\n"
        "error: dbt1000: Database Error in model product_raw (models/batch_scd2/product_raw.sql)\n"
        "  [Snowflake] 002003 (02000): SQL compilation error:\n"
        "  Stage 'DEA_BATCH_SCD2.RAW.DEA_BATCH_SCD2_STAGE' does not exist or not authorized.\n"
        "    Failed [  1.74s] model RAW.product_raw (table)\n"
        "  Finished 'run' target 'dev' with 1 error in 3s 312ms\n"
    )
    assert extract_log_errors(log) == [
        LogError("error: dbt1000", "product_raw",
                 "Database Error in model product_raw (models/batch_scd2/product_raw.sql)\n"
                 "[Snowflake] 002003 (02000): SQL compilation error:\n"
                 "Stage 'DEA_BATCH_SCD2.RAW.DEA_BATCH_SCD2_STAGE' does not exist or not authorized.")
    ]


def test_encountered_an_error_with_text_on_the_same_line():
    log = "Encountered an error while reading profiles:\n  ERROR: Runtime Error\n"
    assert extract_log_errors(log) == [
        LogError("Encountered an error while reading profiles:", None, "ERROR: Runtime Error")
    ]
    assert extract_log_errors("Encountered an error: boom") == [
        LogError("Encountered an error:", None, "boom")
    ]


def test_bare_traceback_without_dbt_header():
    log = (
        "Traceback (most recent call last):\n"
        '  File "/usr/local/bin/dbt", line 5, in <module>\n'
        "    from dbt.cli.main import cli\n"
        "ModuleNotFoundError: No module named 'dbt.adapters.snowflake'\n"
    )
    assert extract_log_errors(log) == [
        LogError("Traceback", None, "ModuleNotFoundError: No module named 'dbt.adapters.snowflake'")
    ]


def test_unrecognised_log_returns_the_tail():
    lines = [f"step {i}" for i in range(30)]
    fatal = "fatal: could not read Username for 'https://github.com': terminal prompts disabled"
    log = "\n\n".join(lines) + f"\n{fatal}\n"
    [error] = extract_log_errors(log)
    assert error.title == "Unrecognised log" and error.node is None
    tail = error.message.split("\n")
    assert len(tail) == 20
    assert tail[0] == "step 11"
    assert tail[-1] == fatal


def test_unrecognised_long_log_is_trimmed():
    log = "\n".join("x" * 200 for _ in range(30))
    [error] = extract_log_errors(log)
    assert len(error.message) == 1000 and error.message.startswith("…")


def test_long_message_is_trimmed():
    log = "12:00:00  Encountered an error:\nDatabase Error\n"
    log += "".join(f"  line {i} {'y' * 80}\n" for i in range(40))
    [error] = extract_log_errors(log)
    assert len(error.message) <= 1000 and error.message.endswith("…")


def test_empty_log():
    assert extract_log_errors("") == []
    assert extract_log_errors("\n  \n\x1b[0m") == []


def test_successful_log_has_no_errors_but_is_unrecognised():
    done = "Done. PASS=3 WARN=0 ERROR=0 SKIP=0 TOTAL=3"
    log = f"\x1b[0m12:00:00  Running with dbt=1.8.0\n\x1b[0m12:00:05  {done}\n"
    assert extract_log_errors(log) == [LogError("Unrecognised log", None, f"Running with dbt=1.8.0\n{done}")]


def test_large_log_is_quick():
    body = "".join(
        f"\x1b[0m12:00:{i % 60:02d}  {i} of 5000 OK created sql view model analytics.m{i} .... "
        f"[\x1b[32mSUCCESS 1\x1b[0m in 0.10s]\n"
        for i in range(5000)
    )
    start = time.perf_counter()
    errors = extract_log_errors(body + FAIL_FAST_BUILD)
    assert time.perf_counter() - start < 1.0
    assert [e.node for e in errors] == ["stg_orders"]


def test_strip_ansi():
    coloured = "\x1b[0m12:00:00  \x1b[31mCompleted with 1 error\x1b[0m"
    assert strip_ansi(coloured) == "12:00:00  Completed with 1 error"
    assert strip_ansi("\x1b]8;;https://docs.getdbt.com\x1b\\docs\x1b]8;;\x1b\\") == "docs"
    # a relay that dropped the ESC byte (DalgoT4D/webapp#628: " [0m04:48:47  Running with dbt=1.6.6")
    assert strip_ansi(" [0m04:48:47  Running with dbt=1.6.6") == " 04:48:47  Running with dbt=1.6.6"
    assert strip_ansi("[[31mERROR[0m in 0.81s]") == "[ERROR in 0.81s]"
    assert strip_ansi("select a[1] from t [model] [m]") == "select a[1] from t [model] [m]"


def test_relayed_log_with_dropped_escape_bytes():
    log = (" [0m04:48:47  Running with dbt=1.6.6\n"
           " [0m04:48:47  Encountered an error:\nCompilation Error\n  boom\n")
    assert extract_log_errors(log) == [LogError("Encountered an error:", None, "Compilation Error\nboom")]


def test_dbt_log_file_format():
    log = (
        "10:15:55.231752 [info ] [MainThread]: Running with dbt=1.0.1\n"
        "10:15:58.100000 [error] [MainThread]: Encountered an error:\n"
        "Database Error\n"
        "  250001: Could not connect to Snowflake backend after 0 attempt(s).Aborting\n"
        "10:15:58.100100 [debug] [MainThread]: Flushing usage events\n"
    )
    assert extract_log_errors(log) == [
        LogError("Encountered an error:", None,
                 "Database Error\n250001: Could not connect to Snowflake backend after 0 attempt(s).Aborting")
    ]
