"""Tests for triage.manifest: owners, tags and paths of failed nodes, read by streaming a manifest.json.

The real manifests in /work/shared/samples carry the facts (see its README); small hand-written
manifests cover the shapes the samples lack (owner lists and objects, dbt < 1.5 tests without
``attached_node``, unit tests, tests met before the node they test); a generated 60 MB manifest
checks that memory stays bounded.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from triage.errors import ArtifactError
from triage.manifest import NodeInfo, owner_text, read_node_info, read_node_info_path

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
AVINASH = SAMPLES / "AvinashAnalytics__shopverse-dbt-snowflake-pipeline__manifest.json"
ANDREW = SAMPLES / "AndrewStaus__dbt_analytics__manifest.json"
MOONYO = SAMPLES / "2moonyo__global-trade-intelligence-pipeline__manifest.json"
MOONYO_RUN_RESULTS = SAMPLES / "2moonyo__global-trade-intelligence-pipeline__run_results.json"

SHOP = "shopverse_analytics"
# The five models with meta.owner in the Avinash manifest (node.meta == config.meta there).
AVINASH_OWNERS = {
    f"model.{SHOP}.stg_country": "data_ops_team",
    f"model.{SHOP}.stg_orders": "analytics_team",
    f"model.{SHOP}.stg_customers": "analytics_team",
    f"model.{SHOP}.stg_products": "analytics_team",
    f"model.{SHOP}.stg_payments": "finance_team",
}


def manifest_bytes(nodes: dict[str, Any], **sections: Any) -> io.BytesIO:
    """A small manifest: metadata first, then nodes, then the other sections in dbt's order."""
    doc: dict[str, Any] = {
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
        "nodes": nodes,
        "sources": {},
        "macros": {"macro.x.m": {"macro_sql": "{% macro m() %}{% endmacro %}"}},
        "groups": {},
        "parent_map": {},
        "child_map": {},
    }
    doc.update(sections)
    return io.BytesIO(json.dumps(doc).encode())


def node(resource_type: str, **fields: Any) -> dict[str, Any]:
    return {"resource_type": resource_type, "raw_code": "select 1", "columns": {"id": {"name": "id"}}, **fields}


# --------------------------------------------------------------------------- real manifests


def test_avinash_model_owners_come_from_meta():
    info = read_node_info_path(AVINASH, AVINASH_OWNERS)

    assert {uid: n.owner for uid, n in info.items()} == AVINASH_OWNERS
    # dbt >= 1.10 copies meta into config.meta; that is the first place looked at.
    assert {n.owner_source for n in info.values()} == {"config.meta.owner"}
    orders = info[f"model.{SHOP}.stg_orders"]
    assert orders == NodeInfo(f"model.{SHOP}.stg_orders", "analytics_team", "config.meta.owner", (),
                              "models/silver/stg_orders.sql", None, "model")


def test_avinash_tests_inherit_the_owner_of_their_attached_model():
    # depends_on lists stg_orders (analytics_team) first, but the test is attached to stg_payments.
    relationships = f"test.{SHOP}.relationships_stg_payments_order_id__order_id__ref_stg_orders_.8426a3f3d3"
    not_null = f"test.{SHOP}.not_null_stg_country_country.a96f1bc3df"

    info = read_node_info_path(AVINASH, [relationships, not_null])

    assert info[relationships].owner == "finance_team"
    assert info[relationships].owner_source == f"attached:model.{SHOP}.stg_payments"
    assert info[relationships].path == "models/silver/schema.yml"
    assert info[relationships].resource_type == "test"
    assert info[not_null].owner == "data_ops_team"
    assert info[not_null].owner_source == f"attached:model.{SHOP}.stg_country"


def test_avinash_nodes_without_owner_and_sources():
    ids = [f"model.{SHOP}.customer_profit", f"seed.{SHOP}.country", f"source.{SHOP}.shopverse_raw.bronze_orders",
           f"test.{SHOP}.source_unique_shopverse_raw_bronze_orders_order_id.656dd56f11"]

    info = read_node_info_path(AVINASH, ids)

    assert set(info) == set(ids)
    assert all(n.owner is None and n.owner_source is None for n in info.values())
    assert info[f"seed.{SHOP}.country"].path == "seeds/country.csv"
    assert info[f"source.{SHOP}.shopverse_raw.bronze_orders"].resource_type == "source"
    assert info[f"source.{SHOP}.shopverse_raw.bronze_orders"].path == "models/silver/source.yml"


