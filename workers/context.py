"""What every job needs, built once per worker process from the settings."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rq import Queue

from triage import broker
from triage.classify import RuleSet
from triage.config import Settings, load_settings, require_worker
from triage.history import History
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


def build(settings: Settings) -> Context:
    require_worker(settings)
    redis = broker.connect(settings.redis_url)
    return Context(
        history=History(redis),
        settings=settings,
        store=Store(redis, settings.webhook.dedup_ttl_seconds),
        queue=broker.queue(redis, settings.queue_name),
        paradime=ParadimeClient(settings.paradime, backoff_base=settings.paradime.retry_base_seconds),
        slack=SlackNotifier(settings.slack),
        rules=RuleSet.load(*settings.rules_files),
    )


@functools.lru_cache(maxsize=1)
def current() -> Context:
    """The worker process's context; ``current.cache_clear()`` makes the next job re-read the settings."""
    return build(load_settings())
