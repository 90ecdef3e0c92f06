"""Posting to Slack: bot token (Web API), incoming webhook, or the log.

With a bot token, the first message of a run's story is a parent message that later
outcomes reply to in its thread and update in place (``chat.update``). An incoming
webhook can only post new messages, so outcomes are follow-ups naming the run.
Without Slack configured, messages go to the log so nothing is lost.

slack-sdk's retry handlers honour 429 ``Retry-After`` and retry connection and server
errors a bounded number of times; what still fails becomes an ``UpstreamError``
whose message names the Slack error code, never the token or webhook URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.webhook import WebhookClient

from triage.config import SlackSettings
from triage.errors import UpstreamError
from triage.summary import SlackMessage

log = logging.getLogger(__name__)


def _handlers():
    return [
        RateLimitErrorRetryHandler(max_retry_count=3),
        ConnectionErrorRetryHandler(max_retry_count=2),
        ServerErrorRetryHandler(max_retry_count=2),
    ]


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

    @property
    def threads(self) -> bool:
        return self.mode == "api"

    def post(self, message: SlackMessage, thread_ts: str | None = None, channel: str | None = None) -> Posted:
        channel = channel or self.settings.channel or "#webhook"
        if self._web is not None:
            resp = self._call("chat.postMessage", lambda: self._web.chat_postMessage(
                channel=channel, text=message.text, blocks=message.blocks, thread_ts=thread_ts,
                unfurl_links=False, unfurl_media=False,
            ))
            return Posted(channel=resp.get("channel") or channel, ts=resp.get("ts"))
        if self._hook is not None:
            try:
                resp = self._hook.send(text=message.text, blocks=message.blocks)
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

    def update(self, channel: str, ts: str, message: SlackMessage) -> None:
        if self._web is None:
            return
        self._call("chat.update", lambda: self._web.chat_update(
            channel=channel, ts=ts, text=message.text, blocks=message.blocks,
        ))

    @staticmethod
    def _call(method: str, send):
        try:
            return send()
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else "unknown"
            status = exc.response.status_code if exc.response is not None else 0
            raise UpstreamError(f"Slack {method}: {error}", retryable=status >= 500 or status == 429) from None
        except (SlackClientError, OSError) as exc:
            raise UpstreamError(f"Slack {method}: {exc.__class__.__name__}") from None
