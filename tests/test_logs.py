"""triage.logs: no secret reaches a log line (library lines and tracebacks included), and every line
written inside a job carries its triage id. Real logging, a real slack_sdk client, a real HTTP server."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.webhook import WebhookClient

from triage import logs

HOOK_PATH = "/services/T000/B000/verysecretpart"


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Each test starts with no secrets known and leaves the root logger as it found it (pytest's own
    capture handlers included)."""
    root = logging.getLogger()
    saved = [(h, h.formatter, list(h.filters)) for h in root.handlers]
    level = root.level
    state = (logs._state, logs._current_fmt)
    logs._state = (None, {})
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler, formatter, filters in saved:
        handler.setFormatter(formatter)
        handler.filters[:] = filters
        root.addHandler(handler)
    root.setLevel(level)
    logs._state, logs._current_fmt = state


class _Hook(BaseHTTPRequestHandler):
    """Plays ``server.script`` one step per request: a status code, or "drop" (close, no answer)."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.paths.append(self.path)
        step = self.server.script.pop(0) if self.server.script else 200
        if step == "drop":
            self.close_connection = True
            return
        body = b"ok" if step == 200 else b"internal_error"
        self.send_response(step)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # the server's own access lines are not under test
        pass


@pytest.fixture
def hook_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.script, server.paths = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _client(url: str) -> WebhookClient:
    fast = FixedValueRetryIntervalCalculator(0.01)
    handlers = [ConnectionErrorRetryHandler(max_retry_count=2, interval_calculator=fast),
                ServerErrorRetryHandler(max_retry_count=2, interval_calculator=fast)]
    return WebhookClient(url, timeout=5, retry_handlers=handlers)


@pytest.mark.parametrize("configured", [True, False], ids=["url-configured", "pattern-only"])
@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
@pytest.mark.parametrize(
    ("script", "retry_line"),
    [([500, 500], "A retry handler found: ServerErrorRetryHandler for POST"),
     (["drop"], "Going to retry the same request: POST")],
    ids=["500-500-200", "drop-200"],
)
def test_slack_sdk_retry_lines_never_show_the_webhook_secret(hook_server, capfd, configured, level, script,
                                                             retry_line):
    url = f"http://127.0.0.1:{hook_server.server_address[1]}{HOOK_PATH}"
    hook_server.script = list(script)
    logs.install([url] if configured else [], level=level)  # the handler writes to (captured) stderr

    response = _client(url).send(text="hello")

    assert response.status_code == 200
    assert hook_server.paths == [HOOK_PATH] * (len(script) + 1)  # it really retried
    err = capfd.readouterr().err
    assert retry_line in err
    assert "verysecretpart" not in err
    assert "***" in err
    if level == "DEBUG":
        assert "Sending a request - url:" in err  # the DEBUG line with the full URL was written, masked


def _capture(fmt: str = "text", secrets: tuple[str, ...] = (), level: str = "INFO") -> io.StringIO:
    out = io.StringIO()
    logs.install(list(secrets), level=level, fmt=fmt, stream=out)
    return out


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_traceback_that_contains_a_secret_is_redacted(fmt):
    api_secret = "pd-api-secret-0123456789"
    out = _capture(fmt, secrets=(api_secret,))
    try:
        raise RuntimeError(f"POST https://hooks.slack.com{HOOK_PATH} failed; auth {api_secret}")
    except RuntimeError:
        logging.getLogger("triage.slack").exception("posting failed")
    text = out.getvalue()
    assert "verysecretpart" not in text and api_secret not in text
    assert "Traceback (most recent call last)" in text
    assert "hooks.slack.com/services/***" in text
    if fmt == "json":
        record = json.loads(text)
        assert record["message"] == "posting failed"
        assert "RuntimeError: POST https://hooks.slack.com/services/*** failed; auth ***" in record["exc"]


def test_stack_info_is_redacted_too():
    out = _capture(secrets=("stack-secret-value",))
    logging.getLogger("x").info("here", stack_info=True)  # stack-secret-value: the stack shows this source line
    assert "Stack (most recent call last)" in out.getvalue()
    assert "# ***: the stack shows this source line" in out.getvalue()
    assert "stack-secret-value" not in out.getvalue()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_library_lines_inside_bound_carry_the_triage_id(fmt, request):
    for name in ("urllib3.connectionpool", "rq.worker"):  # an earlier RQ worker in this process sets its own level
        logger = logging.getLogger(name)
        request.addfinalizer(lambda logger=logger, level=logger.level: logger.setLevel(level))
        logger.setLevel(logging.NOTSET)
    out = _capture(fmt, level="DEBUG")
    library = logging.getLogger("urllib3.connectionpool")
    library.debug("before")
    with logs.bound("tr_abc", run_id=4242):
        assert logs.triage_id.get() == "tr_abc" and logs.run_id.get() == 4242
        library.debug('http://127.0.0.1:80 "POST /x HTTP/1.1" 200 2')
        logging.getLogger("rq.worker").info("job started")
    library.debug("after")
    assert logs.triage_id.get() is None and logs.run_id.get() is None
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    if fmt == "text":
        assert " DEBUG urllib3.connectionpool before" in lines[0] and "[" not in lines[0]
        assert " DEBUG urllib3.connectionpool [tr_abc] http://127.0.0.1:80" in lines[1]
        assert " INFO rq.worker [tr_abc] job started" in lines[2]
        assert "[" not in lines[3]
    else:
        records = [json.loads(line) for line in lines]
        assert [(r["logger"], r["triage_id"], r["run_id"]) for r in records] == [
            ("urllib3.connectionpool", None, None),
            ("urllib3.connectionpool", "tr_abc", 4242),
            ("rq.worker", "tr_abc", 4242),
            ("urllib3.connectionpool", None, None),
        ]


def test_bound_is_per_thread():
    out = _capture()
    seen = []

    def other() -> None:
        seen.append(logs.triage_id.get())
        logging.getLogger("other").info("from another thread")

    with logs.bound("tr_main"):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen == [None]
    assert "[tr_main]" not in out.getvalue()


def test_json_output_is_one_object_per_line():
    out = _capture("json", secrets=("xoxb-1234-5678-abcdefgh",))
    log = logging.getLogger("triage.test")
    log.info("multi\nline \"quoted\" message with token xoxb-1234-5678-abcdefgh")
    log.warning("percent %s and %d", "args", 3)
    with logs.bound("tr_json"):
        try:
            {}["missing"]
        except KeyError:
            log.error("lookup failed", exc_info=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert all(set(r) >= {"time", "level", "logger", "message", "triage_id", "run_id"} for r in records)
    assert records[0]["message"] == 'multi\nline "quoted" message with token xoxb-***'
    assert records[0]["time"].endswith("Z") and "T" in records[0]["time"]
    assert records[1]["message"] == "percent args and 3" and records[1]["level"] == "WARNING"
    assert "exc" not in records[0] and "KeyError: 'missing'" in records[2]["exc"]
    assert records[2]["triage_id"] == "tr_json" and records[2]["run_id"] is None


def test_install_twice_does_not_duplicate_lines():
    first = _capture()
    out = _capture(secrets=("second-call-secret",))  # replaces the first handler, keeps adding secrets
    logs.install(["third-call-secret"], stream=out)
    ours = [h for h in logging.getLogger().handlers if getattr(h, logs._HANDLER_MARK, False)]
    assert len(ours) == 1
    logging.getLogger("once").warning("second-call-secret third-call-secret")
    assert first.getvalue() == ""
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith("WARNING once *** ***")


def test_redact_masks_paradime_endpoint_slack_tokens_and_secrets():
    logs.install(["my-admin-token-value", "short", "", None, "whsec_c2VjcmV0LWtleQ=="], stream=io.StringIO())
    assert logs.redact("POST https://api.paradime.io/api/v1/abc123def/graphql: 502") == (
        "POST https://api.paradime.io/api/v1/***/graphql: 502")
    assert logs.redact("Authorization: Bearer xoxb-12345-67890-AbCdEf") == "Authorization: Bearer xoxb-***"
    assert logs.redact("xoxp-1-2-3 and xapp-1-2") == "xoxp-*** and xapp-1-2"
    assert logs.redact("https://proxy.internal:8443/services/TABC/BDEF/s3cr3t?x=1") == (
        "https://proxy.internal:8443/services/***?x=1")
    assert logs.redact("token=my-admin-token-value") == "token=***"
    assert logs.redact("short secrets are ignored") == "short secrets are ignored"
    assert logs.redact("key c2VjcmV0LWtleQ== or whsec_c2VjcmV0LWtleQ==") == "key *** or whsec_***"
    assert logs.redact("unknown whsec_zzzzzzzzzz") == "unknown whsec_***"


def test_redact_masks_escaped_forms_of_a_configured_secret():
    url = "https://hooks.example.test/custom/hook-path-secret"  # no pattern would catch this one
    logs.install([url], stream=io.StringIO())
    assert logs.redact(f"plain {url}") == "plain ***"
    assert logs.redact(json.dumps({"u": url}).replace("/", "\\/")) == '{"u": "***"}'
    assert "hook-path-secret" not in logs.redact("https%3A%2F%2Fhooks.example.test%2Fcustom%2Fhook-path-secret")


def test_secrets_of_reads_the_settings_credentials():
    from triage.config import ParadimeSettings, SlackSettings, WebhookSettings

    class Settings:  # the attributes secrets_of reads, nothing else
        redis_url = "redis://:redis-pass-word@127.0.0.1:6379/0"
        webhook = WebhookSettings(secret="whsec_abcdefgh", token=None)
        paradime = ParadimeSettings(endpoint="https://api.paradime.io/api/v1/tok/graphql", api_key="key-123456",
                                    api_secret="secret-123456")
        slack = SlackSettings(webhook_url=f"https://hooks.slack.com{HOOK_PATH}", bot_token=None)
        admin_token = "admin-123456"

    found = logs.secrets_of(Settings())
    assert set(found) == {"whsec_abcdefgh", "https://api.paradime.io/api/v1/tok/graphql", "key-123456",
                          "secret-123456", f"https://hooks.slack.com{HOOK_PATH}", "admin-123456",
                          "redis-pass-word"}


@pytest.mark.parametrize("bad", ["xml", "JSON", ""])
def test_unknown_format_is_a_one_line_value_error(bad):
    with pytest.raises(ValueError, match=r"^LOG_FORMAT: expected one of text, json, got ") as info:
        logs.install([], fmt=bad)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"^LOG_LEVEL: "):
        logs.install([], level="chatty")


class _GunicornLogger(Logger):
    """What triage/gunicorn_conf.py wires: gunicorn's own handlers, redacted."""

    def setup(self, cfg):
        super().setup(cfg)
        logs.redact_handlers(["gunicorn.error", "gunicorn.access"])


