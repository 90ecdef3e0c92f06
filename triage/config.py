"""Settings: secrets and endpoints from the environment, policy from a YAML file.

Everything is read and checked once, at start, so that a typo stops the service
with a message naming the key instead of surfacing at 3 a.m. inside a job.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from triage.classify import SafeLoader  # one choice of YAML loader (libyaml's when built) for every file
from triage.enums import TextEnum
from triage.errors import ConfigError

log = logging.getLogger(__name__)

#: What ships inside the package: the policy defaults (and schema) and the base rule set.
DEFAULTS_DIR = Path(__file__).resolve().parent / "defaults"
DEFAULT_POLICY = DEFAULTS_DIR / "triage.yaml"
SHIPPED_RULES = DEFAULTS_DIR / "rules.yaml"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


# --- one schema ------------------------------------------------------------------------------
#
# The shipped ``defaults/triage.yaml`` is the schema: its sections and keys are the only ones a policy
# may hold, and its values are the defaults. A settings field that comes from the policy names its key
# and its check (``policy(...)`` below); its default is read from the shipped file, so a key, its type
# and its default are each written once.

Check = Callable[[Any, str], Any]


def whole(minimum: int = 0) -> Check:
    def check(value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{name}: expected a whole number >= {minimum}, got {value!r}")
        return value
    return check


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    return value


def positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


def seconds(value: Any, name: str) -> tuple[float, ...]:
    """A number or a non-empty list of numbers of seconds (``[60, 300]``: the last one repeats)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"{name}: expected a number or a non-empty list of numbers")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float) or item < 0:
            raise ConfigError(f"{name}: expected seconds >= 0, got {item!r}")
    return tuple(float(i) for i in items)


def choice(*options: str) -> Check:
    def check(value: Any, name: str) -> str:
        if value not in options:
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(options)}")
        return value
    return check


def _lookup(doc: Mapping[str, Any], path: str) -> Any:
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, Mapping) else None
    return doc


def _read_shipped() -> dict[str, Any]:
    return yaml.load(DEFAULT_POLICY.read_text(encoding="utf-8"), Loader=SafeLoader)


_SHIPPED = _read_shipped()


def policy(path: str, check: Check) -> Any:
    """A settings field read from the policy at ``path`` (``section.key``, or deeper) through ``check``,
    defaulting to the shipped file's value (checked too: a bad shipped default fails at import)."""
    default = check(_lookup(_SHIPPED, path), path)
    spec = {"default_factory": lambda: default} if isinstance(default, dict | list) else {"default": default}
    return field(metadata={"policy": path, "check": check}, **spec)


def from_policy(cls: type, doc: Mapping[str, Any], **others: Any) -> Any:
    """``cls`` with every ``policy(...)`` field read and checked from the layered ``doc``."""
    values = {f.name: f.metadata["check"](_lookup(doc, f.metadata["policy"]), f.metadata["policy"])
              for f in fields(cls) if "policy" in f.metadata}
    return cls(**values, **others)


class Verification(TextEnum):
    """How the web process tells a real Paradime delivery from a forged one (``triage.verify``)."""

    SIGNATURE = "signature"
    TOKEN = "token"
    NONE = "none"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = policy("retry.max_attempts", whole())
    backoff_seconds: tuple[float, ...] = policy("retry.backoff_seconds", seconds)
    retry_unknown: bool = policy("retry.retry_unknown", flag)
    #: an unknown failure of a node known to be flaky gets its retry
    retry_unknown_if_flaky: bool = policy("retry.retry_unknown_if_flaky", flag)
    #: a node retried this often without ever recovering: stop (0 = never)
    give_up_after_unrecovered: int = policy("retry.give_up_after_unrecovered", whole())
    #: same node, same error in this many previous runs of its schedule, never recovered: stop (0 = off)
    same_error_runs: int = policy("retry.same_error_runs", whole())

    def backoff_for(self, attempt: int) -> float:
        """Seconds to wait before automatic retry number ``attempt`` (1-based); the last value repeats."""
        if not self.backoff_seconds:
            return 0.0
        return self.backoff_seconds[min(attempt, len(self.backoff_seconds)) - 1]


@dataclass(frozen=True)
class JobPolicy:
    """How often RQ attempts one triage job (a dead worker's job included) before it is dead-lettered."""

    attempts: int = policy("jobs.attempts", whole(1))
    retry_intervals: tuple[float, ...] = policy("jobs.retry_intervals", seconds)


