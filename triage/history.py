"""Flaky-node memory: what happened to each dbt node across failed runs and their retries.

Per node (``bt:node:<unique_id>``, a Redis hash, kept 90 days after its last event):

* ``failures`` / ``transient`` / ``deterministic`` / ``unknown`` — failures seen, by verdict;
* ``retries`` — automatic retries of a run in which the node had failed (same code: ``retryBoltRun``);
* ``recoveries`` — those retries in which the node then passed;
* ``last_verdict`` — the verdict of its latest failure, ``last_run`` its run id.

A node whose failures keep recovering on retry is *flaky*, with ``score = recoveries / retries``.
The score counts only retries of the same code: a run triggered again (``triggerBoltRun``) may
have pulled new commits, so its success proves nothing about the node.

A transient failure right after a deterministic one is not flaky evidence: the node was broken
last time, and a "timeout" now may well be the same bug showing differently. ``is_flaky`` says no
for a node whose previous failure was deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from triage import keyspace
from triage.models import Failure

if TYPE_CHECKING:
    from redis import Redis

INDEX = keyspace.NODES  # sorted set: node -> last event time, for listing
INDEX_MAX = 100_000  # the shipped defaults: retention.max_nodes, retention.node_history_days
TTL = 90 * 24 * 3600

#: A node is flaky after this many recoveries, when at least this share of its retries recovered.
MIN_RECOVERIES = 2
MIN_SCORE = 0.5


@dataclass(frozen=True)
class NodeHistory:
    node: str
    failures: int = 0
    transient: int = 0
    deterministic: int = 0
    unknown: int = 0
    retries: int = 0
    recoveries: int = 0
    last_verdict: str | None = None
    last_run: int | None = None

    @property
    def score(self) -> float:
        """Share of same-code retries after which the node passed."""
        return self.recoveries / self.retries if self.retries else 0.0

    @property
    def is_flaky(self) -> bool:
        return (self.recoveries >= MIN_RECOVERIES and self.score >= MIN_SCORE
                and self.last_verdict != "deterministic")

    def describe(self) -> str:
        name = self.node.split(".")[-1]
        return f"{name} recovered on {self.recoveries} of {self.retries} retries"


class History:
    def __init__(self, redis: Redis, ttl: int = TTL, index_max: int = INDEX_MAX):
        self.redis = redis
        self.ttl, self.index_max = ttl, index_max

    def get(self, nodes: Iterable[str]) -> dict[str, NodeHistory]:
        nodes = sorted(set(nodes))
        pipe = self.redis.pipeline()
        for node in nodes:
            pipe.hgetall(keyspace.node(node))
        out = {}
        for node, raw in zip(nodes, pipe.execute(), strict=True):
            fields = {k.decode(): v.decode() for k, v in raw.items()}
            out[node] = NodeHistory(
                node=node,
                **{k: int(fields.get(k, 0)) for k in ("failures", "transient", "deterministic", "unknown",
                                                      "retries", "recoveries")},
                last_verdict=fields.get("last_verdict"),
                last_run=int(fields["last_run"]) if fields.get("last_run") else None,
            )
        return out

    def record_failures(self, run_id: int, failures: Iterable[Failure]) -> None:
        """Count each failed node once per run (a redelivered triage does not count twice)."""
        pipe = self.redis.pipeline()
        for f in failures:
            if not f.node or not self.redis.set(keyspace.node_event("run", f.node, run_id), 1, nx=True, ex=self.ttl):
                continue
            key = keyspace.node(f.node)
            pipe.hincrby(key, "failures", 1)
            pipe.hincrby(key, f.classification.verdict, 1)
            pipe.hset(key, mapping={"last_verdict": f.classification.verdict, "last_run": run_id})
            self._touch(pipe, f.node)
        pipe.execute()

    def record_retry(self, run_id: int, nodes: Iterable[str]) -> None:
        self._count(run_id, nodes, "retries")

    def record_recovery(self, run_id: int, nodes: Iterable[str]) -> None:
        self._count(run_id, nodes, "recoveries")

    def _count(self, run_id: int, nodes: Iterable[str], field: str) -> None:
        pipe = self.redis.pipeline()
        for node in set(nodes):
            if self.redis.set(keyspace.node_event(field, node, run_id), 1, nx=True, ex=self.ttl):
                pipe.hincrby(keyspace.node(node), field, 1)
                self._touch(pipe, node)
        pipe.execute()

    def recent(self, limit: int = 100) -> list[NodeHistory]:
        """Nodes with the most recent events first (for the operations API)."""
        nodes = [n.decode() for n in self.redis.zrevrange(INDEX, 0, limit - 1)]
        histories = self.get(nodes)
        return [histories[n] for n in nodes]

    def _touch(self, pipe, node: str) -> None:
        pipe.expire(keyspace.node(node), self.ttl)
        pipe.zadd(INDEX, {node: time.time()})
        pipe.zremrangebyrank(INDEX, 0, -self.index_max - 1)  # bounded: the oldest fall off
        pipe.expire(INDEX, self.ttl)
