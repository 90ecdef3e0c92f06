"""``POST /webhooks/paradime``: verify, validate, deduplicate, enqueue, answer 202. Fast.

Claim, record and enqueue are one Redis transaction (``Store.admit``): a delivery is either
accepted whole or answered 503 with nothing left behind. A redelivery of a webhook whose triage
will not complete by itself (dead-lettered, or its job lost) starts a new attempt of that triage
(202 ``requeued``) instead of being answered ``duplicate``.

No call to Paradime or Slack happens here; the only I/O is Redis. The order of the
checks is deliberate: size (413) and authenticity (401) come before parsing (400),
so an unauthenticated sender learns nothing about what a valid body looks like.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from flask import Blueprint, current_app, g, jsonify, request
from redis.exceptions import RedisError

from triage import broker, instrument, logs, metrics
from triage.errors import PayloadError
from triage.ledger import EventType
from triage.lifecycle import TriageStatus
from triage.paradime import redact_url
from triage.store import new_triage_id
from triage.verify import delivery_id, verify
from triage.webhook import decode_body, parse_event

log = logging.getLogger(__name__)

bp = Blueprint("intake", __name__)

RETRY_AFTER_SECONDS = "30"


#: Longest schedule name accepted in the ``?schedule=`` hint (Bolt names are short; this bounds storage).
MAX_SCHEDULE_HINT = 200


def _error(status: int, error: str, message: str, **extra):
    return jsonify(error=error, message=message, **extra), status


@bp.post("/webhooks/paradime")
@bp.post("/webhooks/paradime/<path:path_token>")
@instrument.webhook
def receive(path_token: str | None = None):
    ctx = current_app.extensions["triage"]
    settings = ctx["settings"]
    body = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH

    reason = verify(settings.webhook, body, request.headers, path_token)
    if reason:
        log.warning("webhook refused (401): %s", reason)
        return _error(401, "unauthorized", reason)

    try:  # UTF-8, nesting depth, JSON: every malformed body is a 400 naming "body", never a 500
        doc = decode_body(body)
    except PayloadError as exc:
        log.warning("webhook refused (400): %s", exc)
        return _error(400, "invalid_json", str(exc))
    try:
        event = parse_event(doc)
    except PayloadError as exc:
        log.warning("webhook refused (400): %s", exc)
        return _error(400, "invalid_payload", str(exc))

    hint = request.args.get("schedule", "").strip()
    if hint and (len(hint) > MAX_SCHEDULE_HINT or not hint.isprintable()):
        return _error(400, "invalid_payload", f"schedule: the URL's schedule hint must be printable text of "
                                              f"at most {MAX_SCHEDULE_HINT} characters")
    if hint and not event.schedule_name:  # the documented payload names no schedule (see triage.schedules)
        event = dataclasses.replace(event, schedule_name=hint)

    if event.api_url and event.api_url.rstrip("/") != (settings.paradime.endpoint or "").rstrip("/"):
        log.warning("webhook api_url %s differs from PARADIME_API_ENDPOINT; ignored, the configured "
                    "endpoint is used", redact_url(event.api_url))

    triage_id = new_triage_id()
    wid = delivery_id(request.headers)
    store, queue, jobs = ctx["store"], ctx["queue"], settings.jobs
    job_id = f"triage-{triage_id}"
    record = {"status": TriageStatus.QUEUED, "received_at": time.time(), "event": event.to_dict(),
              "delivery_id": wid, "run_id": event.run_id, "schedule_name": event.schedule_name,
              "job_id": job_id, "attempts": 1, "triggered_by": "webhook"}
    description = f"triage {event.event_type} {event.dedup_key}"

    def enqueue(pipe, tid=triage_id, jid=job_id):
        broker.enqueue_triage(queue, tid, record["event"], jobs, job_id=jid, pipeline=pipe, description=description)

    def admitted(pipe):  # the job and the triage's first events: in admit's one round trip, all or nothing
        enqueue(pipe)
        ctx["ledger"].received(pipe, triage_id, event.run_id, f"{event.event_type} {event.dedup_key}",
                               delivery_id=wid)
        metrics.add(pipe, metrics.WEBHOOKS, outcome="queued")

    try:
        earlier = store.admit(event.dedup_key, wid[:200] if wid else None, triage_id, record, admitted)
        logs.tag(earlier or triage_id, event.run_id)  # the lines below are about this triage
        if earlier:
            again = store.get_triage(earlier) or {}
            if broker.job_alive(store.redis, again.get("job_id")):
                log.info("duplicate delivery of %s; already triage %s", event.dedup_key, earlier)
                return jsonify(status="duplicate", triage_id=earlier), 200
            # Its triage will not complete by itself (dead-lettered, or its job lost): a new attempt.
            retry_id = f"triage-{earlier}-a{int(again.get('attempts', 1)) + 1}"
            if store.reopen(earlier, lambda pipe: enqueue(pipe, earlier, retry_id), job_id=retry_id):
                log.info("redelivery of %s: triage %s had not completed (%s); attempt queued", event.dedup_key,
                         earlier, again.get("status", "no record"))
                ctx["ledger"].record(earlier, EventType.QUEUED, "redelivered: a new attempt queued", job_id=retry_id)
                return jsonify(status="requeued", triage_id=earlier, run_id=event.run_id), 202
            return jsonify(status="duplicate", triage_id=earlier), 200
    except RedisError as exc:
        log.error("Redis unavailable, asking the sender to deliver again: %s", exc.__class__.__name__)
        resp, status = _error(503, "unavailable", "queue unavailable; deliver again later")
        resp.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return resp, status

    g.setdefault(instrument.COUNTED, True)  # counted by admit's script, with the admission
    log.info("triage %s queued for %s (event %s%s)", triage_id, event.dedup_key, event.event_type,
             ", inferred" if event.event_type_inferred else "")
    return jsonify(status="queued", triage_id=triage_id, event=event.event_type, run_id=event.run_id), 202
