"""Hostile webhook bodies, correctly signed, over a real socket: every malformed one is a 400 that names
the field, and nothing is recorded or enqueued (found by a signed fuzz of the deployed service)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET
from triage.verify import TOLERANCE_SECONDS

COMMAND = {"id": 101, "command": "dbt run", "return_code": 1, "start_dttm": "2024-08-27 22:59:01.476387",
           "end_dttm": "2024-08-27 22:59:11.323692", "status": "failed", "json_resources": []}
BODY = {"commands": [COMMAND], "schedule_name": "daily", "run_id": 555}


def sign(raw: bytes, *, secret: str = WEBHOOK_SECRET, msg_id: str | None = None, timestamp: int | None = None,
         signatures: str | None = None) -> dict[str, str]:
    """Standard Webhooks headers computed here over the raw bytes, independently of the service's code."""
    msg_id = msg_id or f"msg_{time.time_ns()}"
    ts = str(int(time.time()) if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    sig = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + raw, hashlib.sha256).digest()).decode()
    return {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": ts,
            "webhook-signature": signatures.format(sig=sig) if signatures else f"v1,{sig}"}


def post_raw(service, raw: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(service.webhook_url, data=raw, headers=headers or sign(raw), timeout=10)


def assert_refused(service, resp: requests.Response, fragment: str, error: str = "invalid_payload") -> None:
    assert resp.status_code == 400, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    doc = resp.json()
    assert doc["error"] == error
    assert fragment in doc["message"], doc["message"]
    assert service.queue.count == 0
    assert service.redis.keys("bt:*") == [b"bt:metrics:c:webhooks"]  # no claim, no record: only counted


def with_command(**fields) -> dict:
    return {**BODY, "commands": [{**COMMAND, **fields}]}


# --- 1. integers and nesting ------------------------------------------------------------------------

@pytest.mark.parametrize("body, fragment", [
    ({**BODY, "run_id": "--1"}, "run_id: expected an integer or null, got str '--1'"),
    ({**BODY, "run_id": "²"}, "run_id: expected an integer or null, got str '\\xb2'"),
    ({**BODY, "run_id": "①"}, "run_id: expected an integer or null, got str '\\u2460'"),
    ({**BODY, "run_id": "٣"}, "run_id: expected an integer or null, got str"),  # Arabic-Indic digit
    ({**BODY, "run_id": "1_000"}, "run_id: expected an integer or null, got str"),
    ({**BODY, "run_id": "+5"}, "run_id: expected an integer or null, got str"),
    ({**BODY, "scheduleRunId": "9" * 30, "run_id": None}, "scheduleRunId: expected an integer or null, got str"),
    ({**BODY, "run_id": -5}, "run_id: expected a positive id, got -5"),
    ({**BODY, "run_id": "-5"}, "run_id: expected a positive id, got -5"),
    ({**BODY, "run_id": 0}, "run_id: expected a positive id, got 0"),
    ({**BODY, "run_id": 2**63}, "run_id: 9223372036854775808 is out of range"),
    ({**BODY, "run_id": 12.0}, "run_id: expected an integer or null, got float"),
    ({**BODY, "run_id": False}, "run_id: expected an integer, got a boolean"),
    (with_command(id="--1"), "commands[0].id: expected an integer, got str '--1'"),
    (with_command(id="²"), "commands[0].id: expected an integer, got str"),
    (with_command(id=-101), "commands[0].id: expected a positive id, got -101"),
    (with_command(id=True), "commands[0].id: expected an integer, got a boolean"),
    (with_command(return_code="①"), "commands[0].return_code: expected an integer or null, got str"),
    (with_command(return_code="--10"), "commands[0].return_code: expected an integer or null, got str"),
    (with_command(return_code=False), "commands[0].return_code: expected an integer, got a boolean"),
    (with_command(json_resources=[{"id": "²", "path": "target/run_results.json"}]),
     "commands[0].json_resources[0].id: expected an integer, got str"),
    (with_command(json_resources=[{"id": 0, "path": "target/run_results.json"}]),
     "commands[0].json_resources[0].id: expected a positive id, got 0"),
])
def test_integer_fields_take_only_ascii_digits_and_ids_are_positive(service, body, fragment):
    assert_refused(service, post_raw(service, json.dumps(body).encode()), fragment)


def test_integers_that_are_fine_still_are(service):
    body = {**BODY, "run_id": " 777 ", "commands": [{**COMMAND, "id": "101", "return_code": "-10"}]}
    resp = post_raw(service, json.dumps(body).encode())
    assert resp.status_code == 202, resp.text
    assert resp.json()["run_id"] == 777
    assert service.queue.count == 1


@pytest.mark.parametrize("raw", [
    b"[" * 990 + b"]" * 990,  # the fuzz finding: RecursionError in json.loads, a 500
    b'{"run_id": 5, "x": ' + b"[" * 100_000,  # unterminated, deeper than the recursion limit
    b'{"run_id": 5, "x": ' + b'{"a": ' * 64 + b"1" + b"}" * 64 + b"}",  # 65 levels with the body
])
def test_deep_nesting_is_a_400_not_a_500(service, raw):
    assert_refused(service, post_raw(service, raw), "body nested too deeply", error="invalid_json")


def test_nesting_up_to_the_limit_is_read_and_brackets_in_strings_do_not_count(service):
    deep = json.loads("[" * 63 + "]" * 63)  # 64 levels with the body object
    body = {**BODY, "padding": deep, "note": "[" * 500}
    resp = post_raw(service, json.dumps(body).encode())
    assert resp.status_code == 202, resp.text


# --- 2. present with the wrong type ------------------------------------------------------------------

@pytest.mark.parametrize("field", ["api_url", "apiUrl", "branch", "gitBranch", "git_branch", "schedule_name",
                                   "state"])
@pytest.mark.parametrize("value, kind", [(False, "a boolean"), ([], "list"), ({}, "dict"), (0, "int")])
def test_a_field_present_with_the_wrong_type_is_named(service, field, value, kind):
    resp = post_raw(service, json.dumps({**BODY, field: value}).encode())
    assert_refused(service, resp, f"{field}: expected a string, got {kind}")


@pytest.mark.parametrize("field", ["api_url", "branch", "gitBranch", "schedule_name", "state"])
def test_null_is_read_as_absent(service, field):
    resp = post_raw(service, json.dumps({**BODY, field: None}).encode())
    assert resp.status_code == 202, resp.text


# --- 3. strings that are not Unicode scalar sequences ---------------------------------------------------

@pytest.mark.parametrize("body, field", [
    ({**BODY, "schedule_name": "nightly\ud800"}, "schedule_name"),
    ({**BODY, "schedule_name": None, "scheduleName": "\udfff"}, "scheduleName"),
    ({**BODY, "branch": "main\ud800"}, "branch"),
    ({**BODY, "api_url": "https://api.paradime.io/\ud800"}, "api_url"),
    ({**BODY, "state": "ERROR\ud800"}, "state"),
    ({**BODY, "event_type": "bolt.run.completed\ud800"}, "event_type"),
    (with_command(command="dbt run\ud800"), "commands[0].command"),
    (with_command(status="\ud800failed"), "commands[0].status"),
    (with_command(json_resources=[{"id": 7, "path": "target/\ud800.json"}]), "commands[0].json_resources[0].path"),
])
def test_lone_surrogates_are_refused_at_intake(service, body, field):
    raw = json.dumps(body).encode()  # ensure_ascii: the JSON text carries "\ud800", as a fuzzer sends it
    assert b"\\ud" in raw
    assert_refused(service, post_raw(service, raw), f"{field}: not valid Unicode (lone surrogate")


def test_a_surrogate_pair_is_a_character_and_is_accepted(service):
    raw = json.dumps({**BODY, "schedule_name": "nightly \U0001F680"}).encode()  # "\ud83d\ude80" in the JSON
    assert b"\\ud83d\\ude80" in raw
    resp = post_raw(service, raw)
    assert resp.status_code == 202, resp.text
    assert service.queue.count == 1


# --- 7. non-UTF-8 bodies: authentic, then a bad body ---------------------------------------------------

def test_a_correctly_signed_non_utf8_body_is_a_400(service):
    raw = b"\xff\xfe{"
    assert_refused(service, post_raw(service, raw), "body is not UTF-8 text", error="invalid_json")


def test_a_wrongly_signed_non_utf8_body_is_a_401(service):
    raw = b"\xff\xfe{"
    resp = post_raw(service, raw, sign(raw, secret="whsec_" + base64.b64encode(b"another secret").decode()))
    assert resp.status_code == 401
    assert resp.json()["error"] == "unauthorized"
    assert service.queue.count == 0


def test_signature_rules_over_raw_bytes(service):
    raw = json.dumps(BODY).encode()
    # several space-separated signatures, unknown versions and junk skipped, one good one is enough
    headers = sign(raw, signatures="v2,abc nonsense v1,!!notbase64!! v1,{sig}")
    assert post_raw(service, raw, headers).status_code == 202
    # svix twins
    raw2 = json.dumps({**BODY, "run_id": 556}).encode()
    twins = {k.replace("webhook-", "svix-"): v for k, v in sign(raw2).items()}
    assert post_raw(service, raw2, twins).status_code == 202
    # a signature of other bytes, a stale or future timestamp, a non-numeric one: 401. The skewed
    # timestamps sit a minute outside the tolerance: the tuple is built before the posts run, and a
    # one-second margin was eaten by a slow CI machine (future +301 s arrived 299 s ahead, accepted).
    raw3 = json.dumps({**BODY, "run_id": 557}).encode()
    skew = TOLERANCE_SECONDS + 60
    for headers in (sign(raw3 + b" "), sign(raw3, timestamp=int(time.time()) - skew),
                    sign(raw3, timestamp=int(time.time()) + skew), {**sign(raw3), "webhook-timestamp": "soon"},
                    {**sign(raw3), "webhook-signature": "v1"}):
        resp = post_raw(service, raw3, headers)
        assert resp.status_code == 401, headers
        assert resp.json()["error"] == "unauthorized"
    assert service.queue.count == 2
