"""Property tests (hypothesis) of what comes from outside:

* ``POST /webhooks/paradime`` with correctly signed bodies of every shape (random JSON, a real payload
  with any field replaced by any JSON value, Unicode digits, lone surrogates, huge strings, deep nesting,
  duplicate keys, NaN/Infinity, bytes that are not UTF-8 or not JSON, other content types): always a 202
  (and a job) for a valid body or a JSON 4xx with nothing enqueued, never a 5xx; and with bad signature
  headers: always a JSON 401, nothing enqueued;
* the artifact readers: ``parse_run_results`` never raises anything but ``ArtifactError``, and what it
  returns can be used; the log reader never raises.

The number of examples comes from the hypothesis profile (tests/conftest.py: ``ci`` by default, moderate
so the suite stays fast; ``HYPOTHESIS_PROFILE=thorough`` for many more).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from tests.conftest import WEBHOOK_SECRET, signed_headers
from triage import broker
from triage.adapter import adapter_from_log, adapter_from_run_results
from triage.app import create_app
from triage.config import load_settings
from triage.dbt_log import extract_log_errors
from triage.errors import ArtifactError
from triage.run_results import parse_run_results
from triage.sim.paradime import make_run_results
from triage.webhook import parse_event

pytestmark = pytest.mark.slow

#: A real payload's shape (as the simulator and Paradime's documentation give it).
PAYLOAD: dict[str, Any] = {
    "api_url": "http://127.0.0.1:1/api/v1/x/graphql",
    "branch": "main",
    "commands": [{"command": "dbt run", "end_dttm": "2024-01-01 10:00:05.000001", "id": 59001,
                  "json_resources": [{"id": 306001, "path": "target/run_results.json"}], "return_code": 1,
                  "start_dttm": "2024-01-01 10:00:00.000001", "status": "failed"}],
    "event_type": "bolt.run.completed",
    "run_id": 15500,
    "schedule_name": "daily",
    "state": "FAILED",
}

TRICKY_TEXT = st.sampled_from(["--1", "²", "①", "٣", "1e3", " 7 ", "-0", "0", "9" * 30, "\ud800", "\udfff",
                               "<!channel>", "", " ", "\x00", "null", "true", "NaN", "💥" * 10])
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30) | TRICKY_TEXT
           | st.text(min_size=5000, max_size=20000).map(lambda s: s[:20000]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=4), max_leaves=12)
FIELDS = ["api_url", "apiUrl", "branch", "gitBranch", "commands", "event_type", "eventType", "type", "run_id",
          "runId", "scheduleRunId", "schedule_name", "scheduleName", "state"]
COMMAND_FIELDS = ["command", "end_dttm", "id", "json_resources", "return_code", "start_dttm", "status"]


@pytest.fixture
def app(service_env, redis):
    """The web app in this process (Flask's test client): the same code gunicorn runs, one Redis."""
    return create_app(load_settings())


def _dumps(doc: Any) -> bytes:
    """JSON as a sender might write it: NaN/Infinity allowed, lone surrogates escaped."""
    return json.dumps(doc, allow_nan=True).encode()


@st.composite
def bodies(draw) -> bytes:
    """A signed body: random JSON, a payload with fields replaced, or raw bytes and text."""
    kind = draw(st.sampled_from(["json", "field", "command_field", "deep", "duplicate", "bytes", "text"]))
    if kind == "json":
        return _dumps(draw(JSON))
    if kind == "field":
        doc = dict(PAYLOAD)
        for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3)):
            doc[name] = draw(JSON)
        return _dumps(doc)
    if kind == "command_field":
        command = dict(PAYLOAD["commands"][0])
        for name in draw(st.lists(st.sampled_from([*COMMAND_FIELDS, "extra"]), min_size=1, max_size=3)):
            command[name] = draw(JSON)
        return _dumps({**PAYLOAD, "commands": draw(st.sampled_from([[command], [command, command], command]))})
    if kind == "deep":
        depth = draw(st.integers(min_value=1, max_value=3000))
        opener = draw(st.sampled_from(["[", '{"a":']))
        closer = "]" if opener == "[" else "}"
        return json.dumps({**PAYLOAD, "x": "PLACEHOLDER"}).replace('"PLACEHOLDER"', opener * depth + "1" +
                                                                   closer * depth).encode()
    if kind == "duplicate":
        value = json.dumps(draw(JSON), allow_nan=True)
        return json.dumps(PAYLOAD)[:-1].encode() + f', "run_id": {value}}}'.encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    return draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")


def _valid(raw: bytes) -> bool:
    """What the intake should accept: a UTF-8 JSON body whose fields read (the reference reader)."""
    try:
        parse_event(json.loads(raw.decode("utf-8-sig")))
    except Exception:
        return False
    return True


def _queued(redis) -> int:
    return broker.queue(redis).count


