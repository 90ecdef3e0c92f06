"""``triage check-config``: what the environment and policy resolve to, and whether each process
would start with them. Secrets are never printed: the Redis password is masked, the Paradime
endpoint is shown by host only (its path holds the workspace token), Slack by mode and channel.

Exit status: 2 when the configuration is invalid or a process would refuse to start, 1 when a
``--probe`` connection fails, else 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from triage.config import Settings, load_settings, redact_url, require_web, require_worker
from triage.errors import ConfigError
from triage.probes import Probe, probe_paradime, probe_redis, probe_slack

PROCESSES = ("web", "worker")


def check(environ: Mapping[str, str] | None = None, *, only: str | None = None, probe: bool = False,
          say: Callable[[str], None] = print) -> int:
    from triage.classify import RuleSet

    try:
        settings = load_settings(environ)
        rules = RuleSet.load(*settings.rules_files)
    except ConfigError as exc:
        say(f"configuration error: {exc}")
        return 2
    for line in describe(settings, len(rules.rules)):
        say(line)
    status = 0
    warnings: list[str] = []
    for process in PROCESSES if only is None else (only,):
        try:
            if process == "web":
                require_web(settings)
            else:
                warnings += require_worker(settings)
        except ConfigError as exc:
            say(f"{process}: would refuse to start: {exc}")
            status = 2
        else:
            say(f"{process}: ok")
    for warning in warnings:
        say(f"warning: {warning}")
    if probe and status == 0:
        probes: list[Probe] = [probe_redis(settings)]
        if only in (None, "worker"):
            probes += [probe_paradime(settings), probe_slack(settings)]
        for result in probes:
            say(f"probe {result.line()}")
        if not all(p.ok for p in probes):
            status = 1
    return status


def describe(settings: Settings, rule_count: int) -> list[str]:
    """The resolved setup, one line a topic, secrets left out."""
    from triage.paradime import redact_url as host_only

    slack = settings.slack
    if slack.mode == "api":
        where = f"channel {slack.channel or '(none)'}, {len(slack.routes)} route(s)"
    elif slack.mode == "webhook":
        where = "incoming webhook (channel chosen by the webhook)"
    else:
        where = "not configured: messages go to the worker log"
    policy = f"{settings.config_path} over the shipped defaults" if settings.config_path else \
        "shipped defaults (TRIAGE_CONFIG not set)"
    return [
        f"policy: {policy}",
        f"redis: {redact_url(settings.redis_url)}",
        f"webhook verification: {settings.webhook.verification or 'not set'}",
        f"paradime endpoint: {host_only(settings.paradime.endpoint) if settings.paradime.endpoint else 'not set'}",
        f"slack: {slack.mode} mode, {where}",
        f"retry: at most {settings.retry.max_attempts} automatic retries a run, "
        f"backoff {[int(s) if s.is_integer() else s for s in settings.retry.backoff_seconds]} s",
        f"rules: {rule_count} from {', '.join(str(p) for p in settings.rules_files)}",
        f"metrics: GET /metrics {_metrics_access(settings)}; /readyz fails over "
        f"{settings.monitoring.ready_max_queue_depth} queued jobs",
        f"operations API: {_api_state(settings)}; ledger kept {settings.ledger.retention_days} days",
    ]


def _metrics_access(settings: Settings) -> str:
    if settings.monitoring.metrics_auth == "open":
        return "open to anyone who reaches the web port"
    tokens = [name for name, value in (("TRIAGE_READ_TOKEN", settings.read_token),
                                       ("TRIAGE_ADMIN_TOKEN", settings.admin_token)) if value]
    return f"needs a Bearer token ({' or '.join(tokens) or 'none set'})"


def _api_state(settings: Settings) -> str:
    """Which tokens are set (never their values): the API is off without one."""
    tokens = [name for name, value in (("admin", settings.admin_token), ("read", settings.read_token)) if value]
    return f"on ({' and '.join(tokens)} token)" if tokens else "off (no TRIAGE_ADMIN_TOKEN / TRIAGE_READ_TOKEN)"
