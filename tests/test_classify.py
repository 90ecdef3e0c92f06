"""Tests for the rule engine (triage/classify.py) and the shipped rule set (triage/defaults/rules.yaml).

The corpus tests are the safety net: a deterministic failure called transient means a wrong retry
(warehouse money spent, a real bug hidden), so that count must stay at zero.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from triage.classify import (
    CATEGORIES,
    DEFAULT_RULES_PATH,
    EXCERPT_LIMIT,
    RuleSet,
    classify,
    classify_node,
    excerpt_around,
    normalize_adapter,
)
from triage.errors import ConfigError
from triage.models import Classification

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "triage" / "defaults" / "rules.yaml"
CORPUS = Path("/work/shared/corpus/error-messages.jsonl")


@pytest.fixture(scope="module")
def shipped() -> RuleSet:
    return RuleSet.load(SHIPPED)


def corpus_rows() -> list[dict]:
    if not CORPUS.exists():
        pytest.skip(f"corpus not available at {CORPUS}")
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def judge(rows: list[dict], rules: RuleSet) -> list[tuple[dict, Classification]]:
    return [(row, classify(row["message"], adapter=row["adapter"], rules=rules)) for row in rows]


def describe(row: dict, result: Classification) -> str:
    verdict = f"{result.verdict}/{result.category} ({result.rule})"
    return f"{row['id']} [{row['label']}] -> {verdict}: {row['message'][:120]!r}"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rule(name: str = "some_rule", **overrides) -> dict:
    """A valid rule mapping; tests change one key at a time."""
    item = {"name": name, "pattern": r"(?i)\bsome phrase\b", "verdict": "transient", "category": "timeout"}
    item.update(overrides)
    return item


# --------------------------------------------------------------------------- the shipped rule set


def test_shipped_rules_load_and_are_the_default(shipped: RuleSet) -> None:
    assert SHIPPED == DEFAULT_RULES_PATH
    assert RuleSet.load().rules == shipped.rules
    names = [r.name for r in shipped.rules]
    assert len(names) == len(set(names))
    for r in shipped.rules:
        assert r.category in CATEGORIES[r.verdict], r.name
        assert r.description, f"{r.name} has no description"


def test_shipped_rules_cover_every_warehouse(shipped: RuleSet) -> None:
    covered = set().union(*(r.adapters for r in shipped.rules))
    for family in (
        "snowflake",
        "bigquery",
        "redshift",
        "postgres",
        "databricks",
        "duckdb",
        "trino",
        "sqlserver",
        "mysql",
    ):
        assert family in covered, f"no rule for {family}"


def test_corpus_no_deterministic_message_is_called_transient(shipped: RuleSet) -> None:
    wrong = [
        describe(row, result)
        for row, result in judge(corpus_rows(), shipped)
        if row["label"] == "deterministic" and result.verdict == "transient"
    ]
    assert not wrong, "deterministic messages classified transient:\n" + "\n".join(wrong)


def test_corpus_transient_messages_are_recognised(shipped: RuleSet) -> None:
    judged = [
        (row, res)
        for row, res in judge(corpus_rows(), shipped)
        if row["label"] in ("transient", "conditional")
    ]
    missed = [describe(row, res) for row, res in judged if res.verdict not in ("transient", "conditional")]
    recognised = len(judged) - len(missed)
    assert recognised >= 0.9 * len(judged), (
        f"only {recognised}/{len(judged)} transient+conditional recognised; misses:\n" + "\n".join(missed)
    )


def test_corpus_conditional_messages_get_one_retry(shipped: RuleSet) -> None:
    wrong = [
        describe(row, res) + f" max_retries={res.max_retries}"
        for row, res in judge(corpus_rows(), shipped)
        if row["label"] == "conditional" and res.verdict in ("transient", "conditional") and res.max_retries != 1
    ]
    assert not wrong, "conditional messages without max_retries == 1:\n" + "\n".join(wrong)


def test_corpus_ambiguous_messages_do_not_crash(shipped: RuleSet) -> None:
    for row, result in judge(corpus_rows(), shipped):
        if row["label"] == "ambiguous":
            assert result.verdict in ("transient", "conditional", "deterministic", "unknown")


@pytest.mark.parametrize(
    ("message", "adapter", "verdict", "category"),
    [
        # dbt-core's own messages
        (
            "Parsing Error\n  Error reading my_project: models/schema.yml - mapping values are not allowed",
            None,
            "deterministic",
            "compilation",
        ),
        ("Runtime Error\n  Could not find profile named 'analytics'", None, "deterministic", "config"),
        ("Got 12 results, configured to fail if != 0", "snowflake", "deterministic", "data_test"),
        # dbt deps and git: package problems and auth are deterministic, network is transient
        (
            "Encountered an error:\nPackage acme/does_not_exist was not found in the package index",
            None,
            "deterministic",
            "dependency",
        ),
        (
            "Encountered an error:\nExternal connection exception occurred: "
            "HTTPSConnectionPool(host='hub.getdbt.com', port=443): Read timed out.",
            None,
            "conditional",
            "connection",
        ),
        (
            "Cloning into 'repo'...\n"
            "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
            None,
            "deterministic",
            "permission",
        ),
        (
            "fatal: unable to access 'https://github.com/acme/dbt.git/': Could not resolve host: github.com",
            None,
            "conditional",
            "connection",
        ),
        # MySQL (no corpus entries)
        (
            "1213 (40001): Deadlock found when trying to get lock; try restarting transaction",
            "mysql",
            "transient",
            "lock_conflict",
        ),
        ("2013 (HY000): Lost connection to MySQL server during query", "mysql", "conditional", "connection"),
        ("1146 (42S02): Table 'analytics.orders' doesn't exist", "mysql", "deterministic", "missing_object"),
        (
            "1064 (42000): You have an error in your SQL syntax; check the manual",
            "mysql",
            "deterministic",
            "sql_error",
        ),
    ],
)
def test_shipped_rules_generalise(
    shipped: RuleSet, message: str, adapter: str | None, verdict: str, category: str
) -> None:
    result = classify(message, adapter=adapter, rules=shipped)
    assert (result.verdict, result.category) == (verdict, category), result


def test_mysql_lock_wait_timeout_gets_one_retry(shipped: RuleSet) -> None:
    result = classify(
        "1205 (HY000): Lock wait timeout exceeded; try restarting transaction", adapter="mysql", rules=shipped
    )
    assert (result.verdict, result.max_retries) == ("transient", 1)


# --------------------------------------------------------------------------- precedence


PRECEDENCE_RULES = [
    rule(
        "lock_wait",
        pattern=r"(?i)\block wait\b",
        verdict="transient",
        category="lock_conflict",
        max_retries=2,
    ),
    rule("any_timeout", pattern=r"(?i)\btimeout\b", verdict="transient", category="timeout"),
    rule("syntax", pattern=r"(?i)\bsyntax error\b", verdict="deterministic", category="sql_error"),
    rule("missing", pattern=r"(?i)\bdoes not exist\b", verdict="deterministic", category="missing_object"),
]


def test_deterministic_beats_transient_in_the_same_message() -> None:
    rules = RuleSet.from_dicts(PRECEDENCE_RULES)
    result = classify("lock wait timeout\nthen: syntax error at or near 'selec'", adapter=None, rules=rules)
    assert (result.verdict, result.category, result.rule) == ("deterministic", "sql_error", "syntax")
    assert result.max_retries is None


def test_shipped_rules_lock_plus_syntax_error_is_deterministic(shipped: RuleSet) -> None:
    message = (
        "000625 (57014): Statement '01b4-…' has locked table 'ORDERS' in transaction 17 "
        "and this lock has not yet been released.\n"
        "001003 (42000): SQL compilation error:\nsyntax error line 3 at position 9 unexpected 'form'."
    )
    assert classify(message, adapter="snowflake", rules=shipped).verdict == "deterministic"


def test_first_rule_in_file_order_wins_among_same_verdict() -> None:
    rules = RuleSet.from_dicts(PRECEDENCE_RULES)
    transient = classify("lock wait timeout", adapter=None, rules=rules)
    assert (transient.rule, transient.max_retries) == ("lock_wait", 2)
    deterministic = classify("relation does not exist; syntax error", adapter=None, rules=rules)
    assert deterministic.rule == "syntax"


def test_unmatched_message_is_unknown() -> None:
    result = classify(
        "\n  Something odd happened\nmore",
        adapter="snowflake",
        rules=RuleSet.from_dicts(PRECEDENCE_RULES),
        source="log",
    )
    assert (result.verdict, result.category, result.rule) == ("unknown", "unknown", None)
    assert result.source == "log"
    assert result.excerpt == "Something odd happened more"


def test_unknown_excerpt_is_the_error_not_its_header() -> None:
    """Slack shows an unrecognised failure's excerpt: the warehouse's words, not "Encountered an error:"."""
    message = "Encountered an error:\nRuntime Error\n  The frobnicator refused: quota 7 of 5"
    result = classify(message, adapter=None, rules=RuleSet.from_dicts(PRECEDENCE_RULES))
    assert (result.verdict, result.excerpt) == ("unknown", "The frobnicator refused: quota 7 of 5")


def test_empty_message_is_unknown() -> None:
    assert classify("", adapter=None, rules=RuleSet.from_dicts(PRECEDENCE_RULES)).verdict == "unknown"


def test_result_carries_rule_excerpt_source_and_retries() -> None:
    rules = RuleSet.from_dicts(PRECEDENCE_RULES)
    result = classify(
        "Database Error\n  ERROR: lock wait exceeded\nContext: …", adapter=None, rules=rules, source="log"
    )
    assert result == Classification(
        verdict="transient",
        category="lock_conflict",
        rule="lock_wait",
        excerpt="ERROR: lock wait exceeded",
        source="log",
        max_retries=2,
        evidence="phrase",
    )


# --------------------------------------------------------------------------- adapters


ADAPTER_RULES = [
    rule("sf_lock", pattern=r"\b000625\b", adapters=["snowflake"], category="lock_conflict"),
    rule(
        "spark_conflict", pattern=r"ConcurrentAppendException", adapters=["spark"], category="lock_conflict"
    ),
    rule("fabric_conflict", pattern=r"\(24556\)", adapters=["fabric"], category="lock_conflict"),
    rule("athena_throttle", pattern=r"ThrottlingException", adapters=["athena"], category="rate_limit"),
    rule("anywhere", pattern=r"connection reset by peer", category="connection"),
]


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("snowflake", "snowflake"),
        (" Snowflake ", "snowflake"),
        ("dbt-snowflake", "snowflake"),
        ("spark", "databricks"),
        ("databricks", "databricks"),
        ("fabric", "sqlserver"),
        ("synapse", "sqlserver"),
        ("sqlserver", "sqlserver"),
        ("athena", "trino"),
        ("starburst", "trino"),
        ("trino", "trino"),
        ("", None),
        (None, None),
    ],
)
def test_normalize_adapter(name: str | None, family: str | None) -> None:
    assert normalize_adapter(name) == family


def test_adapter_specific_rule_fires_only_for_its_adapter() -> None:
    rules = RuleSet.from_dicts(ADAPTER_RULES)
    message = "000625 (57014): Statement has locked table"
    assert classify(message, adapter="snowflake", rules=rules).rule == "sf_lock"
    assert classify(message, adapter="SNOWFLAKE", rules=rules).rule == "sf_lock"
    assert classify(message, adapter="bigquery", rules=rules).verdict == "unknown"


def test_unknown_adapter_lets_specific_rules_fire() -> None:
    rules = RuleSet.from_dicts(ADAPTER_RULES)
    assert classify("000625 (57014)", adapter=None, rules=rules).rule == "sf_lock"


def test_adapter_aliases_apply_to_rules_and_callers() -> None:
    rules = RuleSet.from_dicts(ADAPTER_RULES)
    assert classify("ConcurrentAppendException", adapter="databricks", rules=rules).rule == "spark_conflict"
    assert classify("ConcurrentAppendException", adapter="spark", rules=rules).rule == "spark_conflict"
    assert classify("error (24556)", adapter="sqlserver", rules=rules).rule == "fabric_conflict"
    assert classify("error (24556)", adapter="synapse", rules=rules).rule == "fabric_conflict"
    assert classify("ThrottlingException", adapter="trino", rules=rules).rule == "athena_throttle"
    assert classify("ThrottlingException", adapter="snowflake", rules=rules).verdict == "unknown"


def test_rule_without_adapters_fires_for_every_adapter() -> None:
    rules = RuleSet.from_dicts(ADAPTER_RULES)
    for adapter in ("snowflake", "duckdb", "whatever", None):
        assert classify("connection reset by peer", adapter=adapter, rules=rules).rule == "anywhere"


# --------------------------------------------------------------------------- layering files


BASE_YAML = r"""
rules:
  - name: lock_rule
    pattern: '(?i)\block wait\b'
    verdict: transient
    category: lock_conflict
  - name: timeout_rule
    pattern: '(?i)\btimeout\b'
    verdict: transient
    category: timeout
  - name: syntax_rule
    pattern: '(?i)\bsyntax error\b'
    verdict: deterministic
    category: sql_error
