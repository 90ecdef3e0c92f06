"""Machine codes in a failure message: SQLSTATEs, vendor error numbers, error classes, HTTP statuses.

Why codes first: a vendor's code means the same thing in every wording, language and wrapper (a
JDBC driver, dbt, a Python connector), while phrases drift between versions. The code tables in
``triage/defaults/rules.yaml`` (rules with ``kind:`` and ``codes:``) are built from the vendors'
own catalogues and the connectors' own retry lists; this module only finds the codes.

Each kind has its own extractor, anchored on the syntax the vendor prints (``Code: 202``,
``002003 (42S02)``, ``(1213, 'Deadlock ...')``, ``SQLSTATE 40001``), never on a bare number: a bare
``1205`` may be a row count. ``name`` is the exception: error classes and reasons are identifiers
(``DELTA_CONCURRENT_APPEND``, ``rateLimitExceeded``, ``TOO_MANY_PARTS``); a rule lists the exact,
case-sensitive identifiers it means and any token of the message may match one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from triage.enums import TextEnum


class CodeKind(TextEnum):
    """The code families a rule may list (``kind:`` in the rules file)."""

    SQLSTATE = "sqlstate"  # 5 characters, ISO/ANSI SQL and ODBC: 40001, 57014, 08S01, HY000
    SNOWFLAKE = "snowflake"  # 6 digits: 000625, 390114, 250001
    SQLSERVER = "sqlserver"  # SQL Server / Azure SQL / Synapse / Fabric error numbers: 1205, 40613
    MYSQL = "mysql"  # MySQL / MariaDB error numbers: 1213, 1205, 2006, 2013
    CLICKHOUSE = "clickhouse"  # ClickHouse error codes: Code: 202
    REDSHIFT = "redshift"  # Redshift's own numbers: ERROR: 1023
    HTTP = "http"  # HTTP status codes: 429, 503
    FUSION = "fusion"  # dbt Fusion: dbt1308
    SEVERITY = "severity"  # SQL Server severity level of a numbered error: Msg 105611, Level 16 -> 16
    NAME = "name"  # identifiers: BigQuery reasons, Databricks/Spark error classes, Trino names, exception names


#: Five characters with at least one digit: 40001, 42P01, HY000, P0001, XX000, F0000 (classes may start with a
#: letter; the digit keeps a bracketed word such as [ERROR] from passing for one).
_SQLSTATE = r"((?=[A-Z]{0,4}[0-9])[0-9A-Z]{5})"
_EXTRACTORS: dict[CodeKind, tuple[re.Pattern[str], ...]] = {
    CodeKind.SQLSTATE: (
        re.compile(r"(?i)\bSQL[ _-]?STATE\b[\s:=\[\(\"']*" + _SQLSTATE + r"\b"),
        re.compile(r"\b\d{4,6} \(" + _SQLSTATE + r"\)"),  # Snowflake 002003 (42S02), MySQL 1205 (HY000)
        re.compile(r"\[" + _SQLSTATE + r"\](?=\s*\[|\s*:|\s*\()"),  # ODBC [08S01] [Microsoft]...
        re.compile(r"\('" + _SQLSTATE + r"',"),  # pyodbc ('08S01', '[08S01] ...')
        re.compile(r"\bERROR:\s+" + _SQLSTATE + r":"),  # psql VERBOSITY verbose: ERROR:  40001: ...
        re.compile(r"(?i)\b(?:pgcode|sqlState|error state)[\s:=\"']*" + _SQLSTATE + r"\b"),
        re.compile(r"\(state=" + _SQLSTATE + r",code=-?\d+\)"),  # Hive JDBC / beeline: (state=08S01,code=0)
    ),
    CodeKind.SNOWFLAKE: (
        re.compile(r"(?<![\d.])(\d{6}) \([0-9A-Z]{5}\)"),  # 000625 (57014): ...
        re.compile(r"(?<![\d.:-])(\d{6}): (?=[A-Z])"),  # 250001: Could not connect ...
        re.compile(r"(?i)\b(?:error ?code|errno|code)[\s:=\"']+(\d{6})\b"),
    ),
    CodeKind.SQLSERVER: (
        re.compile(r"\((\d{2,6})\)\s*\(SQL\w+\)"),  # pyodbc: ... (1205) (SQLExecDirectW); Synapse: (104455)
        re.compile(r"(?i)\bMsg (\d{2,6}), Level \d+"),
        re.compile(r"(?i)\b(?:SQL Server|Azure SQL|Synapse|Fabric)\b[^\n]{0,80}?"
                   r"\berror (?:number |code )?:?\s*(\d{3,5})\b"),
        re.compile(r"(?i)\b(?:Error Number|ErrorCode|Error code|SqlError Number)[\s:=]+(\d{2,5})\b"),
        re.compile(r"(?i)\b(?:Database|Server|Resource ID)[^\n]{0,160}?\bError (\d{5})\b"),
        re.compile(r"(?i)\bError (4\d{4}|1092[89]|4991[89]|49920)\b"),  # Azure's 5-digit service errors
        re.compile(r"(?m)^\s*(4\d{4}|1092[89]): (?=[A-Z])"),  # Azure docs' form: 40552: The session has ...
    ),
    CodeKind.MYSQL: (
        re.compile(r"\((\d{4}), ?[ub]?[\"']"),  # PyMySQL / mysqlclient: (1213, 'Deadlock ...'); Python 2: u'...'
        re.compile(r"\bERROR (\d{4}) \([0-9A-Z]{5}\)"),  # mysql CLI: ERROR 1205 (HY000): ...
        re.compile(r"(?<![\d(])(\d{4}) \([0-9A-Z]{5}\):"),  # mysql-connector: 1205 (HY000): ...
        re.compile(r"(?i)\bError (?:Code|number)?:? ?(\d{4})\b[^\n]{0,3}[.:]"),  # Error Code: 1213. / Error 1205:
        re.compile(r"\bGeneral error: (\d{4}) "),  # PHP PDO: SQLSTATE[HY000]: General error: 1290 ...
    ),
    CodeKind.CLICKHOUSE: (
        re.compile(r"\bCode:\s*(\d{1,4})\b"),
        re.compile(r"(?i)\bclickhouse[^\n]{0,60}?\b(?:code|exception)[\s:=]+(\d{1,4})\b"),
        re.compile(r"\bcode: (\d{1,4}), message: "),  # clickhouse-go v2 Exception: code: 202, message: ...
        re.compile(r"(?i)\bX-ClickHouse-Exception-Code:\s*(\d{1,4})\b"),  # HTTP interface response header
    ),
    CodeKind.REDSHIFT: (
        re.compile(r"\bERROR:\s+(\d{3,4})\b"),  # ERROR: 1023 DETAIL: Serializable isolation violation ...
        re.compile(r"(?i)\bRedshift\b[^\n]{0,80}?\berror (?:code )?(\d{3,4})\b"),
    ),
    CodeKind.HTTP: (
        re.compile(r"(?i)\bHTTP(?:/\d(?:\.\d)?)?(?: Error| status| response| status code| code)?[\s:=]+([1-5]\d\d)\b"),
        re.compile(r"(?i)\b(?:status(?:[ _]code)?|response code|statusCode|http_status)[\s:=\"']+([1-5]\d\d)\b"),
        re.compile(r"\b([45]\d\d) (?:Client|Server) Error\b"),
        re.compile(r"<Response \[(\d{3})\]>"),
        re.compile(r"\b([45]\d\d) (?:GET|POST|PUT|PATCH|DELETE|HEAD) https?://"),  # google-api-core
        # Google front-end HTML error page: <title>Error 502 (Server Error)!!1</title>
        re.compile(r"\bError ([45]\d\d) \((?:Server Error|Not Found|Forbidden|Bad Request|Too Many Requests)\)"),
        # airlift HTTP client (Trino): Expected response code from <uri> to be 200, but was 408
        re.compile(r"\bExpected response code\b[^\n]{0,300}?\bbut was ([1-5]\d\d)\b"),
        # Simba Hive/Spark ODBC and JDBC drivers (Databricks): "Hive driver: 503 when connecting to resource"
        re.compile(r"\b([45]\d\d) when connecting to\b"),
        re.compile(r"(?i)\b([2-5]\d\d) \(?(?:Accepted|Bad Request|Service Unavailable|Bad Gateway|"
                   r"Gateway Time-?out|Too Many Requests|Internal Server Error|Forbidden|Unauthorized|"
                   r"Not Found|Slow ?Down|Request Timeout)\b"),
    ),
    CodeKind.FUSION: (re.compile(r"\bdbt(\d{4})\b"),),
    CodeKind.SEVERITY: (
        # sqlcmd / SSMS: Msg 208, Level 16, State 1. Not Msg 0: SqlClient's own synthetic errors (a broken
        # connection surfacing as "Msg 0, Level 11") carry a level that says nothing about the server's error.
        re.compile(r"(?i)\bMsg [1-9]\d{0,5}, Level (\d{1,2}), State\b"),
        re.compile(r"\bDB-Lib error message \d{1,6}, severity (\d{1,2})\b"),  # FreeTDS / pymssql
    ),
    CodeKind.NAME: (re.compile(r"[A-Za-z][A-Za-z0-9_]{2,}"),),
}


@dataclass(frozen=True)
class Code:
    """One code found in a message, with where it stands (for the excerpt)."""

    kind: CodeKind
    value: str
    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def extract(text: str, kinds: frozenset[CodeKind] | None = None) -> list[Code]:
    """Every code of the given kinds (all when None), in order of appearance, duplicates dropped."""
    found: dict[tuple[CodeKind, str], Code] = {}
    for kind, patterns in _EXTRACTORS.items():
        if kinds is not None and kind not in kinds:
            continue
        for pattern in patterns:
            for match in pattern.finditer(text):
                group = match.lastindex or 0
                key = (kind, match.group(group))
                if key not in found:
                    found[key] = Code(kind, match.group(group), match.start(group), match.end(group))
    return sorted(found.values(), key=lambda c: (c.start, c.kind.value))


def code_matches(value: str, listed: str) -> bool:
    """``listed`` is an exact code, or a prefix ending in ``*`` (a SQLSTATE class: ``08*``)."""
    if listed.endswith("*"):
        return value.startswith(listed[:-1])
    return value == listed


#: Names of configured limits: a timeout or memory error naming one of these hit a limit someone set,
#: so once it repeats it is the query's size, not the load (see triage.decide).
_LIMIT = re.compile(
    r"(?i)\b(WLM abort action|statement_timeout|lock_timeout|idle_in_transaction_session_timeout|"
    r"STATEMENT_TIMEOUT_IN_SECONDS|"
    r"STATEMENT_QUEUED_TIMEOUT_IN_SECONDS|max_execution_time|max_statement_time|innodb_lock_wait_timeout|"
    r"net_read_timeout|net_write_timeout|wait_timeout|max_allowed_packet|job_execution_timeout_seconds|"
    r"query_timeout|receive_timeout|send_timeout|max_memory_usage(?:_for_user)?|max_server_memory_usage|"
    r"memory_limit|query_max_memory(?:_per_node)?|query_max_execution_time|query_max_run_time|"
    r"statement_timeout_in_seconds|network_timeout|socket_timeout|read_timeout|connect_timeout|"
    r"read timeout=\d+|timeout of \d+ ?(?:s|ms|seconds|milliseconds)\b|timeout=\d+)"
)


def configured_limit(text: str) -> str | None:
    """The configured limit or setting a timeout/memory message names, if any (``statement_timeout``)."""
    match = _LIMIT.search(text)
    return match.group(1) if match else None


_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"'[^'\n]{0,200}'|\"[^\"\n]{0,200}\"|`[^`\n]{0,200}`"), "'?'"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{12,}\b", re.I), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "N"),
    (re.compile(r"\s+"), " "),
)


def normalise(text: str, limit: int = 400) -> str:
    """The error with literals, ids and numbers masked: two runs failing "the same way" compare equal.

    Numbers are masked too (codes included): a timeout after 301 s and one after 299 s are the same
    failure, and the kind of failure is already carried by the words around the code.
    """
    out = text.strip()[:4000]
    for pattern, replacement in _MASKS:
        out = pattern.sub(replacement, out)
    return out.strip().lower()[:limit]
