"""The Bolt GraphQL client against the simulator and small real servers: retries, ambiguity, secrecy."""

from __future__ import annotations

import socket
import threading

import pytest
from flask import Flask, request
from werkzeug.serving import make_server

from tests.conftest import free_port
from triage.config import ParadimeSettings
from triage.errors import UpstreamError
from triage.paradime import AmbiguousMutation, ParadimeClient
from triage.sim.paradime import SimCommand


def client_for(endpoint: str, key="sim-key", secret="sim-secret", **kw) -> ParadimeClient:
    settings = ParadimeSettings(endpoint=endpoint, api_key=key, api_secret=secret, timeout_seconds=kw.pop("timeout", 1),
                                max_attempts=kw.pop("attempts", 3))
    return ParadimeClient(settings, backoff_base=0.01)


@pytest.fixture
def client(paradime) -> ParadimeClient:
    return client_for(paradime.graphql_url)


@pytest.fixture
def run_id(paradime) -> int:
    return paradime.add_run("daily", [SimCommand("dbt run", 1, stdout="boom")])


@pytest.mark.parametrize("kind", ["http_500", "http_502", "http_429", "graphql_error", "bad_json", "timeout"])
def test_queries_survive_transient_faults(paradime, client, run_id, kind):
    paradime.fail_next("boltRunStatus", times=2, kind=kind, delay=1.5)
    status = client.run_status(run_id)
    assert status.state == "ERROR" and status.commands[0].failed
    assert status.logs[status.commands[0].id] == "boom"
    assert len(paradime.calls_of("boltRunStatus")) == 3


def test_queries_give_up_after_bounded_attempts_with_a_clear_reason(paradime, client, run_id):
    paradime.fail_next("boltRunStatus", times=10, kind="http_502")
    with pytest.raises(UpstreamError, match=r"Paradime boltRunStatus: HTTP 502 after 3 attempts") as info:
        client.run_status(run_id)
    assert info.value.retryable
    assert "simworkspace" not in str(info.value), "the endpoint path (workspace token) stays out of errors"


def test_refused_credentials_are_not_retried_and_not_echoed(paradime, run_id):
    client = client_for(paradime.graphql_url, key="wrong-key", secret="wrong-secret")
    with pytest.raises(UpstreamError, match="HTTP 401: the API key/secret were refused") as info:
        client.run_status(run_id)
    assert not info.value.retryable
    assert "wrong-key" not in str(info.value) and "wrong-secret" not in str(info.value)
    assert len(paradime.calls_of("boltRunStatus")) == 1


def test_a_mutation_with_a_5xx_is_ambiguous_and_sent_once(paradime, client, run_id):
    paradime.fail_next("retryBoltRun", kind="http_500")
    with pytest.raises(AmbiguousMutation):
        client.retry_run(run_id)
    assert len(paradime.calls_of("retryBoltRun")) == 1


def test_a_mutation_timeout_is_ambiguous(paradime, client, run_id):
    paradime.fail_next("retryBoltRun", kind="timeout", delay=2)
    with pytest.raises(AmbiguousMutation, match="no answer within 1s"):
        client.retry_run(run_id)
    assert len(paradime.calls_of("retryBoltRun")) == 1


def test_a_refused_mutation_is_definite(paradime, client):
    ok = paradime.add_run("green", [SimCommand("dbt run", 0)])
    with pytest.raises(UpstreamError, match="nothing to retry") as info:
        client.retry_run(ok)
    assert not info.value.retryable and not isinstance(info.value, AmbiguousMutation)


def test_a_mutation_to_a_closed_port_was_never_sent(run_id):
    client = client_for(f"http://127.0.0.1:{free_port()}/api/v1/x/graphql")
    with pytest.raises(UpstreamError) as info:
        client.retry_run(run_id)
    assert info.value.retryable and not isinstance(info.value, AmbiguousMutation)


def test_a_connection_dropped_after_sending_a_mutation_is_ambiguous():
    """The server reads the request and hangs up: it may have acted on it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    client = client_for(f"http://127.0.0.1:{port}/api/v1/x/graphql")
    with pytest.raises(AmbiguousMutation, match="connection lost"):
        client.retry_run(1)
    listener.close()


def test_artifact_download_sends_no_credentials_and_caps_size():
    seen: list[dict] = []
    app = Flask("artifacts")

    @app.get("/big")
    def big():
        seen.append(dict(request.headers))
        return "x" * 5000

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = client_for("http://127.0.0.1:1/graphql")
    url = f"http://127.0.0.1:{server.server_port}/big?sig=secret-signature"
    try:
        assert len(client.download(url, max_bytes=10_000)) == 5000
        with pytest.raises(UpstreamError, match="larger than 1024 bytes") as info:
            client.download(url, max_bytes=1024)
    finally:
        server.shutdown()
    assert "secret-signature" not in str(info.value)
    assert all("X-Api-Key" not in h and "X-Api-Secret" not in h for h in seen)


def test_resource_not_ready_is_none(paradime, client):
    run = paradime.add_run("daily", [SimCommand("dbt run", 1, artifacts={"target/run_results.json": {"x": 1}})])
    [command] = paradime.get_run(run).commands
    resource = command.resources[0].id
    paradime.resource_not_ready(resource, times=1)
    assert client.resource_url(resource) is None
    assert client.resource_url(resource).startswith("http://127.0.0.1:")