"""


def test_later_file_overrides_by_name_in_place(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", BASE_YAML)
    site = write(
        tmp_path,
        "site.yaml",
        r"""
rules:
  - name: lock_rule
    pattern: '(?i)\block wait\b'
    verdict: transient
    category: lock_conflict
    max_retries: 1
    description: site caps lock retries
""",
    )
    rules = RuleSet.load(base, site)
    assert [r.name for r in rules.rules] == ["lock_rule", "timeout_rule", "syntax_rule"]
    result = classify("lock wait timeout", adapter=None, rules=rules)
    assert (result.rule, result.max_retries) == ("lock_rule", 1)


def test_later_file_adds_rules_at_the_end(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", BASE_YAML)
    site = write(
        tmp_path,
        "site.yaml",
        r"""
rules:
  - name: site_quota
    pattern: 'ACME_QUOTA_HIT'
    verdict: deterministic
    category: resource_limit
""",
    )
    rules = RuleSet.load(base, site)
    assert rules.rules[-1].name == "site_quota"
    assert classify("timeout, then ACME_QUOTA_HIT", adapter=None, rules=rules).verdict == "deterministic"


def test_later_file_can_turn_a_rule_deterministic(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", BASE_YAML)
    site = write(
        tmp_path,
        "site.yaml",
        r"""
