"""Start-up probes: does each configured connection actually work?

The worker runs them before taking a job and ``triage check-config --probe`` prints them. A probe
that finds the credential or the address itself refused is *fatal* (the process stops with one
line: retrying cannot help); one that finds a service unreachable is not (the service may be
back before the first job needs it, and jobs retry). No probe posts, retries a run or logs a secret.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

from triage.config import Settings, redact_url
from triage.errors import UpstreamError

TIMEOUT = 10.0  # seconds; a probe is a single attempt


@dataclass(frozen=True)
class Probe:
    name: str  # redis | paradime | slack
    ok: bool
    detail: str  # what was reached, or why not; never a secret
    fatal: bool = False  # the credential or address was refused: stop rather than start broken

    def line(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'FAILED'} ({self.detail})"


def probe_redis(settings: Settings) -> Probe:
    try:
        Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3).ping()
    except RedisError as exc:
        return Probe("redis", False, f"{redact_url(settings.redis_url)}: {one_line(exc)}")
    return Probe("redis", True, redact_url(settings.redis_url))


def probe_paradime(settings: Settings) -> Probe:
    from triage.paradime import ParadimeClient
    from triage.paradime import redact_url as host_only

    if not settings.paradime.configured:
        return Probe("paradime", False, "not configured", fatal=True)
    single = dataclasses.replace(settings.paradime, max_attempts=1, timeout_seconds=TIMEOUT)
    where = host_only(settings.paradime.endpoint or "")
    try:
        count = ParadimeClient(single).schedule_count()
    except UpstreamError as exc:
        return Probe("paradime", False, f"{where}: {exc}", fatal=not exc.retryable)
    return Probe("paradime", True, f"{where}: key accepted, {count} active schedule(s)")


def probe_slack(settings: Settings) -> Probe:
    from triage.slack import SlackNotifier

    notifier = SlackNotifier(settings.slack, timeout=TIMEOUT)
    try:
        who = notifier.check_access()
    except UpstreamError as exc:
        return Probe("slack", False, f"{notifier.mode} mode: {exc}", fatal=not exc.retryable)
    return Probe("slack", True, f"{notifier.mode} mode: {who}")


def one_line(exc: BaseException) -> str:
    """An exception as one short line for a log: its message, else its class name."""
    text = " ".join(str(exc).split())
    return text[:200] or exc.__class__.__name__
