"""Mutations: replay, cancel, reschedule, forget the idempotency claims, pause and resume retries.

None of them can make a run retried twice or a Slack message posted twice, because none of them
bypasses a guard; each works *through* the claims of the state model:

- a replay is a new triage of the same event, handed the run's ``triaged:<run>`` claim in the same
  transaction that records and enqueues it (``Store.admit_replay``), refused while another triage of
  the run is in progress; the run's ``retry:<run>`` guard and the Slack post claims are untouched, so
  a run already retried is not retried again and a posted message is not posted again, and the
  chain's budget (its link's attempt) is counted as for any triage;
- a cancel of a scheduled retry first *claims* ``retry:<run>`` as ``canceled:…`` (``SET NX``, the very
  claim ``perform_retry`` takes before sending), so it either wins — and the retry can never be
  sent — or finds the retry already being sent and answers 409;
- a reschedule moves a job only while it is still in RQ's scheduled registry (``ZADD XX``), never
  re-adding one the scheduler has already enqueued.

Slack is told by a worker (``workers.operator``), through the queue: the web process never calls Slack.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from flask import current_app, jsonify
from rq.exceptions import InvalidJobOperation
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry

from triage import broker
from triage.api.auth import ApiError, bad_request, bp, json_body, reason_of
from triage.api.present import iso
from triage.api.query import MAX_LIMIT, TriageFilter, Verdict, parse_time, walk
from triage.api.triages import ledger, presenter, record_of, store
from triage.ledger import EventType
from triage.lifecycle import IllegalTransition, TriageStatus
from triage.store import new_triage_id
from triage.webhook import WebhookEvent

#: A worker job (by dotted path: the web never imports worker code) that tells Slack of a cancel.
RETRY_CANCELED_JOB = "workers.operator.retry_canceled"
MAX_RESCHEDULE_SECONDS = 30 * 86_400
CANCELABLE = frozenset({TriageStatus.QUEUED, TriageStatus.WAITING, TriageStatus.RETRY_SCHEDULED})


def _settings():
    return current_app.extensions["triage"]["settings"]


def _queue():
    return current_app.extensions["triage"]["queue"]


def _conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


# --- replay ------------------------------------------------------------------------------------


def replay_one(parent_id: str) -> dict[str, Any]:
    """Replay one triage: the new triage's view, or ApiError (404, 409)."""
    parent = record_of(parent_id)
    status = TriageStatus(parent["status"])
    if not status.final:
        raise _conflict(f"triage {parent_id} is {status}: replay it once it has finished (or cancel it)")
    event = parent.get("event")
    if not event:
        raise _conflict(f"triage {parent_id} has no recorded event to replay")
    ev = WebhookEvent.from_dict(event)
    run_id = parent.get("run_id") if parent.get("run_id") is not None else ev.run_id
    triage_id = new_triage_id()
    job_id = f"triage-{triage_id}"
    record = {"status": TriageStatus.QUEUED, "received_at": time.time(), "event": event, "delivery_id": None,
              "run_id": run_id, "schedule_name": parent.get("schedule_name"), "job_id": job_id, "attempts": 1,
              "triggered_by": "replay", "parent_triage_id": parent_id}
    if parent.get("evidence"):  # the run's evidence stays readable (Store.evidence) until the replay has its own
        record["evidence"] = parent["evidence"]
    queue, jobs = _queue(), _settings().jobs

    def enqueue(pipe) -> None:  # the job and the replay's first events, in the one transaction
        broker.enqueue_triage(queue, triage_id, event, jobs, job_id=job_id, pipeline=pipe,
                              description=f"replay of {parent_id}")
        ledger().received(pipe, triage_id, run_id, f"replay of {parent_id}", triggered_by="replay",
                          parent_triage_id=parent_id)

    def busy(owner: str) -> bool:
        state = store().triage_status(owner)
        return state is not None and not state.final

    holder = store().admit_replay(triage_id, record, run_id, enqueue, busy)
    if holder is not None:
        raise _conflict(f"triage {holder} of run {run_id} is still in progress")
    ledger().add_child(parent_id, triage_id)
    ledger().record(parent_id, EventType.REPLAYED, f"replayed as {triage_id}", child=triage_id)
    return presenter().view(triage_id, store().get_triage(triage_id) or record)