rules:
  - name: timeout_rule
    pattern: '(?i)\btimeout\b'
    verdict: deterministic
    category: resource_limit
""",
    )
    assert classify("query timeout", adapter=None, rules=RuleSet.load(base, site)).verdict == "deterministic"


def test_enabled_false_removes_a_rule(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", BASE_YAML)
    site = write(tmp_path, "site.yaml", "rules:\n  - {name: timeout_rule, enabled: false}\n")
    rules = RuleSet.load(base, site)
    assert [r.name for r in rules.rules] == ["lock_rule", "syntax_rule"]
    assert classify("query timeout", adapter=None, rules=rules).verdict == "unknown"


def test_disabling_an_undefined_rule_is_an_error(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", BASE_YAML)
    site = write(tmp_path, "site.yaml", "rules:\n  - {name: timout_rule, enabled: false}\n")
    with pytest.raises(ConfigError, match=r"site\.yaml: rules\[0\]\.enabled: cannot disable 'timout_rule'"):
        RuleSet.load(base, site)


def test_site_file_can_disable_a_shipped_rule(tmp_path: Path) -> None:
    site = write(tmp_path, "site.yaml", "rules:\n  - {name: snowflake_lock_waiters, enabled: false}\n")
    rules = RuleSet.load(SHIPPED, site)
    assert rules.get("snowflake_lock_waiters") is None
    assert rules.get("snowflake_statement_timeout") is not None


# --------------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([rule(), rule("other", pattern="(unclosed")], r"^<memory>: rules\[1\]\.pattern: invalid regex: "),
        (
            [{"name": "no_verdict", "pattern": "x", "category": "timeout"}],
            r"^<memory>: rules\[0\]: missing key 'verdict'$",
        ),
        (
            [{"pattern": "x", "verdict": "transient", "category": "timeout"}],
            r"^<memory>: rules\[0\]: missing key 'name'$",
        ),
        (
            [rule(category="lockz")],
            r"^<memory>: rules\[0\]\.category: 'lockz' is not one of connection, timeout, ",
        ),
        (
            [rule(verdict="deterministic", category="timeout")],
            r"rules\[0\]\.category: 'timeout' is not one of sql_error, ",
        ),
        (
            [rule(verdict="maybe")],
            r"^<memory>: rules\[0\]\.verdict: 'maybe' is not one of transient, conditional, deterministic$",
        ),
        ([rule("dup"), rule("dup")], r"^<memory>: rules\[1\]\.name: duplicate rule name 'dup' in this file$"),
        ([rule("Not Snake")], r"rules\[0\]\.name: 'Not Snake' is not a snake_case name"),
        ([rule(verdit="transient")], r"rules\[0\]: unknown key 'verdit'"),
        ([rule(pattern="a*")], r"rules\[0\]\.pattern: matches the empty string"),
        ([rule(pattern="")], r"rules\[0\]\.pattern: must be a non-empty string"),
        ([rule(adapters="snowflake")], r"rules\[0\]\.adapters: must be a list of adapter names"),
        ([rule(max_retries=-1)], r"rules\[0\]\.max_retries: must be a whole number >= 0"),
        ([rule(max_retries=True)], r"rules\[0\]\.max_retries: must be a whole number >= 0"),
        (
            [rule(verdict="deterministic", category="sql_error", max_retries=1)],
            r"rules\[0\]\.max_retries: only a transient rule",
        ),
        ([rule(enabled="no")], r"rules\[0\]\.enabled: must be true or false"),
        (["just a string"], r"rules\[0\]: must be a mapping, got str"),
    ],
)
def test_config_errors_name_the_key(items: list, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        RuleSet.from_dicts(items)


def test_config_error_names_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules.yaml",
        "rules:\n  - name: ok_rule\n    pattern: 'x'\n    verdict: transient\n    category: timeout\n"
        "  - name: broken\n    pattern: '[oops'\n    verdict: transient\n    category: timeout\n",
    )
    with pytest.raises(ConfigError, match=rf"^{path}: rules\[1\]\.pattern: invalid regex: "):
        RuleSet.load(path)


@pytest.mark.parametrize(
    "text",
    ["", "- name: a\n", "rules: {name: a}\n", "other: []\n", "rules:\n"],
)
def test_top_level_must_be_a_mapping_with_a_rules_list(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError, match=r"bad\.yaml: top level must be a mapping with a 'rules:' list"):
        RuleSet.load(path)


def test_unknown_top_level_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "rules: []\nrulez: []\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown top-level key 'rulez'"):
        RuleSet.load(path)


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML"):
        RuleSet.load(write(tmp_path, "bad.yaml", "rules: [\n"))
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: cannot read rules file"):
        RuleSet.load(tmp_path / "nowhere.yaml")


def test_duplicate_names_across_files_are_overrides_not_errors(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", BASE_YAML)
    assert len(RuleSet.load(base, base).rules) == 3


# --------------------------------------------------------------------------- classify_node


def test_failing_test_is_a_data_test_whatever_its_message(shipped: RuleSet) -> None:
    result = classify_node(
        "fail",
        "test",
        "Got 3 results, configured to fail if != 0\nconnection reset by peer",
        adapter="postgres",
        rules=shipped,
    )
    assert (result.verdict, result.category, result.rule) == (
        "deterministic",
        "data_test",
        "dbt_test_failure",
    )
    assert result.excerpt == "Got 3 results, configured to fail if != 0"
    assert classify_node("fail", None, None, adapter=None, rules=shipped).rule == "dbt_test_failure"
    assert (
        classify_node("fail", "unit_test", "actual differs", adapter=None, rules=shipped).rule
        == "dbt_test_failure"
    )


def test_warning_is_reported_never_a_failure(shipped: RuleSet) -> None:
    result = classify_node(
        "warn", "test", "Got 1 result, configured to warn if != 0", adapter=None, rules=shipped, source="log"
    )
    assert (result.verdict, result.category, result.rule, result.source) == (
        "deterministic",
        "data_test",
        "dbt_test_warning",
        "log",
    )


def test_errored_node_is_judged_by_its_message(shipped: RuleSet) -> None:
    transient = classify_node(
        "error", "model", "ERROR: deadlock detected (SQLSTATE 40P01)", adapter="redshift", rules=shipped
    )
    assert (transient.verdict, transient.category) == ("transient", "lock_conflict")
    runtime = classify_node(
        "runtime error", "test", 'syntax error at or near "selct"', adapter="postgres", rules=shipped
    )
    assert (runtime.verdict, runtime.category) == ("deterministic", "sql_error")
    unknown = classify_node("error", "model", None, adapter=None, rules=shipped)
    assert unknown.verdict == "unknown"


# --------------------------------------------------------------------------- excerpts


def test_excerpt_is_the_matching_line() -> None:
    text = "Database Error in model orders\n  deadlock detected\n  more context"
    start = text.index("deadlock")
    assert excerpt_around(text, start, start + len("deadlock detected")) == "deadlock detected"


def test_long_line_is_trimmed_around_the_match() -> None:
    text = "x" * 1000 + " deadlock detected " + "y" * 1000
    start = text.index("deadlock")
    excerpt = excerpt_around(text, start, start + len("deadlock detected"))
    assert len(excerpt) <= EXCERPT_LIMIT
    assert "deadlock detected" in excerpt
    assert excerpt.startswith("…") and excerpt.endswith("…")


def test_match_near_the_start_of_a_long_line_keeps_it() -> None:
    text = "deadlock detected " + "y" * 1000
    excerpt = excerpt_around(text, 0, len("deadlock detected"))
    assert excerpt.startswith("deadlock detected") and excerpt.endswith("…")
    assert len(excerpt) <= EXCERPT_LIMIT


def test_match_longer_than_the_limit_keeps_its_start() -> None:
    text = "a" * 500
    excerpt = excerpt_around(text, 0, 500)
    assert len(excerpt) <= EXCERPT_LIMIT and excerpt.startswith("aaaa")


def test_classify_excerpt_on_a_huge_log_is_bounded(shipped: RuleSet) -> None:
    log = "\n".join(f"12:00:{i:02d}  OK created view model analytics.m{i}" for i in range(60))
    log += "\n" + "z" * 5000 + " canceling statement due to statement timeout " + "z" * 5000
    result = classify(log, adapter="postgres", rules=shipped, source="log")
    assert (result.rule, result.max_retries) == ("postgres_statement_timeout", 1)
    assert len(result.excerpt) <= EXCERPT_LIMIT
    assert "canceling statement due to statement timeout" in result.excerpt


def test_code_table_entries_layer_by_name_like_phrases(tmp_path: Path) -> None:
    """A site file can add a code rule, and disable or replace a shipped one by name (format unchanged)."""
    site = write(tmp_path, "site.yaml", """