def test_andrew_group_owner_and_windows_paths():
    model = "model.analytics.stg_accounts_db__accounts"
    marketing = "model.analytics.stg_facebook_ads__campaigns"
    test = "test.analytics.not_null_dim_marketing__dim_campaigns_campaign_id.cbafe1cca1"

    info = read_node_info_path(ANDREW, [model, marketing, test])

    assert info[model] == NodeInfo(model, "data_foundation@email.com", "group:common", ("account_id",),
                                   "models/staging/accounts_db/stg_accounts_db__accounts.sql", "common", "model")
    # The group owner is {"email": ..., "name": null}: the email is used.
    assert (info[marketing].owner, info[marketing].owner_source) == ("marketing@email.com", "group:marketing")
    # Tests carry their model's group themselves: the group wins before any attachment.
    assert (info[test].owner, info[test].owner_source, info[test].group) == (
        "marketing@email.com", "group:marketing", "marketing")
    assert all("\\" not in n.path for n in info.values())


def test_moonyo_failed_nodes_of_the_paired_run_are_all_found():
    results = json.loads(MOONYO_RUN_RESULTS.read_text())["results"]
    failed = [r["unique_id"] for r in results if r["status"] == "error"]
    assert len(failed) == 17

    with MOONYO.open("rb") as stream:
        info = read_node_info(stream, failed)

    assert set(info) == set(failed)
    for uid, n in info.items():
        assert n.unique_id == uid
        assert (n.owner, n.owner_source, n.group) == (None, None, None)  # no meta, no groups in this project
        assert n.resource_type == "model"
        assert n.tags == ()  # the project tags nothing
        assert n.path.startswith("models/staging/") and n.path.endswith(".sql")
    assert info["model.capstone_monthly.stg_event_raw"].path == "models/staging/events/stg_event_raw.sql"


def test_unknown_ids_are_absent():
    info = read_node_info_path(AVINASH, [f"model.{SHOP}.stg_orders", "model.nope.nope", "test.nope.nope.123"])

    assert list(info) == [f"model.{SHOP}.stg_orders"]


def test_a_single_id_may_be_given_as_a_string():
    info = read_node_info_path(AVINASH, f"model.{SHOP}.stg_orders")

    assert list(info) == [f"model.{SHOP}.stg_orders"]


def test_empty_request_reads_nothing():
    assert read_node_info(io.BytesIO(b"not even json"), []) == {}


# --------------------------------------------------------------------------- malformed input


