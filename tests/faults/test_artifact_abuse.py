"""Hostile artifact downloads, from a raw socket server that answers exactly the bytes a test gives it:
a gzip bomb, a body that never ends, one that drips a byte at a time, one cut short of its
Content-Length, a corrupt gzip stream, an HTML page, the wrong content type, 60 MB with and without
Content-Length, 50,000 results. Each ends in a parsed file or in a one-line reason with which the triage
reads the log instead (``evidence._run_results_of``), quickly, never in an exception that would make the
job fail and RQ run it again (what the existing redirect and deep-nesting tests do not cover).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from flask import Flask, jsonify
from werkzeug.serving import make_server

from triage.config import ParadimeSettings
from triage.evidence import _run_results_of
from triage.models import Command, Resource
from triage.paradime import ParadimeClient
from triage.sim.paradime import make_run_results

pytestmark = pytest.mark.slow

MAX_BYTES = 50 * 1024 * 1024
DOWNLOAD_SECONDS = 5.0
GOOD = json.dumps(make_run_results([("model.shop.stg_orders", "error", "boom")])).encode()

Answer = Callable[[socket.socket], None]


class RawHost:
    """Answers every connection with ``answer(sock)``: the test writes the status line, headers and body."""

    def __init__(self) -> None:
        self.answer: Answer = lambda sock: None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(sock,), daemon=True).start()

    def _one(self, sock: socket.socket) -> None:
        with sock:
            sock.recv(65536)  # the request; its content does not matter
            with contextlib.suppress(OSError):  # the client hung up: what a refused download does
                self.answer(sock)

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def head(sock: socket.socket, *headers: str, status: str = "200 OK") -> None:
    sock.sendall(("\r\n".join([f"HTTP/1.1 {status}", *headers, "Connection: close"]) + "\r\n\r\n").encode())


@pytest.fixture
def host() -> Iterator[RawHost]:
    h = RawHost()
    yield h
    h.close()


@pytest.fixture
def read(host: RawHost) -> Iterator[Callable[[], tuple[object, str | None, float]]]:
    """What the triage makes of the artifact the host serves: (parsed or None, note, seconds taken)."""
    paradime = Flask("mini-paradime")

    @paradime.post("/api/v1/x/graphql")
    def graphql():
        return jsonify(data={"boltResourceUrl": {"ok": True, "url": f"http://127.0.0.1:{host.port}/rr?sig=s"}})

    server = make_server("127.0.0.1", 0, paradime, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = ParadimeSettings(endpoint=f"http://127.0.0.1:{server.server_port}/api/v1/x/graphql", api_key="k",
                                api_secret="s", timeout_seconds=2, max_attempts=2, download_seconds=DOWNLOAD_SECONDS)
    client = ParadimeClient(settings, backoff_base=0.01)
    command = Command(3, "dbt run", 1, resources=(Resource(7, "target/run_results.json"),))

    def run() -> tuple[object, str | None, float]:
        start = time.monotonic()
        parsed, note = _run_results_of(client, command, max_bytes=MAX_BYTES, wait=False)
        return parsed, note, time.monotonic() - start

    yield run
    server.shutdown()


def _fixed(body: bytes, *headers: str) -> Answer:
    def answer(sock: socket.socket) -> None:
        head(sock, f"Content-Length: {len(body)}", *headers)
        sock.sendall(body)
    return answer


def _unusable(note: str | None, reason: str) -> None:
    assert note is not None and note.startswith("`dbt run`: run_results.json unusable (") and reason in note, note
    assert note.endswith("); read its log") and "\n" not in note and "sig=s" not in note


def test_a_gzip_bomb_is_stopped_at_the_byte_cap(host, read):
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)  # 200 MB in about 200 KB
    host.answer = _fixed(bomb, "Content-Encoding: gzip", "Content-Type: application/json")
    parsed, note, took = read()
    assert parsed is None
    _unusable(note, f"larger than {MAX_BYTES} bytes")
    assert took < 30


def test_a_body_that_never_ends_is_stopped_at_the_byte_cap(host, read):
    def endless(sock: socket.socket) -> None:
        head(sock, "Content-Type: application/json")
        chunk = b" " * 65536
        while True:
            sock.sendall(chunk)

    host.answer = endless
    parsed, note, took = read()
    assert parsed is None
    _unusable(note, f"larger than {MAX_BYTES} bytes")
    assert took < 60


def test_a_body_that_drips_is_given_up_on(host, read):
    """A byte a second never trips the per-read timeout; the download as a whole has a deadline."""
    def drip(sock: socket.socket) -> None:
        head(sock, "Content-Type: application/json")
        while True:
            sock.sendall(b" ")
            time.sleep(0.5)

    host.answer = drip
    parsed, note, took = read()
    assert parsed is None
    _unusable(note, f"not finished within {DOWNLOAD_SECONDS:.0f}s")
    assert took < DOWNLOAD_SECONDS + 2 * 2 + 5  # the deadline, at most one read timeout late, no second try


def test_a_body_cut_short_of_its_length(host, read):
    def short(sock: socket.socket) -> None:
        head(sock, f"Content-Length: {len(GOOD)}", "Content-Type: application/json")
        sock.sendall(GOOD[: len(GOOD) // 2])

    host.answer = short
    parsed, note, _ = read()
    assert parsed is None
    _unusable(note, "connection closed before the end of the body")


def test_a_corrupt_gzip_stream(host, read):
    host.answer = _fixed(b"\x1f\x8b\x08\x00garbage-not-deflate" * 10, "Content-Encoding: gzip")
    parsed, note, _ = read()
    assert parsed is None
    _unusable(note, "could not decompress (Content-Encoding: gzip)")


def test_sixty_megabytes_with_a_content_length_are_refused_before_reading(host, read):
    def declared(sock: socket.socket) -> None:
        head(sock, f"Content-Length: {60 * 1024 * 1024}")
        sock.sendall(b"{" * 1024)  # no more follows: the length alone refuses it

    host.answer = declared
    parsed, note, took = read()
    assert parsed is None
    _unusable(note, f"larger than {MAX_BYTES} bytes")
    assert took < 10


def test_sixty_megabytes_without_a_content_length_are_stopped_at_the_cap(host, read):
    def undeclared(sock: socket.socket) -> None:
        head(sock)
        for _ in range(60 * 16):
            sock.sendall(b" " * 65536)

    host.answer = undeclared
    parsed, note, _ = read()
    assert parsed is None
    _unusable(note, f"larger than {MAX_BYTES} bytes")


def test_an_html_page_is_not_run_results(host, read):
    host.answer = _fixed(b"<html><body>Access Denied</body></html>", "Content-Type: text/html")
    parsed, note, _ = read()
    assert parsed is None
    _unusable(note, "run_results.json is not valid JSON")


def test_the_content_type_does_not_matter_for_a_good_file(host, read):
    host.answer = _fixed(GOOD, "Content-Type: application/octet-stream")
    parsed, note, _ = read()
    assert note is None and [n.unique_id for n in parsed.failed] == ["model.shop.stg_orders"]


def test_gzip_encoded_good_file_is_read(host, read):
    host.answer = _fixed(gzip.compress(GOOD), "Content-Encoding: gzip", "Content-Type: application/json")
    parsed, note, _ = read()
    assert note is None and len(parsed.results) == 1


def test_invalid_utf8_is_refused(host, read):
    host.answer = _fixed(GOOD.replace(b"boom", b"bo\xff\xfeom"))
    parsed, note, _ = read()
    assert parsed is None
    _unusable(note, "run_results.json is not UTF-8 text")


def test_fifty_thousand_results_are_read_quickly(host, read):
    nodes = [(f"model.shop.m{i}", "error" if i % 1000 == 0 else "success", "boom" if i % 1000 == 0 else None)
             for i in range(50_000)]
    host.answer = _fixed(json.dumps(make_run_results(nodes)).encode())
    parsed, note, took = read()
    assert note is None and len(parsed.results) == 50_000 and len(parsed.failed) == 50
    assert took < 30