rules:
  - {name: snowflake_code_lock_waiters, enabled: false}
  - name: our_vendor_number
    kind: snowflake
    codes: ['390999']
    verdict: deterministic
    category: config
    source: our runbook
    description: Our proxy's answer.
""")
    rules = RuleSet.load(SHIPPED, site)
    assert rules.get("snowflake_code_lock_waiters") is None
    waiters = "000625 (57014): Statement 'x' has locked table 'T', number of waiters for this lock exceeds 20"
    # Without the vendor's number, the generic SQLSTATE 57014 (a cancelled query: conditional) decides.
    assert classify(waiters, adapter="snowflake", rules=rules).rule == "sqlstate_query_canceled_code"
    ours = classify("390999 (08001): refused", adapter="snowflake", rules=rules)
    assert (ours.verdict, ours.rule, ours.code, ours.reference) == ("deterministic", "our_vendor_number",
                                                                   "snowflake:390999", "our runbook")


@pytest.mark.parametrize(("item", "message"), [
    ({"pattern": "x", "kind": "sqlstate", "codes": ["40001"]}, "give either 'pattern'"),
    ({"kind": "nonsense", "codes": ["1"]}, "is not one of sqlstate"),
    ({"kind": "sqlstate", "codes": []}, "must be a non-empty list of codes"),
    ({"pattern": "x", "verdict": "conditional", "max_retries": 2}, "at most 1 retry"),
])
def test_code_rule_mistakes_are_config_errors(item: dict, message: str) -> None:
    base = {"name": "r", "verdict": "transient", "category": "timeout"}
    with pytest.raises(ConfigError, match=message):
        RuleSet.from_dicts([{**base, **item}])


def test_a_huge_message_is_judged_on_its_head_and_its_tail_only():
    """A 20 MB message (compiled SQL in it) is read at a bounded size, and an error at its start or
    at its end still counts (cost per message: bench, not here)."""
    from triage.classify import MAX_CLASSIFIED_CHARS, RuleSet, _bounded, classify
    from triage.config import SHIPPED_RULES

    rules = RuleSet.load(SHIPPED_RULES)
    error = "002003 (42S02): SQL compilation error:\n  Object 'RAW.ORDERS' does not exist\n"
    filler = "select a, b, c from t where x = 1 and y = 2\n" * (20_000_000 // 44)
    assert len(_bounded(filler)) <= MAX_CLASSIFIED_CHARS + 3
    assert classify(error + filler, adapter="snowflake", rules=rules).verdict == "deterministic"
    assert classify(filler + error, adapter="snowflake", rules=rules).verdict == "deterministic"


def test_a_catch_all_sqlstate_does_not_outrank_the_vendor_number() -> None:
    """Microsoft's ODBC driver reports 42000 for most SQL Server errors; the native number decides.
    A deterministic HTTP status inside a connector's own number still wins (a 403 stays a 403)."""
    rules = RuleSet.load()
    conflict = ("('42000', \"[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Snapshot isolation "
                "transaction aborted due to update conflict. (3960) (SQLExecDirectW)\")")
    result = classify(conflict, adapter="sqlserver", rules=rules)
    assert (result.verdict, result.rule) == ("transient", "sqlserver_code_transient")
    syntax = ("('42000', \"[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Incorrect syntax near "
              "'x'. (102)\")")
    assert classify(syntax, adapter="sqlserver", rules=rules).verdict == "deterministic"
    forbidden = "'sqlState': '08001', 'errorCode': 250003, 'exceptionMessage': '000403: 403: HTTP 403: Forbidden'"
    assert classify(forbidden, adapter="snowflake", rules=rules).verdict == "deterministic"