@dataclass(frozen=True)
class Retention:
    """How long what Redis remembers is kept, and how many entries its indexes list (``triage.keyspace``)."""

    record_days: int = policy("retention.record_days", whole(1))
    max_triages: int = policy("retention.max_triages", whole(1))
    node_history_days: int = policy("retention.node_history_days", whole(1))
    max_nodes: int = policy("retention.max_nodes", whole(1))

    @property
    def record_seconds(self) -> int:
        return self.record_days * 86_400

    @property
    def node_history_seconds(self) -> int:
        return self.node_history_days * 86_400


@dataclass(frozen=True)
class WebhookSettings:
    verification: Verification | None = None  # None: neither secret nor token set (the web refuses to start)
    secret: str | None = None
    token: str | None = None
    max_body_bytes: int = policy("webhook.max_body_bytes", whole(1024))
    dedup_ttl_seconds: int = policy("webhook.dedup_ttl_seconds", whole(60))


@dataclass(frozen=True)
class ParadimeSettings:
    endpoint: str | None = None
    api_key: str | None = None
    api_secret: str | None = None
    timeout_seconds: float = policy("paradime.timeout_seconds", positive)
    max_attempts: int = policy("paradime.max_attempts", whole(1))
    artifact_max_bytes: int = policy("paradime.artifact_max_bytes", whole(1024))
    manifest_max_bytes: int = policy("paradime.manifest_max_bytes", whole(1024))  # streamed, never held
    #: one artifact download as a whole (a server that drips bytes never trips timeout_seconds)
    download_seconds: float = policy("paradime.download_seconds", positive)
    recheck_seconds: tuple[float, ...] = policy("paradime.recheck_seconds", seconds)
    retry_base_seconds: float = policy("paradime.retry_base_seconds", positive)  # doubles each time

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


_SLACK_ID = re.compile(r"^[UWS][A-Z0-9]{2,}$")


def slack_mention(value: str, where: str) -> str:
    """``U…``/``W…`` (a user) → ``<@U…>``, ``S…`` (a user group) → ``<!subteam^S…>``; ``<…>`` kept."""
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        return value
    if not _SLACK_ID.match(value):
        raise ConfigError(f"{where}: {value!r} is not a Slack user (U…/W…) or user-group (S…) id")
    return f"<!subteam^{value}>" if value.startswith("S") else f"<@{value}>"


