"""What every job needs, built once per worker process from the settings."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rq import Queue

from triage import broker, ledger, metrics
from triage.classify import RuleSet
from triage.config import Settings, load_settings, require_worker
from triage.history import History
from triage.ledger import Ledger
from triage.paradime import ParadimeClient
from triage.slack import SlackNotifier
from triage.store import Store


@dataclass
class Context:
    settings: Settings
    store: Store
    queue: Queue
    paradime: ParadimeClient
    slack: SlackNotifier
    rules: RuleSet
    history: History
    ledger: Ledger


def build(settings: Settings) -> Context:
    """The context of a worker whose settings ``require_worker`` accepted."""
    redis = broker.connect(settings.redis_url)
    ledger.install(book := Ledger(redis, settings.ledger))  # the clients record their calls in it
    metrics.install(redis)  # counted in Redis, shared by every worker (triage.metrics)
    return Context(
        ledger=book,
        history=History(redis, settings.retention.node_history_seconds, settings.retention.max_nodes),
        settings=settings,
        store=Store(redis, settings.webhook.dedup_ttl_seconds, settings.retention),
        queue=broker.queue(redis, settings.queue_name),
        paradime=ParadimeClient(settings.paradime, backoff_base=settings.paradime.retry_base_seconds),
        slack=SlackNotifier(settings.slack),
        rules=RuleSet.load(*settings.rules_files),
    )


_installed: Context | None = None


def install(ctx: Context) -> None:
    """Make ``ctx`` the process's context. The worker does this once, before forking work horses: each
    horse inherits it (compiled rules, clients), so a job builds nothing; a config edit needs a restart."""
    global _installed
    _installed = ctx


@functools.lru_cache(maxsize=1)
def _built() -> Context:
    settings = load_settings()
    require_worker(settings)
    return build(settings)


def current() -> Context:
    """The installed context, else one built from the environment (tests, ``SimpleWorker``) and kept."""
    return _installed if _installed is not None else _built()


current.cache_clear = _built.cache_clear  # type: ignore[attr-defined]  # tests: re-read the settings