@pytest.mark.parametrize(("message", "adapter", "verdict", "category"), [
    # Snowflake login refusals inside the connector's retryable 250001
    ("250001 (08001): Failed to connect to DB: acme.snowflakecomputing.com:443. User access disabled. "
     "Contact your local system administrator.", "snowflake", "deterministic", "permission"),
    ("250001 (08001): Failed to connect to DB: acme.snowflakecomputing.com:443. Incorrect username or password "
     "was specified.", "snowflake", "deterministic", "permission"),
    ('Failed to cast variant value {"a": 1} to DATE', "snowflake", "deterministic", "sql_error"),
    # SQL Server: severity classes and the texts of 9002 / 701
    ("Msg 9002, Level 17, State 2, Line 1\nThe transaction log for database 'dw' is full due to "
     "'ACTIVE_TRANSACTION'.", "sqlserver", "deterministic", "resource_limit"),
    ("Msg 802, Level 17, State 20, Line 1\nThere is insufficient memory available in the buffer pool.",
     "sqlserver", "conditional", "resource_limit"),
    ("Msg 40517, Level 16, State 1, Line 1\nKeyword or statement option 'pad_index' is not supported in this "
     "version of SQL Server.", "synapse", "deterministic", "sql_error"),
    # MySQL / TiDB tables
    ("(1615, 'Prepared statement needs to be re-prepared')", "mysql", "transient", "lock_conflict"),
    ("ERROR 8022 (HY000): Error: KV error safe to retry", "mysql", "transient", "lock_conflict"),
    ("ERROR 9006 (HY000): GC life time is shorter than transaction duration", "mysql", "deterministic",
     "sql_error"),
    ("ERROR 1021 (HY000): Disk full (/var/tmp/#sql_1); waiting for someone to free some space...", "mysql",
     "deterministic", "sql_error"),
    # Trino error types, Athena's documented GENERIC_INTERNAL_ERROR cases, Hive DDL
    ('TrinoQueryError(type=INTERNAL_ERROR, name=GENERIC_INTERNAL_ERROR, message="java.lang.NullPointerException")',
     "trino", "conditional", "internal_error"),
    ("GENERIC_INTERNAL_ERROR: Value exceeds MAX_INT", "athena", "deterministic", "sql_error"),
    ("FAILED: SemanticException [Error 10004]: Line 3:7 Invalid table alias or column reference 'x'", "athena",
     "deterministic", "sql_error"),
    # DuckDB httpfs: libcurl's own texts
    ("IO Error: Failure when receiving data from the peer error for HTTP GET to 's3://b/k.parquet'", "duckdb",
     "transient", "connection"),
    ("IO Error: Timeout was reached error for HTTP HEAD to 'https://data.example/y.csv'", "duckdb", "conditional",
     "timeout"),
    # dbt-core packages from git
    ("Got a non-zero returncode running: ['git', 'clone', '--depth', '1', 'https://github.com/acme/pkg.git', "
     "'main']", None, "deterministic", "dependency"),
    # Databricks cluster termination types and Spark error-class families
    ('{"state": "TERMINATED", "termination_reason": {"code": "DRIVER_UNREACHABLE", "type": "SERVICE_FAULT"}}',
     "databricks", "transient", "warehouse_unavailable"),
    ('{"state": "TERMINATED", "termination_reason": {"code": "INVALID_ARGUMENT", "type": "CLIENT_ERROR"}}',
     "databricks", "deterministic", "config"),
    ("[WRONG_NUM_ARGS.WITHOUT_SUGGESTION] The `concat_ws` requires > 0 parameters but the actual number is 0.",
     "databricks", "deterministic", "sql_error"),
    # drivers and poolers losing the connection
    ("org.postgresql.util.PSQLException: An I/O error occurred while sending to the backend.", "redshift",
     "transient", "connection"),
    ("ERROR: no more connections allowed (max_client_conn)", "postgres", "transient", "connection"),
    ("Msg 0, Level 11, State 0, Line 0\nA severe error occurred on the current command.  The results, if any, "
     "should be discarded.", "sqlserver", "conditional", "internal_error"),
    ("google.api_core.exceptions.DeadlineExceeded: 504 Deadline Exceeded", "bigquery", "conditional", "timeout"),
    # out of the deterministic INVALID_* family; judged by the last-resort wording (a broken session: one retry)
    ("[INVALID_CURSOR.DISCONNECTED] The cursor has been disconnected by the server.", "databricks", "conditional",
     "connection"),
    # Python HTTP transport breaking mid-response
    ("urllib3.exceptions.ProtocolError: ('Connection broken: IncompleteRead(0 bytes read, 10 more expected)', "
     "IncompleteRead(0 bytes read, 10 more expected))", "bigquery", "transient", "connection"),
])
def test_vendor_tables_added_for_issue_11(
    shipped: RuleSet, message: str, adapter: str | None, verdict: str, category: str
) -> None:
    result = classify(message, adapter=adapter, rules=shipped)
    assert (result.verdict, result.category) == (verdict, category), result