def _routes(value: Any, name: str = "slack.routes") -> tuple[Route, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{name}: expected a list, got {type(value).__name__}")
    routes = []
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
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


def _owners(value: Any, name: str = "slack.owners") -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a mapping of owner -> Slack id, got {type(value).__name__}")
    return {str(k): slack_mention(str(v), f"{name}.{k}") for k, v in value.items()}


def _mentions(value: Any, name: str) -> tuple[str, ...]:
    value = value or []
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise ConfigError(f"{name}: expected a list of Slack ids, got {value!r}")
    return tuple(slack_mention(m, name) for m in value)



@dataclass(frozen=True)
class SlackSettings:
    webhook_url: str | None = None
    bot_token: str | None = None
    channel: str | None = None
    api_url: str | None = None
    routes: tuple[Route, ...] = policy("slack.routes", _routes)
    owners: dict[str, str] = policy("slack.owners", _owners)  # owner (manifest) -> Slack mention
    #: when a human is needed and no owner is known
    fallback_mentions: tuple[str, ...] = policy("slack.fallback_mentions", _mentions)
    mention_when: str = policy("slack.mention_when", choice("needs_human", "always", "never"))
    storm_window_seconds: int = policy("slack.storm.window_seconds", whole(1))
    storm_min_schedules: int = policy("slack.storm.min_schedules", whole())  # 0 disables incident grouping
    #: a "retrying" alert waits this long, in case a storm folds it into an incident
    storm_hold_seconds: int = policy("slack.storm.hold_seconds", whole())
    repeat_interval_seconds: int = policy("slack.repeat_interval_seconds", whole())  # 0 disables
    per_channel_interval_seconds: float = policy("slack.per_channel_interval_seconds", positive)

    @property
    def mode(self) -> str:
        """``api`` (bot token: threads and updates), ``webhook`` (incoming webhook) or ``log``."""
        if self.bot_token:
            return "api"
        if self.webhook_url:
            return "webhook"
        return "log"


class MetricsAuth(TextEnum):
    """Who may read ``GET /metrics``: anyone who reaches the web port, or holders of a token."""

    OPEN = "open"
    TOKEN = "token"  # Authorization: Bearer <TRIAGE_READ_TOKEN or TRIAGE_ADMIN_TOKEN>


def _metrics_auth(value: Any, name: str) -> MetricsAuth:
    return MetricsAuth(choice(*(a.value for a in MetricsAuth))(value, name))


@dataclass(frozen=True)
class MonitoringSettings:
    """``/metrics`` and ``/readyz`` (triage.monitoring)."""

    metrics_auth: MetricsAuth = policy("monitoring.metrics_auth", _metrics_auth)
    #: /readyz is 503 while a queue holds more waiting jobs
    ready_max_queue_depth: int = policy("monitoring.ready_max_queue_depth", whole(1))


@dataclass(frozen=True)
class LedgerSettings:
    """How long the triage timeline (``triage.ledger``) is kept, and how much of it: its keys expire
    and its lists are capped, so the operations API never grows Redis without bound."""

    retention_days: int = policy("retention.ledger_days", whole(1))
    max_events: int = policy("retention.max_events_per_triage", whole(10))  # the oldest fall off
    max_calls: int = policy("retention.max_calls_per_triage", whole(10))  # Paradime/Slack calls

    @property
    def ttl_seconds(self) -> int:
        return self.retention_days * 86_400


@dataclass(frozen=True)
class Settings:
    redis_url: str
    retry: RetryPolicy
    webhook: WebhookSettings
    paradime: ParadimeSettings
    slack: SlackSettings
    rules_files: tuple[Path, ...]
    jobs: JobPolicy = JobPolicy()
    retention: Retention = Retention()
    admin_token: str | None = None
    read_token: str | None = None  # TRIAGE_READ_TOKEN: the API's GETs (and /metrics in token mode)
    session_secret: str | None = None  # signs the status page's session cookie (triage.statuspage)
    monitoring: MonitoringSettings = MonitoringSettings()
    ledger: LedgerSettings = LedgerSettings()
    config_path: Path | None = None  # the user's policy file; None = shipped defaults only
    queue_name: str = "triage"
    extra: dict[str, Any] = field(default_factory=dict)


# --- the policy file ---------------------------------------------------------------------------
#
# The shipped ``defaults/triage.yaml`` is the schema: its sections and keys are the only ones
# allowed, and its values are the defaults. A user's file is layered over it key by key.


def _read_yaml(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what}: file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=SafeLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def _structured(default: Any) -> bool:
    """A non-empty mapping in the defaults has fixed keys (a section, ``slack.storm``); an empty one
    (``slack.owners``) is free-form and replaced whole, like lists and scalars."""
    return isinstance(default, Mapping) and bool(default)


def _layer(defaults: Mapping[str, Any], user: Any, where: str = "") -> dict[str, Any]:
    """``user`` over ``defaults``: structured mappings merge key by key, anything else replaces."""
    if not isinstance(user, Mapping):
        raise ConfigError(f"{where or 'policy file'}: expected a mapping, got {type(user).__name__}")
    merged = dict(defaults)
    for key, value in user.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in defaults:
            kind = "key" if where else "section"
            raise ConfigError(f"{name}: unknown {kind} (allowed: {', '.join(sorted(defaults))})")
        if value is None:  # `key:` with nothing after it: keep the default
            continue
        merged[key] = _layer(defaults[key], value, name) if _structured(defaults[key]) else value
    return merged


def load_policy(path: str | Path | None = None) -> tuple[dict[str, Any], Path | None]:
    """The shipped defaults with the user's policy file (if any) layered over them."""
    doc = copy.deepcopy(_SHIPPED)
    if path is None:
        return doc, None
    user_path = Path(path).expanduser().resolve()
    user = _read_yaml(user_path, "TRIAGE_CONFIG")
    if not isinstance(user, Mapping):
        raise ConfigError(f"{user_path}: top level must be a mapping of sections")
    return _layer(doc, user), user_path


def resolve_rules_files(classification: Mapping[str, Any], base: Path | None) -> tuple[Path, ...]:
    """The rule files to load, in order: the shipped set (unless turned off), then the user's,
    relative paths read from the user's policy folder."""
    shipped = flag(classification.get("shipped_rules"), "classification.shipped_rules")
    files = classification.get("rules_files") or []
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise ConfigError(f"classification.rules_files: expected a list of paths, got {files!r}")
    paths = [SHIPPED_RULES] if shipped else []
    for name in files:
        path = Path(name).expanduser()
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        if not path.is_file() and name == "rules.yaml":
            # Before 0.2 a policy had to list the shipped rules as ``rules.yaml`` next to it.
            log.warning("classification.rules_files: 'rules.yaml' is deprecated: the shipped rules are always "
                        "loaded first (classification.shipped_rules); remove it from your policy")
            continue
        if not path.is_file():
            raise ConfigError(f"classification.rules_files: file not found: {path}")
        if path.resolve() not in paths:
            paths.append(path.resolve())
    if not paths:
        raise ConfigError("classification: shipped_rules is false and rules_files is empty: no rules to classify with")
    return tuple(paths)


def configured_rules_files(environ: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The rule files the worker would load, from ``TRIAGE_CONFIG`` alone (for the offline tools)."""
    environ = os.environ if environ is None else environ
    doc, user_path = load_policy(_env(environ, "TRIAGE_CONFIG"))
    return resolve_rules_files(doc["classification"], user_path.parent if user_path else None)


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def load_settings(environ: Mapping[str, str] | None = None, path: str | Path | None = None) -> Settings:
    """Read the environment and the layered policy; raise ConfigError naming the bad key.

    Only what every process needs is required here (a valid policy, a well-formed ``REDIS_URL``);
    ``require_web`` and ``require_worker`` check what each process needs on top, so that a worker's
    environment need not hold the webhook secret, nor the web's the Paradime key.
    """
    environ = os.environ if environ is None else environ
    doc, user_path = load_policy(path or _env(environ, "TRIAGE_CONFIG"))
    redis_url = _env(environ, "REDIS_URL") or DEFAULT_REDIS_URL
    check_redis_url(redis_url)
    return Settings(
        redis_url=redis_url,
        retry=from_policy(RetryPolicy, doc),
        jobs=from_policy(JobPolicy, doc),
        retention=from_policy(Retention, doc),
        webhook=_webhook_settings(doc, environ),
        paradime=from_policy(ParadimeSettings, doc, endpoint=_env(environ, "PARADIME_API_ENDPOINT"),
                             api_key=_env(environ, "PARADIME_API_KEY"),
                             api_secret=_env(environ, "PARADIME_API_SECRET")),
        slack=_slack_settings(doc, environ),
        rules_files=resolve_rules_files(doc["classification"], user_path.parent if user_path else None),
        admin_token=_env(environ, "TRIAGE_ADMIN_TOKEN"),
        read_token=_env(environ, "TRIAGE_READ_TOKEN"),
        session_secret=_env(environ, "TRIAGE_SESSION_SECRET"),
        monitoring=_monitoring_settings(doc, environ),
        ledger=from_policy(LedgerSettings, doc),
        config_path=user_path,
    )


def _monitoring_settings(doc: Mapping[str, Any], environ: Mapping[str, str]) -> MonitoringSettings:
    monitoring = from_policy(MonitoringSettings, doc)
    auth = _env(environ, "TRIAGE_METRICS_AUTH")
    return replace(monitoring, metrics_auth=_metrics_auth(auth, "TRIAGE_METRICS_AUTH")) if auth else monitoring


def _webhook_settings(doc: Mapping[str, Any], environ: Mapping[str, str]) -> WebhookSettings:
    mode = _env(environ, "TRIAGE_WEBHOOK_VERIFICATION") or doc["webhook"].get("verification")
    if mode != "auto" and mode not in {v.value for v in Verification}:
        raise ConfigError(f"webhook.verification: {mode!r} is not one of auto, {', '.join(v for v in Verification)}")
    secret = _env(environ, "PARADIME_WEBHOOK_SECRET")
    token = _env(environ, "PARADIME_WEBHOOK_TOKEN")
    if mode == "auto":
        resolved = Verification.SIGNATURE if secret else Verification.TOKEN if token else None
    else:
        resolved = Verification(mode)
    return from_policy(WebhookSettings, doc, verification=resolved, secret=secret, token=token)


def _slack_settings(doc: Mapping[str, Any], environ: Mapping[str, str]) -> SlackSettings:
    channel = doc["slack"].get("channel")
    if channel is not None and not isinstance(channel, str):
        raise ConfigError(f"slack.channel: expected a channel name or id, got {channel!r}")
    return from_policy(SlackSettings, doc, webhook_url=_env(environ, "SLACK_WEBHOOK_URL"),
                       bot_token=_env(environ, "SLACK_BOT_TOKEN"),
                       channel=_env(environ, "SLACK_CHANNEL") or channel, api_url=_env(environ, "SLACK_API_URL"))


# --- what each process needs ----------------------------------------------------------------


def check_redis_url(url: str) -> None:
    """``REDIS_URL`` must be a URL redis-py can use; the message never repeats a password."""
    from redis import ConnectionPool  # here, not at the top: the offline tools never load redis

    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"REDIS_URL: expected redis://host:port/db, rediss://… or unix://…, got {redact_url(url)!r}")
    try:
        ConnectionPool.from_url(url)
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("no host")
    except ValueError:
        raise ConfigError(f"REDIS_URL: not a valid Redis URL: {redact_url(url)!r}") from None


def redact_url(url: str) -> str:
    """The URL with any password replaced, for messages and check-config."""
    parts = urlsplit(url)
    if parts.password is None:
        return url if "://" in url else url.split("@")[-1]
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:" if parts.username else ":"
    return urlunsplit(parts._replace(netloc=f"{user}***@{netloc}"))


def require_web(settings: Settings) -> None:
    """The web process verifies webhooks: it needs a verification mode and its secret or token."""
    mode, webhook = settings.webhook.verification, settings.webhook
    if mode is None:
        raise ConfigError(
            "PARADIME_WEBHOOK_SECRET: not set, nor PARADIME_WEBHOOK_TOKEN; set one, or set "
            "webhook.verification: none (or TRIAGE_WEBHOOK_VERIFICATION=none) to accept unverified webhooks"
        )
    if mode is Verification.SIGNATURE:
        if not webhook.secret:
            raise ConfigError("PARADIME_WEBHOOK_SECRET: required by webhook.verification: signature")
        _check_whsec(webhook.secret)
    if mode is Verification.TOKEN and not webhook.token:
        raise ConfigError("PARADIME_WEBHOOK_TOKEN: required by webhook.verification: token")
    if settings.monitoring.metrics_auth is MetricsAuth.TOKEN and not (settings.read_token or settings.admin_token):
        raise ConfigError("TRIAGE_READ_TOKEN: required by monitoring.metrics_auth: token (or TRIAGE_ADMIN_TOKEN)")
    if settings.session_secret is not None and len(settings.session_secret) < 32:
        raise ConfigError("TRIAGE_SESSION_SECRET: at least 32 characters (e.g. `openssl rand -hex 32`)")
    _check_api_tokens(settings)


#: An operations API token is a password for retries and cancels: short ones are guessable.
MIN_API_TOKEN_LENGTH = 16


def _check_api_tokens(settings: Settings) -> None:
    for name, value in (("TRIAGE_ADMIN_TOKEN", settings.admin_token), ("TRIAGE_READ_TOKEN", settings.read_token)):
        if value is not None and len(value) < MIN_API_TOKEN_LENGTH:
            raise ConfigError(f"{name}: at least {MIN_API_TOKEN_LENGTH} characters, e.g. "
                              "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
    if settings.admin_token and settings.admin_token == settings.read_token:
        raise ConfigError("TRIAGE_READ_TOKEN: must differ from TRIAGE_ADMIN_TOKEN (else it could mutate)")


def require_worker(settings: Settings) -> list[str]:
    """The worker reads runs, retries them and posts to Slack; return warnings worth a log line."""
    require_paradime(settings)
    endpoint = urlsplit(settings.paradime.endpoint or "")
    if endpoint.scheme not in ("https", "http") or not endpoint.hostname:
        raise ConfigError("PARADIME_API_ENDPOINT: expected https://api…paradime.io/api/v1/<token>/graphql")
    return _check_slack(settings.slack)


_WEBHOOK_PATH = re.compile(r"^/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+/?$")
_BOT_TOKEN = re.compile(r"^xox[bpea]-[A-Za-z0-9-]+$")


def _check_slack(slack: SlackSettings) -> list[str]:
    warnings = []
    if slack.webhook_url:
        url = urlsplit(slack.webhook_url)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ConfigError("SLACK_WEBHOOK_URL: expected https://hooks.slack.com/services/T…/B…/…")
        if not _WEBHOOK_PATH.match(url.path):
            raise ConfigError(f"SLACK_WEBHOOK_URL: the path on {url.hostname} is not an incoming-webhook path "
                              "(/services/T…/B…/…); copy the URL from the Slack app's Incoming Webhooks page")
    if slack.bot_token:
        if not _BOT_TOKEN.match(slack.bot_token):
            raise ConfigError("SLACK_BOT_TOKEN: expected a Slack token (xoxb-…)")
        if not slack.channel:
            raise ConfigError("SLACK_CHANNEL: required with SLACK_BOT_TOKEN (or set slack.channel)")
        if slack.webhook_url:
            warnings.append("SLACK_WEBHOOK_URL: ignored, SLACK_BOT_TOKEN is set too (bot-token mode wins)")
    if slack.api_url:
        url = urlsplit(slack.api_url)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ConfigError(f"SLACK_API_URL: expected an http(s) URL, got {slack.api_url!r}")
    return warnings


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