def _stored(redis) -> list[bytes]:
    """What a refused webhook left in Redis besides being counted (triage.metrics): nothing, it must be."""
    return [k for k in redis.keys("bt:*") if not k.startswith(b"bt:metrics:")]


@given(raw=bodies(), content_type=st.sampled_from(["application/json", "text/plain", "", "application/x-www-form"
                                                                                         "-urlencoded"]))
def test_signed_bodies_get_a_json_4xx_or_a_202_never_a_5xx(app, redis, raw, content_type):
    redis.flushdb()
    client = app.test_client()
    headers = {**_signed(raw), "Content-Type": content_type}
    resp = client.post("/webhooks/paradime", data=raw, headers=headers)
    assert resp.status_code in (202, 400, 413), (resp.status_code, resp.get_data()[:300], raw[:200])
    doc = resp.get_json(silent=True)
    assert isinstance(doc, dict), resp.get_data()[:300]
    if resp.status_code == 202:
        assert doc["status"] == "queued" and _queued(redis) == 1
    else:
        assert set(doc) >= {"error", "message"} and _queued(redis) == 0 and not _stored(redis)
    if _plain_json(raw):
        assert (resp.status_code == 202) == _valid(raw), (resp.get_json(), raw[:300])


def _plain_json(raw: bytes) -> bool:
    """A body the stdlib reads without recursing out and without NaN (the reference reader's domain)."""
    try:
        text = raw.decode("utf-8-sig")
        json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except (ValueError, RecursionError):
        return False
    return text.count("[") + text.count("{") < 64  # deeper bodies are refused whatever their fields


def _signed(raw: bytes, msg_id: str | None = None) -> dict[str, str]:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return _signed_bytes(raw, msg_id)
    return signed_headers(WEBHOOK_SECRET, text.encode(), msg_id)


def _signed_bytes(raw: bytes, msg_id: str | None) -> dict[str, str]:
    """Standard Webhooks signs the body's bytes; the library wants text, so sign a latin-1 view of them."""
    import base64
    import hashlib
    import hmac

    msg_id = msg_id or f"msg_{time.time_ns()}"
    stamp = str(int(time.time()))
    key = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + raw, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": stamp,
            "webhook-signature": "v1," + base64.b64encode(mac).decode()}


SIGNATURE_FAULTS = st.sampled_from(["missing_id", "missing_timestamp", "missing_signature", "garbled", "old",
                                    "future", "other_body", "several_wrong", "wrong_secret", "not_a_number"])


HEADER_TEXT = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40)


@given(fault=SIGNATURE_FAULTS, junk=HEADER_TEXT)
def test_bad_signature_headers_get_a_json_401_and_nothing_is_enqueued(app, redis, fault, junk):
    redis.flushdb()
    raw = json.dumps(PAYLOAD).encode()
    headers = signed_headers(WEBHOOK_SECRET, raw)
    if fault.startswith("missing_"):
        del headers[{"missing_id": "webhook-id", "missing_timestamp": "webhook-timestamp",
                     "missing_signature": "webhook-signature"}[fault]]
    elif fault == "garbled":
        headers["webhook-signature"] = "v1," + junk.encode("utf-8", "replace").hex()
    elif fault in ("old", "future"):
        when = datetime.now(timezone.utc) + timedelta(minutes=-30 if fault == "old" else 30)
        headers["webhook-timestamp"] = str(int(when.timestamp()))
        headers["webhook-signature"] = Webhook(WEBHOOK_SECRET).sign(headers["webhook-id"], when, raw.decode())
    elif fault == "other_body":
        headers = signed_headers(WEBHOOK_SECRET, json.dumps({**PAYLOAD, "run_id": 1}).encode())
    elif fault == "several_wrong":
        headers["webhook-signature"] = " ".join(["v1,AAAA", "v2,BBBB", "v1a," + junk.encode().hex()])
    elif fault == "wrong_secret":
        other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
        headers = signed_headers(other, raw)
    else:
        headers["webhook-timestamp"] = junk.encode("ascii", "replace").decode() + "x"
    headers = {k: v.encode("latin-1", "replace").decode("latin-1") for k, v in headers.items()}
    resp = app.test_client().post("/webhooks/paradime", data=raw, headers=headers)
    assert resp.status_code == 401, (fault, resp.status_code, resp.get_data()[:200])
    assert resp.get_json()["error"] == "unauthorized"
    assert _queued(redis) == 0 and not _stored(redis)


# --------------------------------------------------------------------------- artifact readers

NODE = st.fixed_dictionaries({"unique_id": st.text(max_size=30) | st.just("model.shop.stg_orders"),
                              "status": st.sampled_from(["error", "fail", "success", "skipped", "warn",
                                                         "runtime error"]) | JSON},
                             optional={"message": JSON, "failures": JSON, "relation_name": JSON,
                                       "execution_time": JSON, "adapter_response": JSON, "timing": JSON,
                                       "thread_id": JSON, "compiled_code": JSON})