def test_spark_connect_invalid_handle_is_not_taken_for_a_user_error(shipped: RuleSet) -> None:
    result = classify("[INVALID_HANDLE.SESSION_CLOSED] The handle 0a1b is invalid. Session was closed.",
                      adapter="databricks", rules=shipped)
    assert result.verdict != "deterministic"


def test_a_bigquery_backend_error_gets_one_run_level_retry(shipped: RuleSet) -> None:
    """dbt-bigquery already retried the job (job_retries): one more run, not the chain's whole budget."""
    from triage.decide import retry_cap

    result = classify('{"code": 500, "message": "An internal error occurred.", "reason": "backendError"}',
                      adapter="bigquery", rules=shipped)
    assert (result.verdict, result.rule, retry_cap(result)) == ("transient", "bigquery_reason_retryable", 1)


# --------------------------------------------------------------------------- last-resort wording (fallback: true)

FALLBACK_RULES = [
    {"name": "general_timeout", "pattern": r"(?i)\btimed out\b", "verdict": "conditional", "category": "timeout",
     "fallback": True},
    {"name": "general_missing", "pattern": r"(?i)\bdoes not exist\b", "verdict": "deterministic",
     "category": "missing_object", "fallback": True},
    {"name": "vendor_lock", "pattern": r"(?i)\block wait\b", "verdict": "transient", "category": "lock_conflict"},
]


