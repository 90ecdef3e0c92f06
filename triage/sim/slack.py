"""A Slack simulator: a real HTTP server that answers like Slack's Web API and an incoming webhook.

The product talks to Slack through slack-sdk over HTTP. Pointing that same client at a real
local server (instead of mocking it) exercises the code path production uses: the JSON and
form encodings, the ``Authorization`` header, HTTP statuses and slack-sdk's retry handlers.
Every accepted message is recorded so tests and the demo can check what a channel would show.

Only what the product uses is simulated: ``auth.test``, ``chat.postMessage``, ``chat.update``,
``conversations.history`` and ``conversations.replies`` (to find a post whose answer was lost)
and one incoming webhook. On top of that, faults (429 with ``Retry-After``, 5xx) can be
injected and a per-channel rate limit switched on, so that retries and pacing can be tested.

Differences from the real Slack worth knowing: channels are whatever string is sent (no
name -> ID resolution, every channel exists); ``ts`` values are unique across all channels;
a message sent with only blocks keeps ``text`` empty instead of a generated fallback.

Run standalone for the demo or another process: ``python -m triage.sim.slack --port 8090``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from triage.sim import serve_until_interrupted

TEAM_ID = "T000SIM"
BOT_USER_ID = "U000SIM"
BOT_ID = "B000SIM"
WEBHOOK_CHANNEL = "#webhook"

#: A post arriving this much earlier than the rate limit allows is still accepted, so that
#: jitter in local HTTP timing is not mistaken for a burst.
RATE_LIMIT_GRACE_SECONDS = 0.05


@dataclass
class SlackMessage:
    """One message as a channel would show it; ``history`` holds earlier {text, blocks} versions."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None = None
    thread_ts: str | None = None
    via: str = "api"  # "api" | "webhook"
    history: list[dict[str, Any]] = field(default_factory=list)
    at: float = field(default_factory=time.time)
    reply_broadcast: bool = False
    #: Other arguments sent with chat.postMessage (unfurl_links, username, …), as received.
    options: dict[str, Any] = field(default_factory=dict)
    #: Message metadata (``{"event_type", "event_payload"}``), returned by conversations.* when asked.
    metadata: dict[str, Any] | None = None

    def to_api(self) -> dict[str, Any]:
        """The ``message`` object Slack returns from chat.postMessage / chat.update."""
        out: dict[str, Any] = {
            "type": "message",
            "text": self.text,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "ts": self.ts,
        }
        if self.blocks is not None:
            out["blocks"] = self.blocks
        if self.thread_ts is not None:
            out["thread_ts"] = self.thread_ts
        return out

    def to_history(self, with_metadata: bool) -> dict[str, Any]:
        out = self.to_api()
        if with_metadata and self.metadata is not None:
            out["metadata"] = self.metadata
        return out


@dataclass
class LoggedRequest:
    """One request to the API or webhook: enough to assert on retries and pacing, never the token."""

    method: str  # API method name, or "webhook"
    status: int
    error: str | None
    channel: str | None
    at: float = field(default_factory=time.time)


@dataclass
class Fault:
    """An injected failure, answered to the next ``remaining`` matching requests."""

    status: int
    retry_after: int
    method: str | None  # None matches every request, "webhook" the webhook
    remaining: int
    stall: float = 0.0  # seconds to hang before answering (nothing is posted, unless ``after``)
    after: bool = False  # carry the request out first, then hang: Slack accepted it, the answer is late


class Refused(Exception):
    """A request Slack would refuse: ``error`` is Slack's code; a 429 also carries Retry-After."""

    def __init__(self, error: str, status: int = 200, retry_after: int | None = None):
        super().__init__(error)
        self.error = error
        self.status = status
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