@bp.post("/triages/<triage_id>/replay")
def replay(triage_id: str):
    json_body()  # no options today, but a body must still be JSON (and under 64 KB)
    return jsonify(replay_one(triage_id)), 202


def _targets(body: dict[str, Any]) -> list[str]:
    """``{"ids": [...]}`` or ``{"filter": {...}}``, at most MAX_LIMIT triages."""
    if ("ids" in body) == ("filter" in body):
        raise bad_request("body", 'expected exactly one of "ids" or "filter"')
    if "ids" in body:
        ids = body["ids"]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise bad_request("ids", "expected a non-empty list of triage ids")
        if len(ids) > MAX_LIMIT:
            raise bad_request("ids", f"at most {MAX_LIMIT} ids")
        return list(dict.fromkeys(ids))
    if not isinstance(body["filter"], dict):
        raise bad_request("filter", "expected an object of filters")
    flt = TriageFilter.parse(body["filter"], where="filter.")
    found, _ = walk(store(), flt, MAX_LIMIT, None)
    return [f.triage_id for f in found]


def _each(ids: list[str], act: Callable[[str], dict[str, Any]], key: str) -> dict[str, Any]:
    results = []
    for triage_id in ids:
        try:
            results.append({"id": triage_id, "ok": True, key: act(triage_id)})
        except ApiError as exc:
            results.append({"id": triage_id, "ok": False, "error": exc.code, "reason": exc.message})
    done = sum(r["ok"] for r in results)
    return {"results": results, "total": len(results), "succeeded": done, "failed": len(results) - done}


def _replayed_id(triage_id: str) -> str:
    return replay_one(triage_id)["id"]


@bp.post("/triages/bulk-replay")
def bulk_replay():
    return jsonify(_each(_targets(json_body(required=True)), _replayed_id, "new_triage_id")), 202


@bp.post("/triages/dead-letter/replay")
def dead_letter_replay():
    """Replay every dead-lettered triage not replayed yet (a second call does not replay them again)."""
    json_body()
    found, _ = walk(store(), TriageFilter(verdict=Verdict.COULD_NOT_TRIAGE), MAX_LIMIT, None)
    fresh = [f.triage_id for f in found if not ledger().children(f.triage_id)]
    return jsonify(_each(fresh, _replayed_id, "new_triage_id")), 202


# --- cancel ------------------------------------------------------------------------------------


def _unschedule(job_ids: list[str]) -> list[str]:
    """Remove jobs from RQ's scheduled registry and the queue; the ones that were there."""
    queue = _queue()
    registry = ScheduledJobRegistry(queue=queue)
    removed = []
    for job_id in job_ids:
        job = queue.fetch_job(job_id)
        if job is None:
            continue
        if store().redis.zrem(registry.key, job_id):
            removed.append(job_id)
        if job.get_status(refresh=False) in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
            with contextlib.suppress(InvalidJobOperation):  # canceled meanwhile: nothing left to stop
                job.cancel()
    return removed


def cancel_one(triage_id: str, reason: str = "") -> dict[str, Any]:
    record = record_of(triage_id)
    status = TriageStatus(record["status"])
    if status.final:
        raise _conflict(f"triage {triage_id} is already {status}")
    if status not in CANCELABLE:
        raise _conflict(f"triage {triage_id} is {status}: only a queued triage, one waiting for a re-check, or "
                        "a scheduled retry can be canceled")
    run_id = record.get("run_id")
    claim = f"by an operator ({triage_id}, {time.time():.3f})"
    # The claim perform_retry takes before sending: whoever takes it first decides.
    if status is TriageStatus.RETRY_SCHEDULED and not store().retries.cancel(run_id, claim):
        raise _conflict(f"the retry of run {run_id} is already {store().retries.state(run_id) or 'being sent'}")
    try:
        store().set_status(triage_id, TriageStatus.CANCELED, finished_at=time.time(),
                           canceled_reason=reason or None)
    except IllegalTransition as exc:
        if status is TriageStatus.RETRY_SCHEDULED:  # not canceled after all: the retry may go on
            store().retries.uncancel(run_id, claim)
        raise _conflict(f"triage {triage_id} moved on meanwhile: {exc}") from None
    jobs = [j for j in (record.get("job_id"), f"retry-{run_id}" if run_id is not None else None) if j]
    removed = _unschedule(jobs)
    what = "scheduled retry canceled by an operator" if status is TriageStatus.RETRY_SCHEDULED else \
        "triage canceled by an operator"
    ledger().record(triage_id, EventType.CANCELED, what + (f": {reason}" if reason else ""), jobs_removed=removed)
    if status is TriageStatus.RETRY_SCHEDULED:
        origin = record.get("origin") or run_id
        _queue().enqueue(RETRY_CANCELED_JOB, triage_id, run_id, origin, reason, failure_ttl=broker.FAILURE_TTL,
                         description=f"tell Slack: retry of run {run_id} canceled")
    return presenter().view(triage_id, store().get_triage(triage_id) or record)