def test_a_fallback_rule_fires_only_when_no_other_rule_matches() -> None:
    rules = RuleSet.from_dicts(FALLBACK_RULES)
    assert classify("lock wait; the table does not exist", adapter=None, rules=rules).rule == "vendor_lock"
    assert classify("the table does not exist", adapter=None, rules=rules).rule == "general_missing"
    assert classify("nothing known here", adapter=None, rules=rules).verdict == "unknown"


def test_among_fallbacks_file_order_decides_not_the_verdict() -> None:
    """Fallbacks are tried in the order written: a deterministic one written later does not win."""
    result = classify("the request timed out: relation does not exist", adapter=None,
                      rules=RuleSet.from_dicts(FALLBACK_RULES))
    assert (result.rule, result.verdict, result.max_retries) == ("general_timeout", "conditional", 1)


def test_fallback_must_be_a_boolean(tmp_path: Path) -> None:
    path = write(tmp_path, "site.yaml", json.dumps({"rules": [rule(fallback="yes")]}))
    with pytest.raises(ConfigError, match=r"site\.yaml: rules\[0\]\.fallback: must be true or false, got 'yes'"):
        RuleSet.load(path)


@pytest.mark.parametrize(("message", "verdict", "category"), [
    # Wordings written for this test from the standards' class names, in no vendor's exact form.
    ("Frobnicator error: the upstream connection was reset while reading results", "conditional", "connection"),
    ("job 42 was not started: the scheduler is overloaded, try again in a minute", "conditional",
     "warehouse_unavailable"),
    ("query 7 did not finish: deadline exceeded after 300s", "conditional", "timeout"),
    ("stage 3 aborted: write conflict with a concurrent commit", "conditional", "lock_conflict"),
    ("WidgetDB: no such dataset: sales_eu (looked up in project main)", "deterministic", "missing_object"),
    ("WidgetDB: user dbt lacks the required privileges on schema analytics", "deterministic", "permission"),
    ("WidgetDB: invalid date value '2024-13-45' in column shipped_on", "deterministic", "sql_error"),
])
def test_shipped_fallbacks_judge_wording_nothing_else_recognises(shipped: RuleSet, message: str, verdict: str,
                                                                 category: str) -> None:
    result = classify(message, adapter=None, rules=shipped)
    assert (result.verdict, result.category) == (verdict, category), result
    assert result.rule.startswith("fallback_") and result.reference