def check_message(text: str, blocks: Any) -> str | None:
    """Return the error code Slack would answer for this message content, or None if it is fine.

    Rules (the part of Slack's limits the product can plausibly hit):

    - ``text`` longer than 40,000 characters -> ``msg_too_long``;
    - ``blocks``, when given, must be a list of at most 50 objects, each with a string ``type``;
    - a ``section`` needs ``text`` or ``fields``; its text is at most 3,000 characters, it has
      at most 10 fields, each at most 2,000 characters;
    - a ``header`` has a ``plain_text`` text of at most 150 characters.

    Breaking any block rule -> ``invalid_blocks``.
    """
    if len(text) > 40_000:
        return "msg_too_long"
    if blocks is None:
        return None
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            return "invalid_blocks"
        text_obj = block.get("text")
        if block["type"] == "section":
            fields = block.get("fields", [])
            if not isinstance(fields, list) or (text_obj is None and not fields):
                return "invalid_blocks"
            if _text_len(text_obj) > 3000 or len(fields) > 10 or any(_text_len(f) > 2000 for f in fields):
                return "invalid_blocks"
        if block["type"] == "header" and (
            not isinstance(text_obj, dict)
            or text_obj.get("type") != "plain_text"
            or _text_len(text_obj) > 150
        ):
            return "invalid_blocks"
    return None


def _text_len(text_obj: Any) -> int:
    """Length of a Block Kit text object's ``text`` (0 when absent or malformed)."""
    if isinstance(text_obj, dict) and isinstance(text_obj.get("text"), str):
        return len(text_obj["text"])
    return 0


def _truthy(value: Any) -> bool:
    """Slack booleans arrive as true/false in JSON and as "1"/"0"/"true" in form bodies."""
    return value is True or str(value).lower() in ("1", "true")


def _request_params() -> dict[str, Any]:
    """Read arguments the way Slack does: query string plus a JSON object or form fields.

    In a form body ``blocks`` is a JSON string, so it is decoded here.
    """
    params: dict[str, Any] = request.args.to_dict()
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise Refused("invalid_json")
        params.update(body)
        return params
    params.update(request.form.to_dict())
    if isinstance(params.get("blocks"), str):
        try:
            params["blocks"] = json.loads(params["blocks"])
        except ValueError:
            raise Refused("invalid_blocks") from None
    return params


