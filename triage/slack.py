"""Posting to Slack: bot token (Web API), incoming webhook, or the log.

With a bot token, the first message of a run's story is a parent message that later
outcomes reply to in its thread and update in place (``chat.update``). An incoming
webhook can only post new messages, so outcomes are follow-ups naming the run.
Without Slack configured, messages go to the log so nothing is lost.

slack-sdk's retry handlers retry connection and server errors a bounded number of times;
a 429 raises ``RateLimited`` with Slack's ``Retry-After`` so the caller can reschedule
instead of sleeping; what still fails becomes an ``UpstreamError`` whose message names
the Slack error code, never the token or webhook URL. ``Pacer`` keeps each channel at
about one message per second across all workers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from triage import instrument, keyspace, ledger
from triage.config import SlackSettings
from triage.errors import UpstreamError
from triage.ledger import Service
from triage.summary import SlackMessage

log = logging.getLogger(__name__)


class RateLimited(UpstreamError):
    """Slack answered 429: try again after ``retry_after`` seconds (the caller reschedules; no sleep)."""

    def __init__(self, method: str, retry_after: float):
        super().__init__(f"Slack {method}: rate limited; retry after {retry_after:g}s")
        self.retry_after = retry_after


def _handlers():
    # No RateLimitErrorRetryHandler: a 429 would make the worker sleep; RateLimited lets the
    # delivery job reschedule itself instead, so other runs' triage goes on.
    return [ConnectionErrorRetryHandler(max_retry_count=2), ServerErrorRetryHandler(max_retry_count=2)]


PACE_SCRIPT = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], slot + interval, 'PX', math.ceil(slot + interval - now + interval * 10))
return slot - now
"""


