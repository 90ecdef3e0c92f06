"""Settings: secrets and endpoints from the environment, policy from a YAML file.

Everything is read and checked once, at start, so that a typo stops the service
with a message naming the key instead of surfacing at 3 a.m. inside a job.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from triage.errors import ConfigError

log = logging.getLogger(__name__)

#: The YAML shipped with the project, used when TRIAGE_CONFIG is not set.
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "triage.yaml"

VERIFICATION_MODES = ("auto", "signature", "token", "none")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 2
    backoff_seconds: tuple[float, ...] = (60.0, 300.0)
    retry_unknown: bool = False
    retry_unknown_if_flaky: bool = False  # an unknown failure of a node known to be flaky gets its retry
    give_up_after_unrecovered: int = 3  # a node retried this often without ever recovering: stop (0 = never)

    def backoff_for(self, attempt: int) -> float:
        """Seconds to wait before automatic retry number ``attempt`` (1-based); the last value repeats."""
        if not self.backoff_seconds:
            return 0.0
        return self.backoff_seconds[min(attempt, len(self.backoff_seconds)) - 1]


@dataclass(frozen=True)
class WebhookSettings:
    verification: str = "auto"  # resolved at load to signature | token | none
    secret: str | None = None
    token: str | None = None
    max_body_bytes: int = 1_048_576
    dedup_ttl_seconds: int = 604_800


@dataclass(frozen=True)
class ParadimeSettings:
    endpoint: str | None = None
    api_key: str | None = None
    api_secret: str | None = None
    timeout_seconds: float = 15.0
    max_attempts: int = 4
    artifact_max_bytes: int = 50 * 1024 * 1024
    manifest_max_bytes: int = 1024 * 1024 * 1024  # streamed, never held in memory
    recheck_seconds: tuple[float, ...] = (10.0, 30.0, 60.0, 120.0, 300.0)
    retry_base_seconds: float = 1.0  # first pause between API attempts; doubles each time

    @property
    def configured(self) -> bool:
        return bool(self.endpoint and self.api_key and self.api_secret)


@dataclass(frozen=True)
class Route:
    """Send a run's story to ``channel`` when its schedule matches ``schedule`` (a glob) or a failed
    node carries ``tag``."""

    channel: str
    schedule: str | None = None
    tag: str | None = None


@dataclass(frozen=True)
class SlackSettings:
    webhook_url: str | None = None
    bot_token: str | None = None
    channel: str | None = None
    api_url: str | None = None
    routes: tuple[Route, ...] = ()
    owners: dict[str, str] = field(default_factory=dict)  # owner (manifest) -> Slack mention
    fallback_mentions: tuple[str, ...] = ()  # when a human is needed and no owner is known
    mention_when: str = "needs_human"  # needs_human | always | never
    storm_window_seconds: int = 900
    storm_min_schedules: int = 3  # 0 disables incident grouping
    storm_hold_seconds: int = 60  # a "retrying" alert waits this long, in case a storm folds it into an incident
    repeat_interval_seconds: int = 21_600  # 0 disables repeat suppression
    per_channel_interval_seconds: float = 1.0

    @property
    def mode(self) -> str:
        """``api`` (bot token: threads and updates), ``webhook`` (incoming webhook) or ``log``."""
        if self.bot_token:
            return "api"
        if self.webhook_url:
            return "webhook"
        return "log"


@dataclass(frozen=True)
class Settings:
    redis_url: str
    retry: RetryPolicy
    webhook: WebhookSettings
    paradime: ParadimeSettings
    slack: SlackSettings
    rules_files: tuple[Path, ...]
    admin_token: str | None = None
    config_path: Path = DEFAULT_CONFIG
    queue_name: str = "triage"
    extra: dict[str, Any] = field(default_factory=dict)


# --- YAML schema -----------------------------------------------------------------------------

_SECTIONS: dict[str, set[str]] = {
    "retry": {"max_attempts", "backoff_seconds", "retry_unknown", "retry_unknown_if_flaky",
              "give_up_after_unrecovered"},
    "webhook": {"verification", "max_body_bytes", "dedup_ttl_seconds"},
    "paradime": {"timeout_seconds", "max_attempts", "artifact_max_bytes", "manifest_max_bytes", "recheck_seconds",
                 "retry_base_seconds"},
    "slack": {"channel", "routes", "owners", "fallback_mentions", "mention_when", "storm", "repeat_interval_seconds",
              "per_channel_interval_seconds"},
    "classification": {"rules_files"},
}


def _section(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - _SECTIONS[name])
    if unknown:
        allowed = ", ".join(sorted(_SECTIONS[name]))
        raise ConfigError(f"{name}.{unknown[0]}: unknown key (allowed: {allowed})")
    return value


def _int(section: Mapping[str, Any], key: str, where: str, default: int, minimum: int = 0) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}.{key}: expected a whole number >= {minimum}, got {value!r}")
    return value


def _bool(section: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _number(section: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}.{key}: expected a positive number, got {value!r}")
    return float(value)


def _seconds_list(section: Mapping[str, Any], key: str, where: str, default: tuple[float, ...]):
    value = section.get(key, list(default))
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"{where}.{key}: expected a number or a non-empty list of numbers")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float) or item < 0:
            raise ConfigError(f"{where}.{key}: expected seconds >= 0, got {item!r}")
    return tuple(float(i) for i in items)


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def load_settings(environ: Mapping[str, str] | None = None, path: str | Path | None = None) -> Settings:
    """Read the environment and the YAML policy file; raise ConfigError naming the bad key."""
    environ = os.environ if environ is None else environ
    config_path = Path(path or _env(environ, "TRIAGE_CONFIG") or DEFAULT_CONFIG)
    try:
        doc = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"TRIAGE_CONFIG: file not found: {config_path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: not valid YAML: {exc}") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{config_path}: top level must be a mapping of sections")
    unknown = sorted(set(doc) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section (allowed: {', '.join(sorted(_SECTIONS))})")

    r = _section(doc, "retry")
    retry = RetryPolicy(
        max_attempts=_int(r, "max_attempts", "retry", 2),
        backoff_seconds=_seconds_list(r, "backoff_seconds", "retry", (60.0, 300.0)),
        retry_unknown=_bool(r, "retry_unknown", "retry", False),
        retry_unknown_if_flaky=_bool(r, "retry_unknown_if_flaky", "retry", False),
        give_up_after_unrecovered=_int(r, "give_up_after_unrecovered", "retry", 3),
    )

    w = _section(doc, "webhook")
    mode = _env(environ, "TRIAGE_WEBHOOK_VERIFICATION") or w.get("verification", "auto")
    if mode not in VERIFICATION_MODES:
        raise ConfigError(f"webhook.verification: {mode!r} is not one of {', '.join(VERIFICATION_MODES)}")
    secret = _env(environ, "PARADIME_WEBHOOK_SECRET")
    token = _env(environ, "PARADIME_WEBHOOK_TOKEN")
    if mode == "auto":
        mode = "signature" if secret else "token" if token else ""
        if not mode:
            raise ConfigError(
                "PARADIME_WEBHOOK_SECRET: not set, nor PARADIME_WEBHOOK_TOKEN; set one, or set "
                "webhook.verification: none (or TRIAGE_WEBHOOK_VERIFICATION=none) to accept unverified webhooks"
            )
    if mode == "signature":
        if not secret:
            raise ConfigError("PARADIME_WEBHOOK_SECRET: required by webhook.verification: signature")
        _check_whsec(secret)
    if mode == "token" and not token:
        raise ConfigError("PARADIME_WEBHOOK_TOKEN: required by webhook.verification: token")
    webhook = WebhookSettings(
        verification=mode,
        secret=secret,
        token=token,
        max_body_bytes=_int(w, "max_body_bytes", "webhook", 1_048_576, minimum=1024),
        dedup_ttl_seconds=_int(w, "dedup_ttl_seconds", "webhook", 604_800, minimum=60),
    )

    p = _section(doc, "paradime")
    endpoint = _env(environ, "PARADIME_API_ENDPOINT")
    if endpoint and not endpoint.startswith(("https://", "http://")):
        raise ConfigError(f"PARADIME_API_ENDPOINT: expected an http(s) URL, got {endpoint!r}")
    paradime = ParadimeSettings(
        endpoint=endpoint,
        api_key=_env(environ, "PARADIME_API_KEY"),
        api_secret=_env(environ, "PARADIME_API_SECRET"),
        timeout_seconds=_number(p, "timeout_seconds", "paradime", 15.0),
        max_attempts=_int(p, "max_attempts", "paradime", 4, minimum=1),
        artifact_max_bytes=_int(p, "artifact_max_bytes", "paradime", 50 * 1024 * 1024, minimum=1024),
        manifest_max_bytes=_int(p, "manifest_max_bytes", "paradime", 1024 * 1024 * 1024, minimum=1024),
        recheck_seconds=_seconds_list(p, "recheck_seconds", "paradime", (10.0, 30.0, 60.0, 120.0, 300.0)),
        retry_base_seconds=_number(p, "retry_base_seconds", "paradime", 1.0),
    )

    s = _section(doc, "slack")
    channel = s.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise ConfigError(f"slack.channel: expected a channel name or id, got {channel!r}")
    mention_when = s.get("mention_when", "needs_human")
    if mention_when not in ("needs_human", "always", "never"):
        raise ConfigError(f"slack.mention_when: {mention_when!r} is not one of needs_human, always, never")
    storm = s.get("storm") or {}
    if not isinstance(storm, Mapping) or set(storm) - {"window_seconds", "min_schedules", "hold_seconds"}:
        raise ConfigError("slack.storm: expected a mapping with window_seconds, min_schedules, hold_seconds")
    fallback = s.get("fallback_mentions") or []
    if not isinstance(fallback, list) or not all(isinstance(m, str) for m in fallback):
        raise ConfigError(f"slack.fallback_mentions: expected a list of Slack ids, got {fallback!r}")
    slack = SlackSettings(
        webhook_url=_env(environ, "SLACK_WEBHOOK_URL"),
        bot_token=_env(environ, "SLACK_BOT_TOKEN"),
        channel=_env(environ, "SLACK_CHANNEL") or channel,
        api_url=_env(environ, "SLACK_API_URL"),
        routes=_routes(s.get("routes")),
        owners=_owners(s.get("owners")),
        fallback_mentions=tuple(slack_mention(m, "slack.fallback_mentions") for m in fallback),
        mention_when=mention_when,
        storm_window_seconds=_int(storm, "window_seconds", "slack.storm", 900, minimum=1),
        storm_min_schedules=_int(storm, "min_schedules", "slack.storm", 3),
        storm_hold_seconds=_int(storm, "hold_seconds", "slack.storm", 60),
        repeat_interval_seconds=_int(s, "repeat_interval_seconds", "slack", 21_600),
        per_channel_interval_seconds=_number(s, "per_channel_interval_seconds", "slack", 1.0),
    )
    if slack.mode == "api" and not slack.channel:
        raise ConfigError("SLACK_CHANNEL: required with SLACK_BOT_TOKEN (or set slack.channel)")

    c = _section(doc, "classification")
    files = c.get("rules_files", ["rules.yaml"])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError(f"classification.rules_files: expected a list of paths, got {files!r}")
    rules_files = tuple(config_path.parent / f for f in files)
    for f in rules_files:
        if not f.is_file():
            raise ConfigError(f"classification.rules_files: file not found: {f}")

    return Settings(
        redis_url=_env(environ, "REDIS_URL") or "redis://127.0.0.1:6379/0",
        retry=retry,
        webhook=webhook,
        paradime=paradime,
        slack=slack,
        rules_files=rules_files,
        admin_token=_env(environ, "TRIAGE_ADMIN_TOKEN"),
        config_path=config_path,
    )


_SLACK_ID = re.compile(r"^[UWS][A-Z0-9]{2,}$")


def slack_mention(value: str, where: str) -> str:
    """``U…``/``W…`` (a user) → ``<@U…>``, ``S…`` (a user group) → ``<!subteam^S…>``; ``<…>`` kept."""
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        return value
    if not _SLACK_ID.match(value):
        raise ConfigError(f"{where}: {value!r} is not a Slack user (U…/W…) or user-group (S…) id")
    return f"<!subteam^{value}>" if value.startswith("S") else f"<@{value}>"


def _routes(value: Any) -> tuple[Route, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"slack.routes: expected a list, got {type(value).__name__}")
    routes = []
    for i, item in enumerate(value):
        where = f"slack.routes[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: expected a mapping with channel and schedule or tag")
        unknown = set(item) - {"channel", "schedule", "tag"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown key (allowed: channel, schedule, tag)")
        if not isinstance(item.get("channel"), str) or not item["channel"]:
            raise ConfigError(f"{where}.channel: required (a channel name or id)")
        if not (isinstance(item.get("schedule"), str) or isinstance(item.get("tag"), str)):
            raise ConfigError(f"{where}: needs a schedule (glob) or a tag")
        routes.append(Route(channel=item["channel"], schedule=item.get("schedule"), tag=item.get("tag")))
    return tuple(routes)


def _owners(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"slack.owners: expected a mapping of owner -> Slack id, got {type(value).__name__}")
    return {str(k): slack_mention(str(v), f"slack.owners.{k}") for k, v in value.items()}


def require_paradime(settings: Settings) -> None:
    """The worker cannot triage without the API; say which variable is missing."""
    for name, value in (
        ("PARADIME_API_ENDPOINT", settings.paradime.endpoint),
        ("PARADIME_API_KEY", settings.paradime.api_key),
        ("PARADIME_API_SECRET", settings.paradime.api_secret),
    ):
        if not value:
            raise ConfigError(f"{name}: not set; the worker needs it to read runs and retry them")


def _check_whsec(secret: str) -> None:
    """Fail at start, not on the first delivery, when the signing secret cannot be used."""
    from standardwebhooks.webhooks import Webhook

    try:
        Webhook(secret)
    except Exception:  # the library raises several types for a bad secret
        raise ConfigError("PARADIME_WEBHOOK_SECRET: not a valid whsec_<base64> secret") from None
