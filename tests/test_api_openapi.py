"""The OpenAPI document is true: every Flask route under /api/v1 is in it, with its methods, and
every operation it lists is a route."""

# ruff: noqa: F811  (the fixtures are imported from tests.api_fixtures)
from __future__ import annotations

import re

from tests.api_fixtures import api_env, ops  # noqa: F401
from triage.app import create_app
from triage.config import load_settings


def _routes(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        found |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return found


def test_every_route_is_documented_and_every_documented_operation_exists(ops):
    _, _, read = ops
    doc = read.ok("GET", "/openapi.json")
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method) for path, ops_ in doc["paths"].items() for method in ops_}
    routes = _routes(create_app(load_settings()))
    assert routes == documented, (routes - documented, documented - routes)
    for path, ops_ in doc["paths"].items():
        for method, op in ops_.items():
            params = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert params == set(re.findall(r"{([a-z_]+)}", path)), (path, method)
            assert "401" in op["responses"] and op["operationId"]
            if method != "get":
                assert op["x-required-role"] == "admin" and "403" in op["responses"]
    ids = [op["operationId"] for ops_ in doc["paths"].values() for op in ops_.values()]
    assert len(ids) == len(set(ids))


def test_the_documented_triage_and_event_shapes_are_what_the_api_answers(ops, paradime):
    from tests.test_pipeline import LOCK, dbt_run, failed_run

    svc, _, read = ops
    run_id = failed_run(paradime, dbt_run(LOCK))
    triage_id = paradime.deliver(run_id).json()["triage_id"]
    svc.drain()
    schemas = read.ok("GET", "/openapi.json")["components"]["schemas"]
    view = read.ok("GET", f"/triages/{triage_id}")
    assert set(view) == set(schemas["Triage"]["properties"])
    assert set(view["execution_trace"]) == set(schemas["Triage"]["properties"]["execution_trace"]["properties"])
    assert set(view["failures"][0]) == set(schemas["Triage"]["properties"]["failures"]["items"]["properties"])
    assert view["status"] in schemas["Triage"]["properties"]["status"]["enum"]
    assert view["verdict"] in schemas["Triage"]["properties"]["verdict"]["enum"]
    for event in read.ok("GET", f"/triages/{triage_id}/events")["events"]:
        assert set(event) == set(schemas["Event"]["required"])
        assert event["type"] in schemas["Event"]["properties"]["type"]["enum"]


def test_every_operation_needs_a_token_and_every_mutation_the_admin_one(ops):
    from triage.api.openapi import OPERATIONS

    _, admin, read = ops
    for path, method, _summary, _params, _body, _status, admin_only in OPERATIONS:
        concrete = path.removeprefix("/api/v1").replace("{triage_id}", "tr_0123456789abcdef").replace(
            "{run_id}", "42")
        assert admin.request(method.upper(), concrete, token=None).status_code == 401, (method, path)
        assert admin.request(method.upper(), concrete, token="x" * 20).status_code == 401, (method, path)
        as_reader = read.request(method.upper(), concrete, json={} if method != "get" else None)
        if admin_only:
            assert as_reader.status_code == 403, (method, path)
        else:
            assert as_reader.status_code in (200, 404), (method, path, as_reader.status_code)