@st.composite
def run_results(draw) -> bytes | str:
    kind = draw(st.sampled_from(["json", "shaped", "mutated", "bytes", "truncated"]))
    if kind == "json":
        return _dumps(draw(JSON)).decode()
    if kind == "bytes":
        return draw(st.binary(max_size=500))
    base = make_run_results([("model.shop.stg_orders", "error", "boom"), ("model.shop.b", "success", None)])
    if kind == "truncated":
        text = json.dumps(base)
        return text[: draw(st.integers(min_value=0, max_value=len(text) - 1))]
    if kind == "shaped":
        metadata = draw(st.none() | JSON | st.fixed_dictionaries({}, optional={
            "dbt_schema_version": st.sampled_from(["https://schemas.getdbt.com/dbt/run-results/v6.json",
                                                   "https://schemas.getdbt.com/dbt/manifest/v12.json",
                                                   "https://schemas.getdbt.com/dbt/run-results/v1.json"]) | JSON,
            "dbt_version": JSON, "generated_at": JSON, "invocation_id": JSON, "adapter_type": JSON}))
        doc = {"metadata": metadata, "results": draw(st.lists(NODE | JSON, max_size=5) | JSON), "args": draw(JSON)}
        return _dumps(doc).decode()
    for name in draw(st.lists(st.sampled_from(["metadata", "results", "args", "elapsed_time"]), min_size=1)):
        base[name] = draw(JSON)
    return _dumps(base).decode()


@given(raw=run_results())
def test_run_results_reader_raises_only_artifact_error(raw):
    try:
        rr = parse_run_results(raw)
    except ArtifactError as exc:
        assert str(exc).strip()
        return
    # What the triage reads from a parsed file works on it.
    assert len(rr.failed) <= len(rr.results)
    rr.counts(), rr.warned, rr.skipped, rr.is_stale(datetime(2024, 1, 1))
    adapter_from_run_results(rr)
    for node in rr.results:
        assert isinstance(node.unique_id, str) and isinstance(node.status, str)
        assert node.execution_time is None or isinstance(node.execution_time, float)


LOG_LINES = st.sampled_from(["\x1b[0m12:00:01  Running with dbt=1.8.0", "Encountered an error:", "Database Error",
                             "  002003 (42S02): SQL compilation error:", "Traceback (most recent call last):",
                             "Completed with 1 error and 0 warnings:", "Failure in test x (models/x.yml)",
                             "Compilation Error in model x (models/x.sql)", "\x1b[31mERROR\x1b[0m", "", "  ",
                             "error: dbt1000: x", "Done. PASS=1 WARN=0 ERROR=1 SKIP=0 TOTAL=2"])


@given(lines=st.lists(LOG_LINES | st.text(max_size=80), max_size=40))
def test_log_reader_never_raises(lines):
    text = "\n".join(lines)
    errors = extract_log_errors(text)
    assert all(isinstance(e.message, str) for e in errors)
    adapter_from_log(text)


#: Any valid text (lone surrogates are refused with a 400, as they should be).
NAMES = (st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
         | TRICKY_TEXT.filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                               HealthCheck.data_too_large, HealthCheck.too_slow])
@given(raws=st.lists(bodies(), min_size=3, max_size=3), name=NAMES, branch=NAMES)
def test_accepted_fuzzed_bodies_leave_no_worker_traceback(service, paradime, redis, raws, name, branch):
    """What the intake accepts, real RQ workers then triage: each ends done or dead-lettered with a
    reason, never in an internal error (an exception the code did not expect: a worker traceback)."""
    from rq.registry import FailedJobRegistry

    from tests.test_pipeline import MISSING, dbt_run, failed_run
    from triage.store import Store

    redis.flushdb()
    failed_run(paradime, dbt_run(MISSING))  # run 15500 of the payload's shape exists: those bodies triage for real
    real = _dumps({**PAYLOAD, "schedule_name": name, "branch": branch})  # valid, with any text in its names
    accepted = [tid for raw in [real, *raws]
                if (resp := requests.post(service.webhook_url, data=raw, headers=_signed(raw), timeout=10)).status_code
                == 202 and (tid := resp.json().get("triage_id"))]
    assert accepted, "the valid body was refused"
    service.drain(timeout=60)
    store = Store(redis)
    for triage_id in accepted:
        record = store.get_triage(triage_id) or {}
        assert record.get("status") in ("done", "dead_letter"), (triage_id, record.get("status"), record.get("event"))
        assert not str(record.get("error", "")).startswith("internal error"), (record.get("error"), record.get("event"))
    for queue in (service.queue, service.slack_queue):
        for job_id in FailedJobRegistry(queue=queue).get_job_ids():
            job = queue.fetch_job(job_id)
            info = (job.latest_result().exc_string if job and job.latest_result() else "") or ""
            assert "TriageFailed" in info or "UpstreamError" in info, info[-800:]
