"""``triage.codes``: machine codes are found by the syntax each vendor prints, never as bare numbers."""

from __future__ import annotations

import pytest

from triage.classify import RuleSet, classify
from triage.codes import CodeKind, code_matches, configured_limit, extract, normalise


def codes(text: str, kind: CodeKind) -> list[str]:
    return [c.value for c in extract(text, frozenset({kind}))]


@pytest.mark.parametrize(("text", "kind", "found"), [
    ("000625 (57014): Statement 'x' has locked table", CodeKind.SNOWFLAKE, ["000625"]),
    ("000625 (57014): Statement 'x' has locked table", CodeKind.SQLSTATE, ["57014"]),
    ("250001: Could not connect to Snowflake backend", CodeKind.SNOWFLAKE, ["250001"]),
    ("('40001', '[40001] [Microsoft][ODBC Driver 17 for SQL Server]Transaction (Process ID 52) was deadlocked "
     "(1205) (SQLExecDirectW)')", CodeKind.SQLSERVER, ["1205"]),
    ("Msg 208, Level 16, State 1, Line 1", CodeKind.SQLSERVER, ["208"]),
    ("(1213, 'Deadlock found when trying to get lock; try restarting transaction')", CodeKind.MYSQL, ["1213"]),
    ("ERROR 2013 (HY000): Lost connection to MySQL server during query", CodeKind.MYSQL, ["2013"]),
    ("Code: 202. DB::Exception: Too many simultaneous queries.", CodeKind.CLICKHOUSE, ["202"]),
    ("ERROR: 1023 DETAIL: Serializable isolation violation on table", CodeKind.REDSHIFT, ["1023"]),
    ("google.api_core.exceptions.ServiceUnavailable: 503 GET https://bigquery.googleapis.com/x", CodeKind.HTTP,
     ["503"]),
    ("IO Error: Unable to connect to URL \"s3://b/k\": 503 (Service Unavailable)", CodeKind.HTTP, ["503"]),
    ("error: dbt1308: context deadline exceeded", CodeKind.FUSION, ["1308"]),
    ("ERROR: could not serialize access (SQLSTATE 40001)", CodeKind.SQLSTATE, ["40001"]),
])
def test_each_kind_is_found_by_its_vendors_syntax(text: str, kind: CodeKind, found: list[str]) -> None:
    assert codes(text, kind) == found


@pytest.mark.parametrize(("text", "kind"), [
    ("Got 1205 results, configured to fail if != 0", CodeKind.SQLSERVER),
    ("Got 1213 results, configured to fail if != 0", CodeKind.MYSQL),
    ("Completed successfully in 202 seconds", CodeKind.CLICKHOUSE),
    ("Line Number 20 of model orders", CodeKind.SQLSERVER),
    ("processed 503 rows", CodeKind.HTTP),
])
def test_bare_numbers_are_not_codes(text: str, kind: CodeKind) -> None:
    assert codes(text, kind) == []


def test_sqlstate_classes_match_by_prefix() -> None:
    assert code_matches("08006", "08*") and not code_matches("28000", "08*") and code_matches("40001", "40001")


def test_a_configured_limit_is_named() -> None:
    assert configured_limit("canceling statement due to statement timeout; statement_timeout=300s") \
        == "statement_timeout"
    assert configured_limit("Read timed out. (read timeout=300)") == "read timeout=300"
    assert configured_limit("Lost connection to MySQL server") is None


def test_normalised_errors_compare_equal_across_runs() -> None:
    a = ("Statement reached its statement or warehouse timeout of 300 second(s) and was canceled. "
         "query id 01b2c3d4-0000-4a5b-8c6d-0123456789ab")
    b = ("Statement reached its statement or warehouse timeout of 301 second(s) and was canceled. "
         "query id 9f8e7d6c-1111-4a5b-8c6d-ba9876543210")
    assert normalise(a) == normalise(b)
    assert normalise("relation 'a' does not exist") == normalise("relation 'b' does not exist")