class _QuietHandler(WSGIRequestHandler):
    """Request handler that does not log every request to stderr (tests and demo stay readable)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class SlackSimulator:
    """Slack Web API + incoming webhook on a local port, recording what it receives.

    Use ``with SlackSimulator() as sim:`` and give slack-sdk ``base_url=sim.api_url`` or
    ``WebhookClient(sim.webhook_url)``. All recorded state is guarded by one lock, since the
    server answers each request in its own thread.
    """

    def __init__(
        self,
        token: str = "xoxb-sim-token",
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_path: str = "/services/T000SIM/B000SIM/simsecret",
    ):
        self.token = token
        self.host = host
        self.port = port
        self.webhook_path = webhook_path
        self._lock = threading.Lock()
        self._messages: list[SlackMessage] = []
        self._requests: list[LoggedRequest] = []
        self._faults: list[Fault] = []
        self._per_second: float | None = None
        self._last_post: dict[str, float] = {}  # channel -> monotonic time of its last accepted post
        self._last_micros = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._handlers = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
        }
        self.app = self._build_app()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> SlackSimulator:
        """Serve in a daemon thread; with port 0 the OS picks a free port (see ``base_url``)."""
        if self._server is not None:
            raise RuntimeError("SlackSimulator is already running")
        self._server = make_server(
            self.host, self.port, self.app, threaded=True, request_handler=_QuietHandler
        )
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05), name="slack-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join()
        self._server.server_close()
        self._server = None
        self._thread = None

    def __enter__(self) -> SlackSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("SlackSimulator is not running; call start() first")
        return f"http://{self.host}:{self._server.server_port}"

    @property
    def api_url(self) -> str:
        """For ``WebClient(base_url=...)``: slack-sdk joins method names onto it, so it ends with '/'."""
        return f"{self.base_url}/api/"

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}{self.webhook_path}"

    # ----------------------------------------------------------------- recorded state

    @property
    def messages(self) -> list[SlackMessage]:
        """A snapshot (deep copy) of every recorded message, in the order they were posted."""
        with self._lock:
            return copy.deepcopy(self._messages)

    @property
    def requests_log(self) -> list[LoggedRequest]:
        """Every API and webhook request, in arrival order, including refused ones."""
        with self._lock:
            return list(self._requests)

    def top_level(self, channel: str | None = None) -> list[SlackMessage]:
        """Messages that are not thread replies, optionally in one channel."""
        return [m for m in self.messages if m.thread_ts is None and channel in (None, m.channel)]

    def replies(self, parent_ts: str) -> list[SlackMessage]:
        return [m for m in self.messages if m.thread_ts == parent_ts]

    def find(self, ts: str) -> SlackMessage | None:
        return next((m for m in self.messages if m.ts == ts), None)

    def reset(self) -> None:
        """Back to a just-started state: no messages, requests, faults or rate limit."""
        with self._lock:
            self._messages.clear()
            self._requests.clear()
            self._faults.clear()
            self._last_post.clear()
            self._per_second = None

    # ----------------------------------------------------------------- fault injection

    def fail_next(
        self, times: int = 1, status: int = 429, retry_after: int = 1, method: str | None = None
    ) -> None:
        """Answer the next ``times`` requests to ``method`` (None: any request) with ``status``.

        429 carries ``Retry-After: retry_after`` (an integer: slack-sdk parses it with ``int``)
        and ``ratelimited``; other statuses answer ``internal_error``. Use method="webhook"
        for the incoming webhook.
        """
        if times < 1 or status < 400:
            raise ValueError("fail_next needs times >= 1 and an error status (>= 400)")
        with self._lock:
            self._faults.append(Fault(status, int(retry_after), method, times))

    def stall_next(self, seconds: float, method: str | None = None, after: bool = False) -> None:
        """Hang the next request to ``method`` for ``seconds``, then answer 500 without posting:
        a worker killed meanwhile has claimed the message but not posted it. ``after``: post it
        first, then hang before answering: a worker killed meanwhile never learns its ts."""
        with self._lock:
            self._faults.append(Fault(500, 0, method, 1, stall=seconds, after=after))

    def rate_limit(self, per_second: float | None) -> None:
        """Refuse (429) posts to a channel arriving faster than ``per_second``; None switches it off."""
        with self._lock:
            self._per_second = per_second
            self._last_post.clear()

    def _raise_fault(self, method: str) -> Fault | None:
        """Answer with the next matching fault; a fault to apply after the request is returned."""
        with self._lock:
            fault = next((f for f in self._faults if f.method in (None, method)), None)
            if fault is None:
                return None
            fault.remaining -= 1
            if fault.remaining == 0:
                self._faults.remove(fault)
        if fault.after:
            return fault
        if fault.stall:
            time.sleep(fault.stall)
        if fault.status == 429:
            raise Refused("ratelimited", 429, fault.retry_after)
        raise Refused("internal_error", fault.status)

    def _check_pace_locked(self, channel: str) -> None:
        """Refuse a post that comes sooner than the rate limit allows; accepted posts start a new interval."""
        if self._per_second is None:
            return
        now = time.monotonic()
        wait = self._last_post.get(channel, -math.inf) + 1 / self._per_second - now
        if wait > RATE_LIMIT_GRACE_SECONDS:
            raise Refused("ratelimited", 429, max(1, math.ceil(wait)))
        self._last_post[channel] = now

    # ----------------------------------------------------------------- helpers (call with the lock held)

    def _next_ts_locked(self) -> str:
        """Slack-style ``seconds.micros`` from the clock, bumped so it is unique and increasing."""
        self._last_micros = max(int(time.time() * 1_000_000), self._last_micros + 1)
        seconds, micros = divmod(self._last_micros, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def _find_locked(self, ts: str, channel: str) -> SlackMessage | None:
        return next((m for m in self._messages if m.ts == ts and m.channel == channel), None)

    def _log(self, method: str, status: int, error: str | None, channel: Any) -> None:
        with self._lock:
            self._requests.append(
                LoggedRequest(method, status, error, channel if isinstance(channel, str) else None)
            )

    # ----------------------------------------------------------------- HTTP

    def _build_app(self) -> Flask:
        app = Flask(__name__)
        app.add_url_rule("/api/<method>", "api", self._api, methods=["GET", "POST"])
        app.add_url_rule("/services/<path:_rest>", "webhook", self._webhook, methods=["POST"])
        app.add_url_rule("/_sim/messages", "sim_messages", self._sim_messages, methods=["GET"])
        app.add_url_rule("/_sim/requests", "sim_requests", self._sim_requests, methods=["GET"])
        app.add_url_rule("/_sim/reset", "sim_reset", self._sim_reset, methods=["POST"])
        app.add_url_rule("/_sim/fail", "sim_fail", self._sim_fail, methods=["POST"])
        app.add_url_rule("/_sim/rate_limit", "sim_rate_limit", self._sim_rate_limit, methods=["POST"])
        return app

    def _api(self, method: str) -> tuple[Response, int, dict[str, str]]:
        """Web API: logical errors are HTTP 200 with ok=false; only 429/5xx use HTTP statuses."""
        channel: Any = None
        try:
            late = self._raise_fault(method)
            handler = self._handlers.get(method)
            if handler is None:
                raise Refused("unknown_method")
            params = _request_params()
            channel = params.get("channel")
            bearer = request.headers.get("Authorization", "")
            form_token = params.pop("token", None)
            token = bearer.removeprefix("Bearer ").strip() if bearer.startswith("Bearer ") else form_token
            if not token:
                raise Refused("not_authed")
            if token != self.token:
                raise Refused("invalid_auth")
            body, status, headers = handler(params), 200, {}
            if late is not None:
                time.sleep(late.stall)
        except Refused as refused:
            body, status, headers = {"ok": False, "error": refused.error}, refused.status, refused.headers()
        self._log(method, status, body.get("error"), channel)
        return jsonify(body), status, headers

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://bolt-triage-sim.slack.com/",
            "team": "Bolt Triage Sim",
            "user": "bolt-triage",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
        }

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.pop("channel", "") or "")
        text = str(params.pop("text", "") or "")
        blocks = params.pop("blocks", None)
        blocks = None if blocks == [] else blocks
        thread_ts = params.pop("thread_ts", None) or None
        broadcast = _truthy(params.pop("reply_broadcast", False))
        metadata = params.pop("metadata", None)
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except ValueError:
                raise Refused("invalid_metadata_format") from None
        if metadata is not None and not (isinstance(metadata, dict) and isinstance(metadata.get("event_type"), str)
                                         and isinstance(metadata.get("event_payload", {}), dict)):
            raise Refused("invalid_metadata_schema")
        if not channel:
            raise Refused("channel_not_found")
        if not text and not blocks:
            raise Refused("no_text")
        error = check_message(text, blocks)
        if error:
            raise Refused(error)
        with self._lock:
            if thread_ts is not None:
                parent = self._find_locked(str(thread_ts), channel)
                if parent is None:
                    raise Refused("thread_not_found")
                thread_ts = parent.thread_ts or parent.ts  # a reply to a reply joins the parent's thread
            self._check_pace_locked(channel)
            message = SlackMessage(
                channel,
                self._next_ts_locked(),
                text,
                blocks,
                thread_ts,
                reply_broadcast=broadcast,
                options=params,
                metadata=metadata,
            )
            self._messages.append(message)
            return {"ok": True, "channel": channel, "ts": message.ts, "message": message.to_api()}

    def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        """Top-level messages of a channel, newest first, from ``oldest`` on (as Slack's method)."""
        channel = str(params.get("channel") or "")
        oldest = float(params.get("oldest") or 0)
        with_metadata = _truthy(params.get("include_all_metadata", False))
        with self._lock:
            found = [m for m in self._messages if m.channel == channel and m.thread_ts is None
                     and float(m.ts) >= oldest]
        found = sorted(found, key=lambda m: float(m.ts), reverse=True)[: int(params.get("limit") or 100)]
        return {"ok": True, "messages": [m.to_history(with_metadata) for m in found], "has_more": False}

    def _replies(self, params: dict[str, Any]) -> dict[str, Any]:
        """A thread: its parent first, then its replies from ``oldest`` on, oldest first."""
        channel, ts = str(params.get("channel") or ""), str(params.get("ts") or "")
        oldest = float(params.get("oldest") or 0)
        with_metadata = _truthy(params.get("include_all_metadata", False))
        with self._lock:
            parent = self._find_locked(ts, channel)
            if parent is None:
                raise Refused("thread_not_found")
            replies = [m for m in self._messages if m.channel == channel and m.thread_ts == ts
                       and float(m.ts) >= oldest]
        return {"ok": True, "messages": [m.to_history(with_metadata) for m in [parent, *replies]],
                "has_more": False}

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        """Replace text and/or blocks; an argument left out keeps its value, like Slack."""
        channel = str(params.get("channel") or "")
        ts = str(params.get("ts") or "")
        if not channel:
            raise Refused("channel_not_found")
        if "text" not in params and "blocks" not in params:
            raise Refused("no_text")
        with self._lock:
            message = self._find_locked(ts, channel)
            if message is None:
                raise Refused("message_not_found")
            text = str(params.get("text") or "") if "text" in params else message.text
            blocks = (params.get("blocks") or None) if "blocks" in params else message.blocks
            if not text and not blocks:
                raise Refused("no_text")
            error = check_message(text, blocks)
            if error:
                raise Refused(error)
            message.history.append({"text": message.text, "blocks": message.blocks})
            message.text, message.blocks = text, blocks
            return {"ok": True, "channel": channel, "ts": ts, "text": text, "message": message.to_api()}

    def _webhook(self, _rest: str) -> tuple[str, int, dict[str, str]]:
        """Incoming webhook: answers plain text, ``ok`` or an error code with a 4xx/5xx status."""
        if request.path != self.webhook_path:
            self._log("webhook", 404, "no_service", None)
            return "no_service", 404, {"Content-Type": "text/plain"}
        try:
            self._raise_fault("webhook")
            try:
                payload = json.loads(request.get_data(as_text=True))
            except ValueError:
                raise Refused("invalid_payload", 400) from None
            if not isinstance(payload, dict):
                raise Refused("invalid_payload", 400)
            text = str(payload.get("text") or "")
            blocks = payload.get("blocks") or None
            if not text and not blocks:
                raise Refused("no_text", 400)
            error = check_message(text, blocks)
            if error:
                raise Refused(error, 400)
            with self._lock:
                self._check_pace_locked(WEBHOOK_CHANNEL)
                self._messages.append(
                    SlackMessage(WEBHOOK_CHANNEL, self._next_ts_locked(), text, blocks, via="webhook")
                )
            body, status, headers = "ok", 200, {}
        except Refused as refused:
            body, status, headers = refused.error, refused.status, refused.headers()
        self._log("webhook", status, None if status == 200 else body, WEBHOOK_CHANNEL)
        return body, status, {"Content-Type": "text/plain", **headers}

    def _sim_messages(self) -> Response:
        return jsonify([asdict(m) for m in self.messages])

    def _sim_requests(self) -> Response:
        return jsonify([asdict(r) for r in self.requests_log])

    def _sim_reset(self) -> Response:
        self.reset()
        return jsonify({"ok": True})

    def _sim_fail(self) -> tuple[Response, int]:
        body = request.get_json(silent=True) or {}
        try:
            self.fail_next(
                times=int(body.get("times", 1)),
                status=int(body.get("status", 429)),
                retry_after=int(body.get("retry_after", 1)),
                method=body.get("method"),
            )
        except (TypeError, ValueError) as exc:
            return jsonify({"ok": False, "error": str(exc)}), 400
        return jsonify({"ok": True}), 200

    def _sim_rate_limit(self) -> Response:
        per_second = (request.get_json(silent=True) or {}).get("per_second")
        self.rate_limit(None if per_second is None else float(per_second))
        return jsonify({"ok": True})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Slack simulator (Web API + incoming webhook).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default="xoxb-sim-token", help="bot token the API accepts")
    args = parser.parse_args(argv)
    sim = SlackSimulator(token=args.token, host=args.host, port=args.port).start()
    print(f"Slack simulator on {sim.base_url}", flush=True)
    print(f"  api_url:     {sim.api_url}  (token {sim.token})", flush=True)
    print(f"  webhook_url: {sim.webhook_url}", flush=True)
    print(f"  messages:    {sim.base_url}/_sim/messages", flush=True)
    serve_until_interrupted(sim)


if __name__ == "__main__":
    main()
