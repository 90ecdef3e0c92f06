"""Read endpoints: triages (list, one, events, lineage, children, debug bundle, dead letter), a run's
chain, flaky nodes, stats. All GET: the read token may call them."""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from typing import Any

from flask import current_app, jsonify, request

from triage.api.auth import bad_request, bp, not_found
from triage.api.present import Presenter, iso, slack_permalink
from triage.api.query import (
    TriageFilter,
    Verdict,
    categories_of,
    decode_cursor,
    parse_limit,
    parse_time,
    verdict_of,
    walk,
)
from triage.history import History
from triage.ledger import EventType, Ledger, Level
from triage.store import Store

_TRIAGE_ID = re.compile(r"^tr_[0-9a-f]{16}$")
STATS_DEFAULT_SECONDS = 7 * 86_400
STATS_MAX_SCAN = 20_000


def store() -> Store:
    return current_app.extensions["triage"]["store"]


def ledger() -> Ledger:
    return current_app.extensions["triage"]["ledger"]


def presenter() -> Presenter:
    return Presenter(store(), ledger())


def record_of(triage_id: str) -> dict[str, Any]:
    """The record of an existing triage, else 404 (also for ids that cannot be one)."""
    record = store().get_triage(triage_id) if _TRIAGE_ID.match(triage_id) else None
    if record is None:
        raise not_found(f"triage {triage_id[:40]!r}")
    return record


def _list(flt: TriageFilter):
    limit = parse_limit(request.args.get("limit"))
    found, cursor = walk(store(), flt, limit, decode_cursor(request.args.get("cursor")))
    p = presenter()
    return jsonify(triages=[p.view(f.triage_id, f.record, f.story_status) for f in found], next_cursor=cursor)


@bp.get("/triages")
def list_triages():
    unknown = set(request.args) - {*TriageFilter.FIELDS, "limit", "cursor"}
    if unknown:
        raise bad_request(sorted(unknown)[0], "unknown parameter")
    return _list(TriageFilter.parse(request.args))


@bp.get("/triages/dead-letter")
def dead_letter():
    return _list(TriageFilter(verdict=Verdict.COULD_NOT_TRIAGE))


@bp.get("/triages/<triage_id>")
def get_triage(triage_id: str):
    return jsonify(presenter().view(triage_id, record_of(triage_id)))


@bp.get("/triages/<triage_id>/events")
def events(triage_id: str):
    record_of(triage_id)
    level, kind = request.args.get("level"), request.args.get("type")
    if level is not None and level not in {v.value for v in Level}:
        raise bad_request("level", f"expected one of {', '.join(v.value for v in Level)}")
    if kind is not None and kind not in {v.value for v in EventType}:
        raise bad_request("type", f"expected one of {', '.join(v.value for v in EventType)}")
    found = [e.to_dict() for e in ledger().events(triage_id)
             if (level is None or e.level == level) and (kind is None or e.type == kind)]
    return jsonify(events=found)


def _chain_runs(run_id: int | None) -> tuple[int | None, list[int]]:
    if run_id is None:
        return None, []
    link = store().link(run_id)
    origin = link.origin if link else run_id
    story = store().story(origin)
    return origin, story.runs or [origin]


@bp.get("/triages/<triage_id>/lineage")
def lineage(triage_id: str):
    """The triages of the same chain: the original run's, then each retry run's, oldest first."""
    record = record_of(triage_id)
    origin, runs = _chain_runs(record.get("run_id"))
    ids = [t for run in runs for t in ledger().triages_of_run(run)] or [triage_id]
    return jsonify(original_run_id=origin, runs=runs, triages=presenter().views(ids))


@bp.get("/triages/<triage_id>/children")
def children(triage_id: str):
    record_of(triage_id)
    return jsonify(triages=presenter().views(ledger().children(triage_id)))


@bp.get("/triages/<triage_id>/debug-bundle")
def debug_bundle(triage_id: str):
    return jsonify(presenter().bundle(triage_id, record_of(triage_id)))


@bp.get("/runs/<run_id>")
def run(run_id: str):
    """The chain a Paradime run belongs to: original run, attempts, run ids, story, triages."""
    if not run_id.isascii() or not run_id.isdigit() or len(run_id) > 18:
        raise not_found(f"run {run_id[:40]!r}")
    rid = int(run_id)
    link = store().link(rid)
    if link is None and not ledger().triages_of_run(rid):
        raise not_found(f"run {rid}")
    origin = link.origin if link else rid
    story = store().story(origin)
    attempts = []
    for r in story.runs or [origin]:
        r_link = store().link(r)
        attempts.append({"run_id": r, "attempt": r_link.attempt if r_link else 0,
                         "parent_run_id": r_link.parent if r_link else None, "via": r_link.via if r_link else None,
                         "triaged_by": store().run_owner(r), "triage_ids": ledger().triages_of_run(r)})
    return jsonify(run_id=rid, original_run_id=origin, attempt=link.attempt if link else 0,
                   schedule_name=story.schedule_name, story_status=story.status, retries=story.attempts,
                   runs=attempts, slack={"channel": story.slack_channel, "ts": story.slack_ts,
                                         "permalink": slack_permalink(story.slack_channel, story.slack_ts)},
                   flaky_nodes=story.flaky_nodes)


@bp.get("/flaky")
def flaky():
    """Nodes by flaky score (share of same-code retries after which they passed)."""
    limit = parse_limit(request.args.get("limit"))
    nodes = sorted(History(store().redis).recent(2000), key=lambda h: (h.score, h.recoveries), reverse=True)
    return jsonify(nodes=[{"unique_id": h.node, "score": round(h.score, 3), "flaky": h.is_flaky,
                           "recoveries": h.recoveries, "retries": h.retries, "failures": h.failures,
                           "last_verdict": h.last_verdict, "last_failed_run_id": h.last_run}
                          for h in nodes[:limit]])


@bp.get("/stats")
def stats():
    """Counts by verdict and category, retries issued, recovered share, median webhook → Slack."""
    raw = request.args.get("since")
    since = parse_time("since", raw) if raw else time.time() - STATS_DEFAULT_SECONDS
    found, more = walk(store(), TriageFilter(since=since), STATS_MAX_SCAN, None, max_scan=STATS_MAX_SCAN)
    verdicts: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    to_slack: list[float] = []
    issued = 0
    for f in found:
        verdict = verdict_of(f.record, f.story_status)
        if verdict:
            verdicts[str(verdict)] += 1
        categories.update(categories_of(f.record))
        issued += (f.record.get("retry") or {}).get("status") == "issued"
        first_slack = ledger().trace(f.triage_id).get("first_slack_at")
        if first_slack and f.record.get("received_at"):
            to_slack.append(first_slack - f.record["received_at"])
    decided = sum(verdicts[v] for v in ("recovered", "gave_up", "needs_human", "retrying"))
    return jsonify(since=iso(since), triages=len(found), complete=more is None,
                   by_verdict=dict(verdicts), by_category=dict(categories), retries_issued=issued,
                   recovered_share=round(verdicts["recovered"] / decided, 3) if decided else None,
                   median_seconds_webhook_to_slack=round(statistics.median(to_slack), 3) if to_slack else None)