def test_a_vendor_code_outranks_a_generic_sqlstate() -> None:
    """000625 (57014) is Snowflake's lock-waiters error (transient), not any cancelled query (conditional)."""
    result = classify("000625 (57014): Statement 'x' has locked table 'T' and the number of waiters for this "
                      "lock exceeds 20", adapter="snowflake", rules=RuleSet.load())
    assert (result.verdict, result.rule, result.code) == ("transient", "snowflake_code_lock_waiters",
                                                          "snowflake:000625")
    assert result.reference.startswith("https://docs.snowflake.com/")


def test_every_code_table_entry_names_its_source() -> None:
    rules = RuleSet.load().rules
    assert [r.name for r in rules if r.kind is not None and not r.source] == []
    assert sum(1 for r in rules if r.kind is not None) >= 50


def test_synapse_six_digit_numbers_are_sql_server_codes() -> None:
    """Synapse numbers its own errors with six digits (104455, 103010); pyodbc and SSMS print them the same way."""
    from triage.codes import CodeKind, extract

    pyodbc = "[SQL Server]USE statement is not supported to switch between databases. (104455) (SQLExecDirectW)')"
    ssms = "Msg 103010, Level 16, State 1, Line 12\nParse error at line: 528"
    assert [c.value for c in extract(pyodbc, frozenset({CodeKind.SQLSERVER}))] == ["104455"]
    assert [c.value for c in extract(ssms, frozenset({CodeKind.SQLSERVER}))] == ["103010"]


@pytest.mark.parametrize(("text", "kind", "found"), [
    # Hive JDBC / beeline print the SQLSTATE in the SQLException's own form
    ("Error: org.apache.thrift.transport.TTransportException (state=08S01,code=0)", CodeKind.SQLSTATE, ["08S01"]),
    # Google's front-end HTML error page
    ("<html><title>Error 503 (Server Error)!!1</title></html>", CodeKind.HTTP, ["503"]),
    # airlift's HTTP client inside Trino
    ("Expected response code from http://w1:8080/v1/task/t.1.0/status to be 200, but was 500", CodeKind.HTTP, ["500"]),
    # clickhouse-go v2 and the HTTP interface
    ("code: 202, message: Too many simultaneous queries. Maximum: 100", CodeKind.CLICKHOUSE, ["202"]),
    ("X-ClickHouse-Exception-Code: 159", CodeKind.CLICKHOUSE, ["159"]),
    # SQL Server severity levels (sqlcmd/SSMS and FreeTDS)
    ("Msg 50000, Level 16, State 1, Line 2\nOrder total must be positive", CodeKind.SEVERITY, ["16"]),
    ("DB-Lib error message 20018, severity 17:\nGeneral SQL Server error", CodeKind.SEVERITY, ["17"]),
    # TiDB numbers in PHP PDO's form
    ("SQLSTATE[HY000]: General error: 8028 Information schema is changed during the execution", CodeKind.MYSQL,
     ["8028"]),
])
def test_more_vendor_syntaxes_are_found(text: str, kind: CodeKind, found: list[str]) -> None:
    assert codes(text, kind) == found


@pytest.mark.parametrize(("text", "kind"), [
    ("Level 16 of the report was generated", CodeKind.SEVERITY),
    ("Msg 0, Level 11, State 0, Line 0\nA severe error occurred on the current command.", CodeKind.SEVERITY),
    ("the error code: 12, message: none", CodeKind.SQLSTATE),
    ("Error 503 pages were counted", CodeKind.HTTP),
])
def test_new_syntaxes_do_not_take_bare_numbers(text: str, kind: CodeKind) -> None:
    assert codes(text, kind) == []


def test_a_severity_level_is_generic_evidence_below_a_vendor_number() -> None:
    """Msg 3960 is Level 16 but retryable: the vendor number wins over its severity class."""
    rules = RuleSet.load()
    conflict = classify("Msg 3960, Level 16, State 2, Line 1\nSnapshot isolation transaction aborted due to update "
                        "conflict.", adapter="sqlserver", rules=rules)
    assert (conflict.verdict, conflict.rule) == ("transient", "sqlserver_code_transient")
    user = classify("Msg 50000, Level 16, State 1, Line 2\nOrder total must be positive", adapter="sqlserver",
                    rules=rules)
    assert (user.verdict, user.rule, user.evidence) == ("deterministic", "sqlserver_severity_user_error",
                                                       "generic_code")
    assert user.code == "severity:16"  # what the verdict rests on