def test_gunicorn_loggers_are_redacted_after_setup_and_reload(capfd):
    logs.install([f"https://hooks.slack.com{HOOK_PATH}"], stream=io.StringIO())
    cfg = Config()
    cfg.set("errorlog", "-")
    cfg.set("accesslog", "-")
    glog = _GunicornLogger(cfg)
    try:
        glog.error("worker failed posting to https://hooks.slack.com%s", HOOK_PATH)
        glog.setup(cfg)  # what a HUP does: fresh handlers, wrapped again, not twice
        assert len(logging.getLogger("gunicorn.error").handlers) == 1
        glog.access_log.info("POST /webhooks/x xoxb-999-888-secret 200")
        captured = capfd.readouterr()
        assert "worker failed posting to https://hooks.slack.com/services/***" in captured.err
        assert "[ERROR]" in captured.err  # gunicorn's own layout is kept
        assert "verysecretpart" not in captured.err and "xoxb-999" not in captured.out
        assert "xoxb-***" in captured.out
    finally:
        for name in ("gunicorn.error", "gunicorn.access"):
            for handler in list(logging.getLogger(name).handlers):
                logging.getLogger(name).removeHandler(handler)


def test_redact_handlers_reformat_uses_the_installed_format(capfd):
    logs.install([], fmt="json", stream=io.StringIO())
    lonely = logging.getLogger("triage.test.lonely")
    lonely.propagate = False
    handler = logging.StreamHandler()
    lonely.addHandler(handler)
    try:
        logs.redact_handlers(["triage.test.lonely"], reformat=True)
        with logs.bound("tr_lonely"):
            lonely.warning("via xoxb-1-2-3")
        record = json.loads(capfd.readouterr().err)
        assert record["message"] == "via xoxb-***" and record["triage_id"] == "tr_lonely"
    finally:
        lonely.removeHandler(handler)
        lonely.propagate = True


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_text_that_bypasses_logging_is_redacted_and_json_too(fmt):
    """What a process prints itself (multiprocessing's traceback of a dead child, a stray print) goes
    through the guard of the std streams: masked, and with fmt=json one JSON object per line."""
    _capture(fmt, secrets=("pd-api-secret-0123456789",))
    target = io.StringIO()
    guard = logs._StreamGuard(target, "stderr")
    with logs.bound("tr_guarded", run_id=7):
        guard.write("Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: pd-api-secret-0")
        guard.write("123456789 refused\n")
    guard.write('{"time": "t", "level": "INFO", "logger": "gunicorn.access", "message": "GET /"}\n')
    lines = target.getvalue().splitlines()
    assert "pd-api-secret-0123456789" not in target.getvalue() and len(lines) == 4
    if fmt == "text":
        assert lines[2] == "RuntimeError: *** refused"
        return
    records = [json.loads(line) for line in lines]
    assert [r["logger"] for r in records] == ["stderr", "stderr", "stderr", "gunicorn.access"]
    assert records[0] == {**records[0], "level": "ERROR", "message": "Traceback (most recent call last):",
                          "triage_id": "tr_guarded", "run_id": 7}
    assert records[2]["message"] == "RuntimeError: *** refused"
