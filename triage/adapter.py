"""Which warehouse a run used (lowercase dbt adapter type): from the log, else from run_results.json.

Neither artifact reliably names it, so both readers are best-effort; the classifier only uses the
answer to prefer adapter-specific rules. Kept apart from the two readers because it is one question
asked of both.
"""

from __future__ import annotations

import re

from triage.dbt_log import strip_ansi
from triage.run_results import RawRunResults, RunResults, parse_run_results

_ADAPTER_RE = re.compile(r"Registered adapter: (\w+)=")
_BIGQUERY_KEYS = frozenset({"bytes_processed", "bytes_billed", "slot_ms", "job_id", "location", "project_id"})
#: Snowflake connector errors: a 6-digit code and the SQLSTATE, "002003 (42S02): …".
#: (MySQL's look alike but have 4 digits: "1064 (42000): …".)
_SNOWFLAKE_ERROR_RE = re.compile(r"(?<!\d)\d{6} \([0-9A-Z]{5}\): ")
#: Fusion prefixes a warehouse error with the adapter's name: "[Snowflake] 002003 (02000): …".
_FUSION_PREFIX_RE = re.compile(r"\[(Snowflake|BigQuery|Databricks|Redshift|Postgres)\] ")


def _adapter_from_response(r: dict) -> tuple[int, str] | None:
    """(strength, adapter) for one adapter_response; the strongest over the file wins."""
    if not r:
        return None
    if _BIGQUERY_KEYS.intersection(r):
        return 3, "bigquery"
    if "query_id" in r:
        if "query" in r:
            return 3, "trino"  # TrinoAdapterResponse carries the SQL text too
        return (3, "snowflake") if "code" in r else (2, "databricks")
    message, code = r.get("_message"), r.get("code")
    if "rows_affected" in r and code is None and message == "SUCCESS":
        return 2, "redshift"
    if (
        "rows_affected" in r
        and isinstance(code, str)
        and isinstance(message, str)
        and code == " ".join(p for p in message.split() if not p.isdigit())
    ):
        return 1, "postgres"
    return None


def adapter_from_run_results(rr_raw_or_parsed: RunResults | RawRunResults) -> str | None:
    """Best-effort guess of the warehouse a run_results.json came from (lowercase dbt adapter type).

    run_results.json does not name its adapter (no sample has ``metadata.adapter_type``;
    it is used when present). The signals, strongest first, as seen in the samples and
    in the adapters' ``get_response``:

    * reliable: BigQuery's ``bytes_processed``/``job_id``/``slot_ms``/``location``
      (2moonyo, yu-iskw); Snowflake's ``query_id`` together with ``code`` ("SUCCESS");
      Databricks' ``query_id`` without ``code`` (devrafael26, ``{"_message": "OK", "query_id": …}``);
      dbt-redshift ≥1.5's ``{"_message": "SUCCESS", "rows_affected": n}``;
    * reliable for Snowflake when every node failed (empty adapter_response): the
      connector's error format ``002003 (42S02): …`` (3fid, AnusaraSen, AshHimself) and
      Fusion's ``[Snowflake]`` prefix (Ajcamara);
    * weak: ``code`` equal to ``_message`` without its numbers plus ``rows_affected`` is
      Postgres's shape (AnalyticsByRussell) but also older Redshift's and dbt 1.0 BigQuery
      seeds' (yu-iskw), so it only counts when nothing stronger is in the file;
    * from source only: dbt-trino's ``query`` + ``query_id``;
    * none: ``{"_message": "OK"}`` alone (DuckDB, also Spark/older Databricks), ``{}``,
      and Fusion's ``{"rows_affected": 0}``; MySQL and DuckDB samples therefore give None.

    Raw input is parsed first, so it raises ``ArtifactError`` as ``parse_run_results`` does.
    """
    rr = rr_raw_or_parsed if isinstance(rr_raw_or_parsed, RunResults) else parse_run_results(rr_raw_or_parsed)
    if rr.adapter_type:
        return rr.adapter_type
    best: tuple[int, str] | None = None
    for node in rr.results:
        found = _adapter_from_response(node.adapter_response)
        if found and (best is None or found[0] > best[0]):
            best = found
            if best[0] == 3:
                return best[1]
    if best and best[0] >= 2:
        return best[1]
    for node in rr.failed:
        text = node.message or ""
        m = _FUSION_PREFIX_RE.search(text)
        if m:
            return m.group(1).lower()
        if _SNOWFLAKE_ERROR_RE.search(text):
            return "snowflake"
    return best[1] if best else None


def adapter_from_log(text: str) -> str | None:
    """The adapter dbt ≥1.5 names at start-up: ``Registered adapter: snowflake=1.7.1`` → "snowflake"."""
    m = _ADAPTER_RE.search(strip_ansi(text or ""))
    return m.group(1).lower() if m else None
