"""The Slack simulator, exercised over real HTTP through slack-sdk, the way the product talks to it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from triage.sim.slack import SlackSimulator

TOKEN = "xoxb-test-token"
TS = re.compile(r"^\d{10}\.\d{6}$")


@pytest.fixture(scope="module")
def server() -> Iterator[SlackSimulator]:
    with SlackSimulator(token=TOKEN) as sim:
        yield sim


@pytest.fixture
def sim(server: SlackSimulator) -> SlackSimulator:
    """One server for the module (starting one per test is slower); every test starts clean."""
    server.reset()
    return server


@pytest.fixture
def client(sim: SlackSimulator) -> WebClient:
    return WebClient(token=TOKEN, base_url=sim.api_url, timeout=5)


def api_error(call, *args, **kwargs) -> SlackApiError:
    with pytest.raises(SlackApiError) as excinfo:
        call(*args, **kwargs)
    return excinfo.value


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


# ---------------------------------------------------------------- lifecycle


def test_urls_and_stop() -> None:
    with SlackSimulator() as sim:
        assert sim.api_url == f"{sim.base_url}/api/"
        assert sim.webhook_url == f"{sim.base_url}/services/T000SIM/B000SIM/simsecret"
        assert re.match(r"^http://127\.0\.0\.1:\d+$", sim.base_url)
        url = sim.base_url
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{url}/api/auth.test", timeout=1)


# ---------------------------------------------------------------- Web API


def test_auth_test(client: WebClient) -> None:
    resp = client.auth_test()
    assert resp["ok"] is True
    assert {"url", "team", "user", "team_id", "user_id", "bot_id"} <= set(resp.data)


def test_post_message_returns_slack_shape_and_is_recorded(sim: SlackSimulator, client: WebClient) -> None:
    blocks = [section("*dbt run failed*")]
    resp = client.chat_postMessage(
        channel="#data-alerts", text="run failed", blocks=blocks, unfurl_links=False
    )

    assert resp["ok"] is True and resp["channel"] == "#data-alerts"
    assert TS.match(resp["ts"])
    message = resp["message"]
    assert message["type"] == "message" and message["ts"] == resp["ts"]
    assert message["text"] == "run failed" and message["blocks"] == blocks
    assert message["bot_id"] and message["user"]
    assert "thread_ts" not in message

    [recorded] = sim.messages
    assert (recorded.channel, recorded.ts, recorded.text, recorded.blocks) == (
        "#data-alerts",
        resp["ts"],
        "run failed",
        blocks,
    )
    assert recorded.via == "api" and recorded.thread_ts is None and recorded.history == []
    assert recorded.options == {"unfurl_links": False}


def test_ts_values_are_unique_and_increasing(client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel="#a", text=str(i))["ts"] for i in range(5)]
    as_numbers = [tuple(map(int, ts.split("."))) for ts in stamps]
    assert as_numbers == sorted(set(as_numbers))


def test_concurrent_posts_are_all_recorded_with_distinct_ts(sim: SlackSimulator, client: WebClient) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        stamps = list(pool.map(lambda i: client.chat_postMessage(channel="#a", text=str(i))["ts"], range(24)))
    assert len(set(stamps)) == 24
    assert sorted(m.text for m in sim.messages) == sorted(str(i) for i in range(24))


def test_update_replaces_content_and_keeps_history(sim: SlackSimulator, client: WebClient) -> None:
    ts = client.chat_postMessage(channel="#a", text="v1", blocks=[section("one")])["ts"]
    resp = client.chat_update(channel="#a", ts=ts, text="v2", blocks=[section("two")])
    assert (resp["ok"], resp["channel"], resp["ts"], resp["text"]) == (True, "#a", ts, "v2")
    assert resp["message"]["blocks"] == [section("two")]

    client.chat_update(channel="#a", ts=ts, text="v3")  # no blocks: the previous ones stay
    message = sim.find(ts)
    assert message is not None
    assert (message.text, message.blocks) == ("v3", [section("two")])
    assert message.history == [
        {"text": "v1", "blocks": [section("one")]},
        {"text": "v2", "blocks": [section("two")]},
    ]


def test_update_of_unknown_message(client: WebClient) -> None:
    ts = client.chat_postMessage(channel="#a", text="hi")["ts"]
    assert api_error(client.chat_update, channel="#a", ts="1.000001", text="x").response["error"] == (
        "message_not_found"
    )
    assert api_error(client.chat_update, channel="#other", ts=ts, text="x").response["error"] == (
        "message_not_found"
    )


def test_threaded_replies(sim: SlackSimulator, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="#a", text="summary")["ts"]
    reply = client.chat_postMessage(channel="#a", text="details", thread_ts=parent)
    assert reply["message"]["thread_ts"] == parent
    client.chat_postMessage(channel="#a", text="more", thread_ts=reply["ts"])  # joins the parent's thread
    client.chat_postMessage(channel="#b", text="elsewhere")

    assert [m.text for m in sim.replies(parent)] == ["details", "more"]
    assert [m.text for m in sim.top_level("#a")] == ["summary"]
    assert [m.text for m in sim.top_level()] == ["summary", "elsewhere"]

    err = api_error(client.chat_postMessage, channel="#b", text="x", thread_ts=parent)
    assert err.response["error"] == "thread_not_found"


def test_form_body_with_token_field_and_blocks_as_json_string(sim: SlackSimulator) -> None:
    resp = requests.post(
        f"{sim.api_url}chat.postMessage",
        data={"token": TOKEN, "channel": "#a", "blocks": '[{"type": "divider"}]', "reply_broadcast": "1"},
        timeout=5,
    )
    assert resp.status_code == 200 and resp.json()["ok"] is True
    [message] = sim.messages
    assert message.blocks == [{"type": "divider"}] and message.text == ""


@pytest.mark.parametrize(
    ("token", "error"),
    [(None, "not_authed"), ("xoxb-wrong", "invalid_auth")],
)
def test_auth_errors(sim: SlackSimulator, token: str | None, error: str) -> None:
    err = api_error(WebClient(token=token, base_url=sim.api_url).chat_postMessage, channel="#a", text="x")
    assert err.response.status_code == 200 and err.response["error"] == error
    assert sim.messages == []


def test_form_body_auth_errors(sim: SlackSimulator) -> None:
    url = f"{sim.api_url}auth.test"
    assert requests.post(url, data={}, timeout=5).json() == {"ok": False, "error": "not_authed"}
    assert requests.post(url, data={"token": "nope"}, timeout=5).json()["error"] == "invalid_auth"


def test_unknown_method(client: WebClient) -> None:
    assert api_error(client.api_call, "chat.nope").response["error"] == "unknown_method"


def fields(n: int) -> dict:
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * n}


def header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"channel": "", "text": "x"}, "channel_not_found", id="no-channel"),
        pytest.param({"channel": "#a"}, "no_text", id="no-text"),
        pytest.param({"channel": "#a", "text": "x" * 40_001}, "msg_too_long", id="text-40001"),
        pytest.param(
            {"channel": "#a", "text": "x", "blocks": {"type": "divider"}}, "invalid_blocks", id="not-a-list"
        ),
        pytest.param(
            {"channel": "#a", "text": "x", "blocks": [{"type": "divider"}] * 51},
            "invalid_blocks",
            id="51-blocks",
        ),
        pytest.param(
            {"channel": "#a", "text": "x", "blocks": [{"text": "?"}]}, "invalid_blocks", id="no-type"
        ),
        pytest.param(
            {"channel": "#a", "text": "x", "blocks": [section("x" * 3001)]},
            "invalid_blocks",
            id="section-3001",
        ),
        pytest.param(
            {"channel": "#a", "text": "x", "blocks": [fields(11)]}, "invalid_blocks", id="11-fields"
        ),
        pytest.param(
            {"channel": "#a", "text": "x", "blocks": [header("h" * 151)]}, "invalid_blocks", id="header-151"
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
def test_validation_errors(sim: SlackSimulator, client: WebClient, kwargs: dict, error: str) -> None:
    err = api_error(client.chat_postMessage, **kwargs)
    assert err.response.status_code == 200
    assert err.response.data == {"ok": False, "error": error}
    assert sim.messages == []


def test_limits_are_inclusive(client: WebClient) -> None:
    blocks = [header("h" * 150), section("s" * 3000), fields(10)] + [{"type": "divider"}] * 47
    assert client.chat_postMessage(channel="#a", text="t" * 40_000, blocks=blocks)["ok"] is True


def test_update_is_validated(client: WebClient) -> None:
    ts = client.chat_postMessage(channel="#a", text="ok")["ts"]
    err = api_error(client.chat_update, channel="#a", ts=ts, text="x", blocks=[section("x" * 3001)])
    assert err.response["error"] == "invalid_blocks"


# ---------------------------------------------------------------- incoming webhook


def test_webhook_via_webhook_client(sim: SlackSimulator) -> None:
    resp = WebhookClient(sim.webhook_url).send(text="run failed", blocks=[section("*failed*")])
    assert (resp.status_code, resp.body) == (200, "ok")
    [message] = sim.messages
    assert (message.channel, message.via, message.text) == ("#webhook", "webhook", "run failed")
    assert message.blocks == [section("*failed*")] and TS.match(message.ts)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "invalid_payload"),
        (b"[]", 400, "invalid_payload"),
        (b'{"username": "bot"}', 400, "no_text"),
        (b'{"blocks": [{"text": "no type"}]}', 400, "invalid_blocks"),
    ],
)
def test_webhook_errors(sim: SlackSimulator, body: bytes, status: int, error: str) -> None:
    resp = requests.post(sim.webhook_url, data=body, headers={"Content-Type": "application/json"}, timeout=5)
    assert (resp.status_code, resp.text) == (status, error)
    assert sim.messages == []


def test_webhook_unknown_path(sim: SlackSimulator) -> None:
    resp = WebhookClient(f"{sim.base_url}/services/T000SIM/B000SIM/wrong").send(text="x")
    assert (resp.status_code, resp.body) == (404, "no_service")


# ---------------------------------------------------------------- faults and rate limits


def test_429_carries_retry_after(sim: SlackSimulator, client: WebClient) -> None:
    sim.fail_next(status=429, retry_after=7, method="chat.postMessage")
    err = api_error(client.chat_postMessage, channel="#a", text="x")
    assert err.response.status_code == 429
    assert err.response.headers["Retry-After"] == "7"
    assert err.response.data == {"ok": False, "error": "ratelimited"}
    client.auth_test()  # another method is not affected
    assert client.chat_postMessage(channel="#a", text="x")["ok"] is True  # the fault was used up


def test_rate_limit_retry_handler_retries_then_succeeds(sim: SlackSimulator) -> None:
    # slack-sdk sleeps int(Retry-After) + random() seconds: retry_after=0 keeps this under a second.
    sim.fail_next(times=1, status=429, retry_after=0)
    client = WebClient(
        token=TOKEN, base_url=sim.api_url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)]
    )
    assert client.chat_postMessage(channel="#a", text="x")["ok"] is True
    log = [(r.method, r.status, r.error) for r in sim.requests_log]
    assert log == [("chat.postMessage", 429, "ratelimited"), ("chat.postMessage", 200, None)]
    assert len(sim.messages) == 1


def test_webhook_429_is_retried_by_webhook_client(sim: SlackSimulator) -> None:
    sim.fail_next(status=429, retry_after=0, method="webhook")
    webhook = WebhookClient(sim.webhook_url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    assert webhook.send(text="x").status_code == 200
    assert [r.status for r in sim.requests_log] == [429, 200]


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors(sim: SlackSimulator, client: WebClient, status: int) -> None:
    sim.fail_next(status=status)
    err = api_error(client.chat_postMessage, channel="#a", text="x")
    assert err.response.status_code == status
    assert err.response["error"] == "internal_error"
    assert sim.messages == []
    assert client.chat_postMessage(channel="#a", text="x")["ok"] is True


def test_fault_applies_to_requested_times(sim: SlackSimulator, client: WebClient) -> None:
    sim.fail_next(times=2, status=500, method="chat.update")
    ts = client.chat_postMessage(channel="#a", text="x")["ts"]
    for _ in range(2):
        assert api_error(client.chat_update, channel="#a", ts=ts, text="y").response.status_code == 500
    assert client.chat_update(channel="#a", ts=ts, text="y")["ok"] is True


def test_per_channel_rate_limit(sim: SlackSimulator, client: WebClient) -> None:
    sim.rate_limit(4)  # one post per 0.25 s per channel
    assert client.chat_postMessage(channel="#a", text="1")["ok"] is True
    err = api_error(client.chat_postMessage, channel="#a", text="2")
    assert err.response.status_code == 429 and err.response.headers["Retry-After"] == "1"
    assert client.chat_postMessage(channel="#b", text="other channel")["ok"] is True
    time.sleep(0.3)
    assert client.chat_postMessage(channel="#a", text="3")["ok"] is True
    assert [m.text for m in sim.top_level("#a")] == ["1", "3"]
    sim.rate_limit(None)
    assert client.chat_postMessage(channel="#a", text="4")["ok"] is True


def test_requests_log_never_holds_the_token(sim: SlackSimulator, client: WebClient) -> None:
    client.chat_postMessage(channel="#a", text="x")
    requests.post(f"{sim.api_url}auth.test", data={"token": TOKEN}, timeout=5)
    assert [(r.method, r.status, r.channel) for r in sim.requests_log] == [
        ("chat.postMessage", 200, "#a"),
        ("auth.test", 200, None),
    ]
    assert TOKEN not in repr(sim.requests_log) and TOKEN not in repr(sim.messages)


# ---------------------------------------------------------------- control endpoints


def test_control_endpoints(sim: SlackSimulator, client: WebClient) -> None:
    ts = client.chat_postMessage(channel="#a", text="v1")["ts"]
    client.chat_update(channel="#a", ts=ts, text="v2")

    [message] = requests.get(f"{sim.base_url}/_sim/messages", timeout=5).json()
    assert (message["channel"], message["ts"], message["text"], message["via"]) == ("#a", ts, "v2", "api")
    assert message["history"] == [{"text": "v1", "blocks": None}]
    assert [r["method"] for r in requests.get(f"{sim.base_url}/_sim/requests", timeout=5).json()] == [
        "chat.postMessage",
        "chat.update",
    ]

    fail = {"times": 1, "status": 429, "retry_after": 3, "method": "chat.postMessage"}
    assert requests.post(f"{sim.base_url}/_sim/fail", json=fail, timeout=5).json() == {"ok": True}
    err = api_error(client.chat_postMessage, channel="#a", text="x")
    assert (err.response.status_code, err.response.headers["Retry-After"]) == (429, "3")

    assert requests.post(f"{sim.base_url}/_sim/reset", timeout=5).json() == {"ok": True}
    assert sim.messages == [] and sim.requests_log == []
    assert requests.get(f"{sim.base_url}/_sim/messages", timeout=5).json() == []

    assert requests.post(f"{sim.base_url}/_sim/rate_limit", json={"per_second": 1}, timeout=5).ok
    client.chat_postMessage(channel="#a", text="1")
    assert api_error(client.chat_postMessage, channel="#a", text="2").response.status_code == 429


def test_fail_endpoint_rejects_bad_input(sim: SlackSimulator) -> None:
    resp = requests.post(f"{sim.base_url}/_sim/fail", json={"status": 200}, timeout=5)
    assert resp.status_code == 400 and resp.json()["ok"] is False


# ---------------------------------------------------------------- standalone


def test_runs_standalone() -> None:
    command = [sys.executable, "-m", "triage.sim.slack", "--port", "0", "--token", TOKEN]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            first_line = proc.stdout.readline()
            match = re.search(r"http://[\d.]+:\d+", first_line)
            assert match, first_line
            assert WebClient(token=TOKEN, base_url=f"{match.group(0)}/api/").auth_test()["ok"] is True
        finally:
            proc.terminate()