@bp.delete("/triages/<triage_id>")
def cancel(triage_id: str):
    return jsonify(cancel_one(triage_id, reason_of(json_body())))


@bp.post("/triages/bulk-cancel")
def bulk_cancel():
    body = json_body(required=True)
    reason = reason_of(body)
    targets = _targets({k: v for k, v in body.items() if k != "reason"})
    return jsonify(_each(targets, lambda t: cancel_one(t, reason)["status"], "status"))


# --- reschedule ----------------------------------------------------------------------------------


@bp.post("/triages/<triage_id>/reschedule")
def reschedule(triage_id: str):
    body = json_body(required=True)
    record = record_of(triage_id)
    if ("in_seconds" in body) == ("at" in body):
        raise bad_request("body", 'expected exactly one of "in_seconds" or "at"')
    if "in_seconds" in body:
        n = body["in_seconds"]
        if isinstance(n, bool) or not isinstance(n, int | float) or not 0 <= n <= MAX_RESCHEDULE_SECONDS:
            raise bad_request("in_seconds", f"expected seconds from 0 to {MAX_RESCHEDULE_SECONDS}")
        when = time.time() + n
    else:
        if not isinstance(body["at"], str):
            raise bad_request("at", "expected an ISO 8601 time")
        when = parse_time("at", body["at"])
        if when > time.time() + MAX_RESCHEDULE_SECONDS:
            raise bad_request("at", "more than 30 days ahead")
    status = TriageStatus(record["status"])
    if status is TriageStatus.WAITING:
        job_id = record.get("job_id")
    elif status is TriageStatus.RETRY_SCHEDULED:
        job_id = f"retry-{record.get('run_id')}"
    else:
        raise _conflict(f"triage {triage_id} is {status}: nothing of it is scheduled")
    registry = ScheduledJobRegistry(queue=_queue())
    # XX: only while RQ's scheduler has not enqueued it yet (then it is running, or about to).
    if store().redis.zscore(registry.key, job_id) is None or \
            store().redis.zadd(registry.key, {job_id: int(when)}, xx=True, ch=True) is None:
        raise _conflict(f"triage {triage_id}: job {job_id} is not scheduled any more (it is running or done)")
    if status is TriageStatus.WAITING:
        store().save_triage(triage_id, next_check_at=when)
    ledger().record(triage_id, EventType.RESCHEDULED, f"{job_id} moved to {iso(when)}", job_id=job_id)
    return jsonify({"id": triage_id, "job_id": job_id, "scheduled_at": iso(when)})


# --- idempotency claims ----------------------------------------------------------------------------


@bp.delete("/triages/<triage_id>/idempotency-key")
def reset_idempotency(triage_id: str):
    """Forget the delivery, run-event and run claims this triage holds, so that the next delivery of
    the same webhook is triaged again. The retry guard stays: a retried run is not retried again."""
    record = record_of(triage_id)
    if not TriageStatus(record["status"]).final:
        raise _conflict(f"triage {triage_id} is {record['status']}: reset its claims once it has finished")
    event_key = WebhookEvent.from_dict(record["event"]).dedup_key if record.get("event") else None
    delivery = record["delivery_id"][:200] if record.get("delivery_id") else None
    forgotten = store().forget_claims(triage_id, delivery, event_key, record.get("run_id"))
    ledger().record(triage_id, EventType.IDEMPOTENCY_RESET, f"claims forgotten: {', '.join(forgotten) or 'none'}")
    return jsonify(id=triage_id, forgotten=forgotten)
