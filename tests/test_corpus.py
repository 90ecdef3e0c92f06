"""The generalisation corpus (tests/corpus/messages.jsonl) stays well-formed and sourced, and
repeats nothing of the shared corpus it is meant to be measured beside."""

from __future__ import annotations

import json
from collections import Counter

from tests.conftest import REPO

CORPUS = REPO / "tests" / "corpus" / "messages.jsonl"
SHARED = REPO.parent / "shared" / "corpus" / "error-messages.jsonl"
ADAPTERS = {"snowflake", "bigquery", "redshift", "postgres", "databricks", "spark", "duckdb", "trino", "athena",
            "sqlserver", "fabric", "synapse", "mysql", "clickhouse", "dbt-core", "dbt-fusion"}
LABELS = {"transient", "conditional", "deterministic"}
KEYS = {"id", "adapter", "message", "label", "reason", "source"}


def rows() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]


def test_every_line_is_a_labelled_sourced_message():
    entries = rows()
    assert len(entries) >= 300
    for entry in entries:
        assert set(entry) == KEYS, entry.get("id")
        assert entry["adapter"] in ADAPTERS and entry["label"] in LABELS, entry["id"]
        assert entry["message"].strip() and entry["reason"].strip(), entry["id"]
        assert all(s.strip().startswith(("https://", "http://")) for s in entry["source"].split(" ; ")), entry["id"]
    ids = Counter(e["id"] for e in entries)
    assert [i for i, n in ids.items() if n > 1] == []


def test_no_message_repeats_the_shared_corpus_or_itself():
    shared = {json.loads(line)["message"].strip() for line in SHARED.read_text(encoding="utf-8").splitlines()}
    messages = Counter(e["message"].strip() for e in rows())
    assert [m for m in messages if m in shared] == []
    assert [m for m, n in messages.items() if n > 1] == []


def test_every_adapter_family_is_covered():
    count = Counter(e["adapter"] for e in rows())
    families = {"snowflake": ["snowflake"], "bigquery": ["bigquery"], "redshift": ["redshift"],
                "postgres": ["postgres"], "databricks": ["databricks", "spark"], "duckdb": ["duckdb"],
                "trino": ["trino", "athena"], "sqlserver": ["sqlserver", "fabric", "synapse"], "mysql": ["mysql"],
                "clickhouse": ["clickhouse"], "dbt-core": ["dbt-core"], "dbt-fusion": ["dbt-fusion"]}
    assert {f: sum(count[a] for a in members) for f, members in families.items() if
            sum(count[a] for a in members) < 10} == {}