@pytest.mark.parametrize(("message", "adapter", "verdict", "category"), [
    # Written from the vendors' own texts (sources in rules.yaml), not taken from the corpus.
    ("Code: 373. DB::Exception: Session abc is locked by a concurrent client. (SESSION_IS_LOCKED)", "clickhouse",
     "conditional", "lock_conflict"),
    ("Out of Memory Error: failed to pin block of size 256.0 KiB (1.9 GiB/2.0 GiB used)", "duckdb",
     "deterministic", "resource_limit"),
    ("org.apache.spark.SparkException: Job aborted due to stage failure: Total size of serialized results of 9 "
     "tasks (1030.2 MiB) is bigger than spark.driver.maxResultSize (1024.0 MiB)", "databricks", "deterministic",
     "resource_limit"),
    ("Msg 15581, Level 16, State 6: Please create a master key in the database or open the master key in the "
     "session before performing this operation.", "synapse", "deterministic", "config"),
    ("org.apache.http.NoHttpResponseException: The target server failed to respond", "snowflake", "transient",
     "connection"),
    ("Runtime Error\n  Got a state selector method, but no comparison manifest", "dbt-core", "deterministic",
     "config"),
])
def test_tables_added_in_session_4(shipped: RuleSet, message: str, adapter: str, verdict: str,
                                   category: str) -> None:
    result = classify(message, adapter=adapter, rules=shipped)
    assert (result.verdict, result.category) == (verdict, category), result


def test_clickhouse_codes_off_the_clients_retry_list_get_one_retry(shipped: RuleSet) -> None:
    """ClickHouse's own Java client retries 202, 252, 999, ...: those keep the chain's budget. A code that
    only its name calls transient (473 DEADLOCK_AVOIDED) gets one retry."""
    from triage.decide import retry_cap

    listed = classify("Code: 202. DB::Exception: Too many simultaneous queries. Maximum: 100. "
                      "(TOO_MANY_SIMULTANEOUS_QUERIES)", adapter="clickhouse", rules=shipped)
    named = classify("Code: 473. DB::Exception: WRITE locking attempt on \"db.t\" has timed out! (DEADLOCK_AVOIDED)",
                     adapter="clickhouse", rules=shipped)
    assert (listed.verdict, retry_cap(listed)) == ("transient", None)
    assert (named.verdict, retry_cap(named)) == ("transient", 1)