def test_truncated_manifest_is_an_artifact_error():
    data = AVINASH.read_bytes()

    # Half of the file ends inside "macros": the message says where, and what yajl saw.
    expected = r"manifest.json is not valid JSON \(in 'macros'\): parse error: premature EOF"
    with pytest.raises(ArtifactError, match=expected):
        read_node_info(io.BytesIO(data[: len(data) // 2]), AVINASH_OWNERS)


def test_garbage_is_an_artifact_error_with_ijson_message():
    with pytest.raises(ArtifactError, match="not valid JSON.*lexical error: invalid char"):
        read_node_info(io.BytesIO(b"<html>503 Service Unavailable</html>"), ["model.a.b"])
    with pytest.raises(ArtifactError, match="not valid JSON.*trailing garbage"):
        read_node_info(io.BytesIO(b'{"nodes": {}} {"nodes": {}}'), ["model.a.b"])
    with pytest.raises(ArtifactError, match="not valid JSON.*premature EOF"):
        read_node_info(io.BytesIO(b""), ["model.a.b"])


def test_json_array_is_not_a_manifest():
    with pytest.raises(ArtifactError, match="not a dbt manifest: the JSON is an array, expected an object"):
        read_node_info(io.BytesIO(b'[{"nodes": {}}]'), ["model.a.b"])


def test_run_results_passed_by_mistake():
    with pytest.raises(ArtifactError, match=r"not a dbt manifest: metadata.dbt_schema_version is "
                                            r"'https://schemas.getdbt.com/dbt/run-results/v6.json'"):
        read_node_info_path(MOONYO_RUN_RESULTS, ["model.capstone_monthly.stg_event_raw"])


def test_object_without_nodes_is_not_a_manifest():
    with pytest.raises(ArtifactError, match=r"no top-level 'nodes' object \(top-level keys: results, args\)"):
        read_node_info(io.BytesIO(b'{"results": [], "args": {}}'), ["model.a.b"])


def test_nodes_of_the_wrong_shape():
    with pytest.raises(ArtifactError, match="'nodes' is an array, expected an object"):
        read_node_info(io.BytesIO(b'{"nodes": []}'), ["model.a.b"])
    with pytest.raises(ArtifactError, match=r"nodes\['model.a.b'\] is a string, expected an object"):
        read_node_info(io.BytesIO(b'{"nodes": {"model.a.b": "x"}}'), ["model.a.b"])


def test_max_nodes():
    stream = manifest_bytes({f"model.p.m{i}": node("model") for i in range(5)})

    with pytest.raises(ArtifactError, match="more than max_nodes=4 nodes"):
        read_node_info(stream, ["model.p.m0"], max_nodes=4)


def test_missing_file():
    with pytest.raises(ArtifactError, match="cannot read manifest .*nope.json: No such file"):
        read_node_info_path("/nonexistent/nope.json", ["model.a.b"])


# --------------------------------------------------------------------------- resolution rules


@pytest.mark.parametrize(("value", "expected"), [
    ("  team-a ", "team-a"),
    ("", None),
    (["alice@x.com", "bob@x.com"], "alice@x.com, bob@x.com"),
    ([{"name": "Alice"}, "bob"], "Alice, bob"),
    ({"name": "Platform", "email": "p@x.com"}, "Platform"),
    ({"name": None, "email": "p@x.com"}, "p@x.com"),
    ({"slack": "#data"}, None),
    (None, None),
    (True, None),
    (42, "42"),
])
def test_owner_text(value, expected):
    assert owner_text(value) == expected


def test_config_meta_beats_meta_and_odd_owner_values():
    stream = manifest_bytes({
        "model.p.both": node("model", meta={"owner": "node-meta"}, config={"meta": {"owner": "config-meta"}}),
        "model.p.list": node("model", meta={"owner": ["alice", "bob"]}, config={"meta": {}}),
        "model.p.object": node("model", meta={"owner": {"name": "Platform", "email": "p@x.com"}}),
        "model.p.blank": node("model", meta={"owner": ""}, config={"meta": {"owner": None}}),
    })

    info = read_node_info(stream, ["model.p.both", "model.p.list", "model.p.object", "model.p.blank"])

    assert (info["model.p.both"].owner, info["model.p.both"].owner_source) == ("config-meta", "config.meta.owner")
    assert (info["model.p.list"].owner, info["model.p.list"].owner_source) == ("alice, bob", "meta.owner")
    assert info["model.p.object"].owner == "Platform"
    assert (info["model.p.blank"].owner, info["model.p.blank"].owner_source) == (None, None)


def test_own_owner_beats_group_and_group_name_beats_email():
    groups = {
        "group.p.finance": {"name": "finance", "owner": {"name": "Finance", "email": "fin@x.com"}},
        "group.p.empty": {"name": "empty", "owner": {"name": None, "email": None}},
    }
    stream = manifest_bytes({
        "model.p.grouped": node("model", config={"group": "finance"}),
        "model.p.owned": node("model", group="finance", meta={"owner": "me"}),
        "model.p.no_owner_group": node("model", group="empty"),
        "model.p.unknown_group": node("model", group="ghost"),
    }, groups=groups)

    info = read_node_info(stream, ["model.p.grouped", "model.p.owned", "model.p.no_owner_group",
                                   "model.p.unknown_group"])

    assert info["model.p.grouped"] == NodeInfo("model.p.grouped", "Finance", "group:finance", (), None, "finance",
                                               "model")
    assert (info["model.p.owned"].owner, info["model.p.owned"].owner_source) == ("me", "meta.owner")
    assert info["model.p.no_owner_group"].owner is None
    assert (info["model.p.unknown_group"].owner, info["model.p.unknown_group"].group) == (None, "ghost")


def test_test_before_its_model_and_dbt_before_1_5_without_attached_node():
    stream = manifest_bytes({
        # Met before the models it tests, as dbt writes singular tests and partial parses.
        "test.p.early": node("test", attached_node="model.p.late"),
        # dbt < 1.5: no attached_node; the first model/seed/snapshot/source in depends_on counts.
        "test.p.old": node("test", depends_on={"macros": [], "nodes": ["macro.p.x", "seed.p.codes", "model.p.late"]}),
        "test.p.owned": node("test", meta={"owner": "qa"}, attached_node="model.p.late"),
        "test.p.orphan": node("test", attached_node="model.p.unowned"),
        "model.p.late": node("model", group="g"),
        "model.p.unowned": node("model"),
        "seed.p.codes": node("seed", config={"meta": {"owner": "ref-data"}}),
    }, groups={"group.p.g": {"name": "g", "owner": {"email": "g@x.com"}}})

    info = read_node_info(stream, ["test.p.early", "test.p.old", "test.p.owned", "test.p.orphan"])

    assert (info["test.p.early"].owner, info["test.p.early"].owner_source) == ("g@x.com", "attached:model.p.late")
    assert (info["test.p.old"].owner, info["test.p.old"].owner_source) == ("ref-data", "attached:seed.p.codes")
    assert (info["test.p.owned"].owner, info["test.p.owned"].owner_source) == ("qa", "meta.owner")
    assert (info["test.p.orphan"].owner, info["test.p.orphan"].owner_source) == (None, None)


def test_sources_and_unit_tests():
    stream = manifest_bytes(
        {"test.p.source_not_null": node("test", attached_node="source.p.raw.orders"),
         "model.p.orders": node("model", meta={"owner": "orders-team"})},
        sources={"source.p.raw.orders": {"resource_type": "source", "original_file_path": "models\\raw\\src.yml",
                                         "meta": {}, "config": {"meta": {"owner": "ingest"}}, "tags": ["raw"]}},
        unit_tests={"unit_test.p.orders.test_totals": {
            "resource_type": "unit_test", "original_file_path": "models/orders.yml", "given": [{"rows": [1] * 50}],
            "config": {"tags": ["unit"], "meta": {}}, "depends_on": {"nodes": ["model.p.orders"]}}},
    )

    info = read_node_info(stream, ["source.p.raw.orders", "test.p.source_not_null", "unit_test.p.orders.test_totals"])

    assert info["source.p.raw.orders"] == NodeInfo("source.p.raw.orders", "ingest", "config.meta.owner", ("raw",),
                                                   "models/raw/src.yml", None, "source")
    assert info["test.p.source_not_null"].owner_source == "attached:source.p.raw.orders"
    unit = info["unit_test.p.orders.test_totals"]
    assert (unit.owner, unit.owner_source, unit.tags) == ("orders-team", "attached:model.p.orders", ("unit",))


def test_unit_tests_null_in_older_manifests():
    stream = manifest_bytes({"model.p.m": node("model")}, unit_tests=None)

    assert list(read_node_info(stream, ["model.p.m"])) == ["model.p.m"]


# --------------------------------------------------------------------------- bounded memory


def write_large_manifest(path: Path, models: int, raw_code_bytes: int = 1000) -> None:
    """``models`` models (each with an owner or a group), then one test per model: dbt's usual order.

    Written node by node, so the test itself does not hold the document.
    """
    owners = ['"team-a"', '["alice", "bob"]', '{"name": "Platform", "email": "p@x.com"}']
    raw = json.dumps("select * from somewhere -- " + "x" * raw_code_bytes)
    with path.open("w") as f:
        f.write('{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"}, "nodes": {')
        for i in range(models):
            meta = "{}" if i % 4 == 0 else '{"owner": ' + owners[i % 3] + "}"
            group = '"core"' if i % 4 == 0 else "null"
            f.write(f'{"," if i else ""}"model.big.m{i}": {{"resource_type": "model", "name": "m{i}", '
                    f'"original_file_path": "models\\\\big\\\\m{i}.sql", "tags": ["nightly"], "group": {group}, '
                    f'"config": {{"meta": {meta}, "group": {group}, "materialized": "table"}}, "meta": {meta}, '
                    f'"columns": {{"id": {{"name": "id", "description": "key", "meta": {{}}, "tags": []}}}}, '
                    f'"raw_code": {raw}, "depends_on": {{"macros": [], "nodes": []}}}}')
        for i in range(models):
            f.write(f', "test.big.not_null_m{i}_id.abc": {{"resource_type": "test", '
                    f'"original_file_path": "models/big/schema.yml", "tags": [], "config": {{"meta": {{}}}}, '
                    f'"meta": {{}}, "raw_code": {raw}, "attached_node": "model.big.m{i}", '
                    f'"depends_on": {{"nodes": ["model.big.m{i}"]}}}}')
        f.write('}, "sources": {}, "macros": {}, "groups": {"group.big.core": {"name": "core", '
                '"owner": {"name": "Core team", "email": "core@x.com"}}}, "parent_map": {}, "unit_tests": {}}')


def test_large_manifest_is_read_with_bounded_memory(tmp_path):
    path = tmp_path / "manifest.json"
    write_large_manifest(path, models=25_000)  # 50k nodes with 1 KB of raw_code each
    size = path.stat().st_size
    assert size > 55_000_000
    # The worst case: the last test requested attaches to the first model, so every model is kept until the end.
    wanted = ["model.big.m1", "model.big.m24999", "test.big.not_null_m0_id.abc", "test.big.not_null_m24998_id.abc",
              "test.big.missing"]

    tracemalloc.start()
    try:
        info = read_node_info_path(path, wanted)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < size // 10, f"peak {peak:,} B for a {size:,} B manifest"
    assert info["model.big.m1"] == NodeInfo("model.big.m1", "alice, bob", "config.meta.owner", ("nightly",),
                                            "models/big/m1.sql", None, "model")
    assert (info["model.big.m24999"].owner, info["model.big.m24999"].owner_source) == ("team-a", "config.meta.owner")
    assert (info["test.big.not_null_m0_id.abc"].owner,
            info["test.big.not_null_m0_id.abc"].owner_source) == ("Core team", "attached:model.big.m0")
    assert info["test.big.not_null_m24998_id.abc"].owner == "Platform"
    assert "test.big.missing" not in info
