"""Artifact downloads and redirects, against real local HTTP(S) servers: at most 3 redirects, http(s) only,
no https→http downgrade, never to a private/loopback/link-local/unspecified/multicast address unless the
configured Paradime endpoint is itself on such an address; a refusal sends the triage to the log."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask, jsonify, redirect, request
from werkzeug.serving import make_server

from tests.test_paradime_client import client_for
from triage.errors import UpstreamError
from triage.evidence import _run_results_of
from triage.models import Command, Resource
from triage.paradime import ParadimeClient

LOOPBACK_ENDPOINT = "http://127.0.0.1:1/api/v1/x/graphql"  # the tests' and the simulator's situation
PUBLIC_ENDPOINT = "https://1.1.1.1/api/v1/x/graphql"  # a public address (a literal: no DNS needed)


class Hops:
    """A tiny artifact host: ``/file`` is the artifact, ``/to?url=…`` redirects there, ``/chain/N`` N times."""

    def __init__(self, ssl_context=None):
        self.hits: list[tuple[str, dict]] = []
        app = Flask("hops")

        @app.before_request
        def record():
            self.hits.append((request.path, dict(request.headers)))

        @app.get("/file")
        def file():
            return "artifact-bytes"

        @app.get("/to")
        def to():
            return redirect(request.args["url"], code=int(request.args.get("code", 302)))

        @app.get("/chain/<int:n>")
        def chain(n: int):
            return redirect(f"/chain/{n - 1}" if n > 1 else "/file", code=307)

        self.server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=ssl_context)
        self.scheme = "https" if ssl_context else "http"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_port}"

    def to(self, url: str, code: int = 302) -> str:
        return f"{self.base}/to?url={requests.utils.quote(url, safe='')}&code={code}&sig=secret-signature"

    def paths(self) -> list[str]:
        return [p for p, _ in self.hits]


@pytest.fixture
def hops() -> Iterator[Hops]:
    h = Hops()
    yield h
    h.server.shutdown()


def refusal(client: ParadimeClient, url: str) -> str:
    with pytest.raises(UpstreamError) as info:
        client.download(url, max_bytes=10_000)
    assert not info.value.retryable, "a policy refusal is definite: not tried again"
    message = str(info.value)
    assert "\n" not in message and "secret-signature" not in message
    return message


def test_redirects_are_followed_up_to_three_times_without_credentials(hops):
    client = client_for(LOOPBACK_ENDPOINT)
    assert client.download(f"{hops.base}/chain/3", max_bytes=1000) == b"artifact-bytes"
    assert hops.paths() == ["/chain/3", "/chain/2", "/chain/1", "/file"]
    assert client.download(hops.to(f"{hops.base}/file", code=301), max_bytes=1000) == b"artifact-bytes"
    assert client.download(hops.to("/file", code=308), max_bytes=1000) == b"artifact-bytes"  # relative Location
    assert all("X-Api-Key" not in h and "X-Api-Secret" not in h for _, h in hops.hits)


def test_a_fourth_redirect_is_refused(hops):
    client = client_for(LOOPBACK_ENDPOINT)
    hops.hits.clear()
    message = refusal(client, f"{hops.base}/chain/4")
    assert message == f"artifact download from {hops.base}/…: more than 3 redirects; not followed"
    assert hops.paths() == ["/chain/4", "/chain/3", "/chain/2", "/chain/1"]


@pytest.mark.parametrize("target, reason", [
    ("http://10.0.0.1/bucket/run_results.json", "private address 10.0.0.1"),
    ("http://192.168.1.20:8080/x", "private address 192.168.1.20"),
    ("http://169.254.169.254/latest/meta-data/iam/", "link-local address 169.254.169.254"),
    ("http://[fe80::1]/x", "link-local address fe80::1"),
    ("http://[::ffff:10.1.2.3]/x", "private address ::ffff:10.1.2.3"),
    ("http://224.0.0.1/x", "multicast address 224.0.0.1"),
    ("http://100.64.0.1/x", "non-public address 100.64.0.1"),
    ("http://[fd00::1]/x", "private address fd00::1"),
])
def test_redirects_to_private_addresses_are_refused_before_connecting(hops, target, reason):
    client = client_for(LOOPBACK_ENDPOINT)
    message = refusal(client, hops.to(target))
    host = target.split("/")[2]
    assert message == f"artifact download from {hops.base}/…: redirect to http://{host}/… refused: {reason}"


def test_unspecified_address_is_refused_even_though_it_would_reach_this_host(hops):
    client = client_for(LOOPBACK_ENDPOINT)
    port = hops.server.server_port
    message = refusal(client, hops.to(f"http://0.0.0.0:{port}/file"))
    assert message.endswith(f"redirect to http://0.0.0.0:{port}/… refused: unspecified address 0.0.0.0")
    assert "/file" not in hops.paths()


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://example.com/run_results.json",
                                    "gopher://127.0.0.1:70/x"])
def test_only_http_and_https_are_followed(hops, target):
    client = client_for(LOOPBACK_ENDPOINT)
    scheme = target.split(":")[0]
    assert refusal(client, hops.to(target)).endswith(f"refused: {scheme} URL (http and https only)")


def test_with_a_public_endpoint_loopback_is_refused_too(hops):
    client = client_for(PUBLIC_ENDPOINT)
    port = hops.server.server_port
    assert refusal(client, f"http://127.0.0.1:{port}/file") == (
        f"artifact download from http://127.0.0.1:{port}/…: refused: loopback address 127.0.0.1")
    assert "resolves to loopback address" in refusal(client, f"http://localhost:{port}/file")
    assert hops.hits == [], "nothing was connected to"


def test_the_endpoint_allows_only_its_own_kind_of_address(hops):
    """A loopback endpoint allows loopback (the simulator), not private networks or link-local."""
    client = client_for(LOOPBACK_ENDPOINT)
    assert client.download(f"http://localhost:{hops.server.server_port}/file", max_bytes=100) == b"artifact-bytes"
    assert "private address 10.9.8.7" in refusal(client, hops.to("http://10.9.8.7/x"))


@pytest.fixture
def tls(tmp_path: Path) -> tuple[str, str]:
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out",
                    str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


def test_https_to_http_downgrade_is_refused(hops, tls):
    secure = Hops(ssl_context=tls)
    session = requests.Session()
    session.verify = tls[0]  # trust the test certificate; nothing else changes
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides ``verify``
    client = ParadimeClient(client_for(LOOPBACK_ENDPOINT).settings, session=session, backoff_base=0.01)
    try:
        assert client.download(secure.to(f"{secure.base}/file"), max_bytes=100) == b"artifact-bytes"  # https→https
        message = refusal(client, secure.to(f"{hops.base}/file"))
    finally:
        secure.server.shutdown()
    assert message == (f"artifact download from {secure.base}/…: redirect to {hops.base}/… refused: "
                       "https to http downgrade")
    assert hops.hits == []


def test_a_refused_redirect_makes_the_triage_read_the_log(hops):
    """Through the evidence code: Paradime hands out a URL that redirects to the metadata service."""
    paradime = Flask("mini-paradime")

    @paradime.post("/api/v1/x/graphql")
    def graphql():
        assert request.json["variables"] == {"resourceId": 7}
        return jsonify(data={"boltResourceUrl": {"ok": True, "url": hops.to("http://169.254.169.254/latest/")}})

    server = make_server("127.0.0.1", 0, paradime, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = client_for(f"http://127.0.0.1:{server.server_port}/api/v1/x/graphql")
        command = Command(3, "dbt run", 1, resources=(Resource(7, "target/run_results.json"),))
        parsed, note = _run_results_of(client, command, max_bytes=10_000, wait=False)
    finally:
        server.shutdown()
    assert parsed is None
    assert note == (f"`dbt run`: run_results.json unusable (artifact download from {hops.base}/…: redirect to "
                    "http://169.254.169.254/… refused: link-local address 169.254.169.254); read its log")