class Pacer:
    """At most one message per channel per ``interval`` seconds, across every worker (Slack allows
    about one per second per channel and answers 429 beyond).

    Slots are handed out in order: a caller told to wait owns the slot it was given, so messages
    to one channel go out in the order they were queued (a thread reads in order)."""

    def __init__(self, redis, interval: float, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval_ms = max(int(interval * 1000), 1)
        self._redis = redis
        self._script = redis.register_script(PACE_SCRIPT)
        self._clock, self._sleep = clock, sleep  # injectable: unit tests run on a fake clock

    def reserve(self, channel: str) -> float:
        """Reserve the channel's next slot; seconds until it (0: send now)."""
        now_ms = int(self._clock() * 1000)
        return int(self._script(keys=[keyspace.pace(channel)], args=[now_ms, self.interval_ms])) / 1000

    def settle(self, channel: str) -> None:
        """Slots are reserved ahead of time, but a send can take a while: sleep out what is left of
        the interval since the channel's last completed send (at most one interval)."""
        last = self._redis.get(keyspace.last_sent(channel))
        if last is not None:
            rest = self.interval_ms / 1000 - (self._clock() - float(last))
            if rest > 0:
                self._sleep(min(rest, self.interval_ms / 1000))

    def sent(self, channel: str) -> None:
        self._redis.set(keyspace.last_sent(channel), repr(self._clock()), px=self.interval_ms * 10)


#: The metadata event type of every message bolt-triage posts in bot mode (its payload: the message id).
METADATA_EVENT = "bolt_triage_message"


@dataclass(frozen=True)
class Posted:
    channel: str
    ts: str | None  # None in webhook and log modes: nothing to thread under or update


class SlackNotifier:
    def __init__(self, settings: SlackSettings, timeout: float = 15.0):
        self.settings = settings
        self.mode = settings.mode
        self._web: WebClient | None = None
        self._hook: WebhookClient | None = None
        if self.mode == "api":
            kwargs = {"base_url": settings.api_url} if settings.api_url else {}
            if settings.api_url and not settings.api_url.endswith("/"):
                kwargs["base_url"] = settings.api_url + "/"
            self._web = WebClient(token=settings.bot_token, timeout=int(timeout), retry_handlers=_handlers(),
                                  **kwargs)
        elif self.mode == "webhook":
            self._hook = WebhookClient(settings.webhook_url, timeout=int(timeout), retry_handlers=_handlers())

    def check_access(self) -> str:
        """Prove the credentials work without posting anything; return who we post as.

        Bot mode: ``auth.test``. Incoming-webhook mode: an empty payload, which Slack refuses with
        ``400 no_text``/``invalid_payload`` for a live URL and ``403``/``404``/``410`` for a dead one.
        Raises UpstreamError, ``retryable=False`` when the credential itself is refused.
        """
        if self._web is not None:
            resp = self._call("auth.test", self._web.auth_test)
            return f"{resp.get('user') or 'bot'} in {resp.get('team') or 'workspace'}"
        if self._hook is not None:
            try:
                resp = self._hook.send_dict({})
            except (SlackClientError, OSError) as exc:
                raise UpstreamError(f"Slack incoming webhook: {exc.__class__.__name__}") from None
            if resp.status_code in (401, 403, 404, 410):
                raise UpstreamError(f"Slack incoming webhook: HTTP {resp.status_code} {resp.body[:60]!r}: "
                                    "the URL was refused (revoked, or the channel is gone)", retryable=False)
            if resp.status_code >= 500:
                raise UpstreamError(f"Slack incoming webhook: HTTP {resp.status_code}")
            return "incoming webhook"
        return "log (Slack not configured)"

    @property
    def threads(self) -> bool:
        return self.mode == "api"

    @instrument.upstream("slack")
    def post(self, message: SlackMessage, thread_ts: str | None = None, channel: str | None = None,
             message_id: str | None = None) -> Posted:
        """Post once; in bot mode the message carries ``message_id`` in its metadata, so that a later
        delivery can find it (``find``) when the worker that posted it died before recording it."""
        channel = channel or self.settings.channel or "#webhook"
        if self._web is not None:
            metadata = {"event_type": METADATA_EVENT, "event_payload": {"message_id": message_id}} \
                if message_id else None
            resp = self._call("chat.postMessage", lambda: self._web.chat_postMessage(
                channel=channel, text=message.text, blocks=message.blocks, thread_ts=thread_ts,
                unfurl_links=False, unfurl_media=False, metadata=metadata,
            ))
            return Posted(channel=resp.get("channel") or channel, ts=resp.get("ts"))
        if self._hook is not None:
            try:
                with ledger.upstream(Service.SLACK, "incoming-webhook") as call:
                    resp = self._hook.send(text=message.text, blocks=message.blocks)
                    call.status = str(resp.status_code)
                if resp.status_code == 429:
                    raise RateLimited("incoming webhook", _retry_after(resp.headers))
            except SlackClientError as exc:
                raise UpstreamError(f"Slack incoming webhook: {exc.__class__.__name__}") from None
            except OSError as exc:
                raise UpstreamError(f"Slack incoming webhook: {exc.__class__.__name__}") from None
            if resp.status_code != 200:
                raise UpstreamError(f"Slack incoming webhook: HTTP {resp.status_code} {resp.body[:100]!r}",
                                    retryable=resp.status_code >= 500 or resp.status_code == 429)
            return Posted(channel="webhook", ts=None)
        log.info("slack (not configured): %s", message.text)
        return Posted(channel="log", ts=None)

    @instrument.upstream("slack")
    def find(self, channel: str, message_id: str, since: float, thread_ts: str | None = None) -> Posted | None:
        """The message posted with ``message_id`` since ``since`` (epoch seconds), if Slack has it.

        Bot mode only (incoming webhooks cannot read): ``conversations.replies`` of the thread, or
        ``conversations.history`` of the channel, with metadata. Needs the ``channels:history`` scope
        (``groups:history`` for a private channel); an error is raised as ``UpstreamError``.
        """
        if self._web is None:
            return None
        if thread_ts:
            resp = self._call("conversations.replies", lambda: self._web.conversations_replies(
                channel=channel, ts=thread_ts, oldest=f"{since:.6f}", include_all_metadata=True, limit=200))
        else:
            resp = self._call("conversations.history", lambda: self._web.conversations_history(
                channel=channel, oldest=f"{since:.6f}", include_all_metadata=True, limit=200))
        for msg in resp.get("messages") or []:
            meta = msg.get("metadata") or {}
            if meta.get("event_type") == METADATA_EVENT and \
                    (meta.get("event_payload") or {}).get("message_id") == message_id:
                return Posted(channel=channel, ts=msg.get("ts"))
        return None

    @instrument.upstream("slack")
    def update(self, channel: str, ts: str, message: SlackMessage) -> None:
        if self._web is None:
            return
        self._call("chat.update", lambda: self._web.chat_update(
            channel=channel, ts=ts, text=message.text, blocks=message.blocks,
        ))

    @staticmethod
    def _call(method: str, send):
        try:
            with ledger.upstream(Service.SLACK, method):
                return send()
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else "unknown"
            status = exc.response.status_code if exc.response is not None else 0
            if status == 429:
                raise RateLimited(method, _retry_after(exc.response.headers)) from None
            refused = error in _CREDENTIAL_ERRORS
            raise UpstreamError(f"Slack {method}: {error}",
                                retryable=not refused and (status >= 500 or status == 429)) from None
        except (SlackClientError, OSError) as exc:
            raise UpstreamError(f"Slack {method}: {exc.__class__.__name__}") from None


#: Slack Web API errors that mean the token itself is no good (https://api.slack.com/methods/auth.test).
_CREDENTIAL_ERRORS = frozenset({"not_authed", "invalid_auth", "account_inactive", "token_revoked",
                                "token_expired", "no_permission", "missing_scope", "not_allowed_token_type"})


def _retry_after(headers) -> float:
    value = {k.lower(): v for k, v in (headers or {}).items()}.get("retry-after")
    value = value[0] if isinstance(value, list) else value
    try:
        return max(float(value), 1.0)
    except (TypeError, ValueError):
        return 5.0
