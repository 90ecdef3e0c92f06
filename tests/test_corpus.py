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


# --------------------------------------------------------------------------- generalisation, measured

#: Measured on the held-out part (``triage.evaluate.part_of``), which rules are never tuned against.
#: The issue's targets are 90 % / 85 % / 10 % / 0; these floors are what the shipped rules reach today
#: (232 held-out messages: 91/111 retryable, 92/121 deterministic, 23 unknown, one retried twice), so that
#: a change that makes generalisation worse fails here. Raise them as the rules improve. They are not
#: comparable with earlier floors: session 4 added 324 messages (the held-out part went from 129 to 232),
#: and on the new ones the rules did worse than on the old (tests/corpus/README.md). The one deterministic
#: message retried more than once is a held-out one nobody has looked at (a vendor code the tables call
#: retryable, contradicted by its thread); the issue's bar is 0, so this floor is a known failure of it.
HELD_OUT_FLOORS = {"retryable_recall": 0.819, "deterministic_recall": 0.760, "unknown_share": 0.100,
                   "retried_more_than_once": 1}


def _score(part: str):
    from triage.classify import RuleSet
    from triage.evaluate import evaluate, load_corpus

    return evaluate(load_corpus(CORPUS), RuleSet.load()).part(part)


def test_the_split_is_fixed_by_the_id_and_holds_out_about_a_third():
    from triage.evaluate import part_of

    parts = Counter(part_of(e["id"]) for e in rows())
    assert parts["held-out"] + parts["tuning"] == len(rows())
    assert 0.25 < parts["held-out"] / len(rows()) < 0.42
    assert part_of("SF-001") == part_of("SF-001")  # a hash of the id: nothing else moves an entry


def test_held_out_part_meets_the_measured_floors():
    from triage.evaluate import RETRYABLE

    score = _score("held-out")
    retryable = score.recall(RETRYABLE, RETRYABLE)[0]
    deterministic = score.recall(frozenset({"deterministic"}), frozenset({"deterministic"}))[0]
    assert retryable >= HELD_OUT_FLOORS["retryable_recall"], retryable
    assert deterministic >= HELD_OUT_FLOORS["deterministic_recall"], deterministic
    assert score.unknown_share <= HELD_OUT_FLOORS["unknown_share"], score.unknown_share
    assert len(score.unsafe) <= HELD_OUT_FLOORS["retried_more_than_once"], [e.id for e, _ in score.unsafe]


def test_tuning_part_retries_no_deterministic_message_more_than_once():
    assert [e.id for e, _ in _score("tuning").unsafe] == []
