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

How it failed, run by run (``bt:node-signatures:<schedule>:<unique_id>``, a list, newest first, at most
``RUNS_KEPT``): the run, the chain it belongs to (its ``origin``, the schedule's original run) and the
*signature* of the error (``triage.codes.normalise``: literals, ids and numbers masked), so that
``triage.decide`` can tell "failed the same way in the previous run of the schedule" and "failed the
same way on its retry". Chains that ended in a recovery are kept in ``bt:node-recovered:<schedule>:<id>``.
Without a schedule name the records are kept under ``-``: the node id alone still tells them apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from triage import keyspace
from triage.codes import normalise
from triage.models import Failure

if TYPE_CHECKING:
    from redis import Redis

INDEX = keyspace.NODES  # sorted set: node -> last event time, for listing
INDEX_MAX = 100_000  # the shipped defaults: retention.max_nodes, retention.node_history_days
TTL = 90 * 24 * 3600

#: A node is flaky after this many recoveries, when at least this share of its retries recovered.
MIN_RECOVERIES = 2
MIN_SCORE = 0.5

RUNS_KEPT = 30  # failures remembered per schedule and node (a few chains of retries)


def signature(failure: Failure) -> str:
    """The failure's error with literals masked: equal for two runs that failed the same way."""
    return normalise(failure.message or failure.classification.excerpt)


@dataclass(frozen=True)
class PastRun:
    """How a node failed in an earlier chain of the same schedule."""

    origin: int
    signature: str
    recovered: bool  # a retry of that chain passed


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
    previous_runs: tuple[PastRun, ...] = ()  # earlier chains of this schedule in which it failed, newest first
    this_chain: tuple[str, ...] = ()  # signatures of its failures in earlier runs of the current chain

    def failed_same_way_before(self, sig: str) -> bool:
        """The previous chain of the schedule failed with this signature and retries did not recover it."""
        return bool(self.previous_runs) and self.previous_runs[0].signature == sig \
            and not self.previous_runs[0].recovered

    def repeats(self, sig: str, runs: int) -> bool:
        """The last ``runs`` chains all failed with this signature and none recovered (0: never)."""
        last = self.previous_runs[:runs]
        return runs > 0 and len(last) == runs and all(r.signature == sig and not r.recovered for r in last)

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

    def get(self, nodes: Iterable[str], *, schedule: str | None = None,
            origin: int | None = None) -> dict[str, NodeHistory]:
        """What is known of these nodes; ``origin`` (the current chain) separates this chain's earlier
        attempts from the schedule's previous runs."""
        nodes = sorted(set(nodes))
        scope = schedule or "-"
        pipe = self.redis.pipeline()
        for node in nodes:
            pipe.hgetall(keyspace.node(node))
            pipe.lrange(keyspace.node_signatures(scope, node), 0, RUNS_KEPT - 1)
            pipe.smembers(keyspace.node_recovered(scope, node))
        replies = pipe.execute()
        out = {}
        for i, node in enumerate(nodes):
            raw, runs, recovered = replies[3 * i: 3 * i + 3]
            fields = {k.decode(): v.decode() for k, v in raw.items()}
            previous, this_chain = _past(runs, {int(r) for r in recovered}, origin)
            out[node] = NodeHistory(
                node=node,
                **{k: int(fields.get(k, 0)) for k in ("failures", "transient", "deterministic", "unknown",
                                                      "retries", "recoveries")},
                last_verdict=fields.get("last_verdict"),
                last_run=int(fields["last_run"]) if fields.get("last_run") else None,
                previous_runs=previous, this_chain=this_chain,
            )
        return out

    def record_failures(self, run_id: int, failures: Iterable[Failure], *, schedule: str | None = None,
                        origin: int | None = None) -> None:
        """Count each failed node once per run (a redelivered triage does not count twice), and note
        how it failed under its schedule (see the module docstring)."""
        pipe = self.redis.pipeline()
        for f in failures:
            if not f.node or not self.redis.set(keyspace.node_event("run", f.node, run_id), 1, nx=True, ex=self.ttl):
                continue
            key = keyspace.node(f.node)
            pipe.hincrby(key, "failures", 1)
            pipe.hincrby(key, f.classification.verdict, 1)
            pipe.hset(key, mapping={"last_verdict": f.classification.verdict, "last_run": run_id})
            runs = keyspace.node_signatures(schedule or "-", f.node)
            mark = {"run": run_id, "origin": origin if origin is not None else run_id, "sig": signature(f)}
            pipe.lpush(runs, json.dumps(mark))
            pipe.ltrim(runs, 0, RUNS_KEPT - 1)
            pipe.expire(runs, self.ttl)
            self._touch(pipe, f.node)
        pipe.execute()

    def record_retry(self, run_id: int, nodes: Iterable[str]) -> None:
        self._count(run_id, nodes, "retries")

    def record_recovery(self, run_id: int, nodes: Iterable[str], *, schedule: str | None = None,
                        origin: int | None = None) -> None:
        """A retry passed: count it per node and mark the chain ``origin`` as recovered for them."""
        self._count(run_id, nodes, "recoveries")
        if origin is None:
            return
        pipe = self.redis.pipeline()
        for node in set(nodes):
            key = keyspace.node_recovered(schedule or "-", node)
            pipe.sadd(key, origin)
            pipe.expire(key, self.ttl)
        pipe.execute()

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


def _past(runs: list[bytes], recovered: set[int], origin: int | None) -> tuple[tuple[PastRun, ...], tuple[str, ...]]:
    """Split the stored marks (newest first) into earlier chains (one per origin) and this chain."""
    previous: dict[int, PastRun] = {}
    this_chain: list[str] = []
    for raw in runs:
        try:
            mark = json.loads(raw)
            run_origin, sig = int(mark["origin"]), str(mark["sig"])
        except (ValueError, KeyError, TypeError):
            continue  # a record from another version: ignore it rather than fail the triage
        if origin is not None and run_origin == origin:
            this_chain.append(sig)
        elif run_origin not in previous:  # the newest mark of a chain: how it failed last
            previous[run_origin] = PastRun(run_origin, sig, run_origin in recovered)
    return tuple(previous.values()), tuple(this_chain)
