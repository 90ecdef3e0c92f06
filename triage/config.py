"""Settings: secrets and endpoints from the environment, policy from a YAML file.

Everything is read and checked once, at start, so that a typo stops the service
with a message naming the key instead of surfacing at 3 a.m. inside a job.
"""

from __future__ import annotations

import logging
import os
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
class SlackSettings:
    webhook_url: str | None = None
    bot_token: str | None = None
    channel: str | None = None
    api_url: str | None = None

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
    "slack": {"channel"},
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
    slack = SlackSettings(
        webhook_url=_env(environ, "SLACK_WEBHOOK_URL"),
        bot_token=_env(environ, "SLACK_BOT_TOKEN"),
        channel=_env(environ, "SLACK_CHANNEL") or channel,
        api_url=_env(environ, "SLACK_API_URL"),
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
