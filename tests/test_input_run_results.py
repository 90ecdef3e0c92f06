"""A run_results.json nested absurdly deep is an unreadable artifact like any other: ArtifactError with a
clear reason, and the triage reads the command's log instead of failing with a RecursionError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_pipeline import MISSING, _triage_of, failed_run
from triage.errors import ArtifactError
from triage.jsontext import json_nesting_exceeds
from triage.run_results import MAX_JSON_DEPTH, parse_run_results
from triage.sim.paradime import SimCommand, make_run_results

DEEP = "[" * 100_000 + "]" * 100_000


def _valid_with(value_json: str) -> str:
    """A valid run_results.json whose first node's adapter_response holds ``value_json``."""
    doc = make_run_results([("model.shop.stg_orders", "error", "boom")])
    doc["results"][0]["adapter_response"] = {"deep": "PLACEHOLDER"}
    return json.dumps(doc).replace('"PLACEHOLDER"', value_json, 1)


@pytest.mark.parametrize("raw", [DEEP, DEEP.encode(), _valid_with(DEEP), "[" * 100_000,
                                 _valid_with("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)])
def test_deep_nesting_is_an_artifact_error(raw):
    with pytest.raises(ArtifactError, match=rf"run_results.json is nested too deeply \(more than {MAX_JSON_DEPTH} "
                                            r"levels of arrays/objects\): not a dbt artifact"):
        parse_run_results(raw)


def test_nesting_below_the_limit_and_brackets_in_strings_are_read():
    depth = MAX_JSON_DEPTH - 4  # top level, results, node, adapter_response, then the nested value
    rr = parse_run_results(_valid_with("[" * depth + "]" * depth).replace('"boom"', '"' + "[{" * 5000 + '\\""'))
    assert rr.failed[0].message == "[{" * 5000 + '"'


def test_the_depth_scan_is_exact_on_valid_json():
    for depth in (1, 2, 63, 64, 65):
        text = json.dumps(json.loads("[" * depth + "]" * depth))
        assert json_nesting_exceeds(text, 64) is (depth > 64)
        text = '{"a": ' * depth + "1" + "}" * depth
        assert json_nesting_exceeds(text, 64) is (depth > 64)
    assert not json_nesting_exceeds(json.dumps({"s": "{[" * 100, "t": "\\\"[[[["}), 1)


def test_a_deep_run_results_falls_back_to_the_log(service, paradime, slack):
    """Deterministic, so not retried (the simulator itself cannot copy such an artifact into a retry run)."""
    command = SimCommand("dbt run", 1, stdout=MISSING, artifacts={"target/run_results.json": DEEP})
    run_id = failed_run(paradime, command)
    paradime.deliver(run_id)
    service.drain()

    record = _triage_of(service, run_id)
    assert record is not None and record["action"] == "none"
    failure = record["evidence"]["failures"][0]
    assert failure["classification"]["source"] == "log"
    assert failure["classification"]["category"] == "missing_object"
    assert any("run_results.json unusable (run_results.json is nested too deeply" in n
               for n in record["evidence"]["notes"])
    [message] = slack.top_level()
    assert "Not retrying" in message.text and "Could not triage" not in message.text
    assert "RecursionError" not in json.dumps([m.blocks for m in slack.messages])


SAMPLES = sorted((Path(__file__).parents[2] / "shared" / "samples").glob("*run_results*.json"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_the_stream_reader_reads_what_the_strict_reader_reads(path, tmp_path):
    """Bytes and files are streamed, text goes through json.loads: both must give the same RunResults."""
    raw = path.read_bytes()
    strict = parse_run_results(raw.decode("utf-8-sig"))
    assert parse_run_results(raw) == strict
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + raw)
    with bom.open("rb") as f:
        assert parse_run_results(f) == strict


@pytest.mark.parametrize("raw, message", [
    (b'{"metadata": {}, "results": null}', 'run_results.json "results" must be a list, got null'),
    (b'{"results": [{"unique_id": "model.a.b", "status": "error"}, 3]}', "results[1] is not an object (got number)"),
    (b'{"results": [{"unique_id": "model.a.b"}]}', 'results[0] (model.a.b) has no "status"'),
    (b'{"results": []} trailing', "run_results.json is not valid JSON: Extra data at line 1 column 17 (char 16)"),
])
def test_the_stream_reader_refuses_with_the_strict_readers_messages(raw, message):
    with pytest.raises(ArtifactError) as info:
        parse_run_results(raw)
    assert str(info.value) == message
    with pytest.raises(ArtifactError) as strict:
        parse_run_results(raw.decode())
    assert str(strict.value) == message
