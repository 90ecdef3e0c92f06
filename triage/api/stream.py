"""``GET /api/v1/triages/<id>/stream``: the timeline as Server-Sent Events, live.

Each event is sent with its ledger id (``id:``), so a client that reconnects with ``Last-Event-ID``
gets exactly what it missed (the ledger is a Redis stream: ids are ordered). While nothing happens a
comment line (``: heartbeat``) is sent every ``heartbeat`` seconds, so proxies keep the connection.
The stream ends (``event: end`` with the final status) once the triage is in a final state and its
events are all sent; and after ``MAX_STREAM_SECONDS`` in any case, so a forgotten client does not
hold a gunicorn thread forever (it reconnects with ``Last-Event-ID``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

from flask import Response, request, stream_with_context

from triage.api.auth import bad_request, bp
from triage.api.triages import ledger, record_of, store

DEFAULT_HEARTBEAT = 15.0
MAX_STREAM_SECONDS = 3600
#: Redis blocking reads stay under the client's socket timeout (``broker.connect``: 5 s).
BLOCK_MS = 2000
_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


def _heartbeat() -> float:
    raw = request.args.get("heartbeat")
    if raw is None:
        return DEFAULT_HEARTBEAT
    try:
        value = float(raw)
    except ValueError:
        raise bad_request("heartbeat", "expected seconds (1 to 60)") from None
    if not 1 <= value <= 60:
        raise bad_request("heartbeat", "expected seconds (1 to 60)")
    return value


@bp.get("/triages/<triage_id>/stream")
def stream(triage_id: str):
    record_of(triage_id)
    after = request.headers.get("Last-Event-ID", "").strip() or request.args.get("last_event_id", "")
    if after and not _EVENT_ID.match(after):
        raise bad_request("Last-Event-ID", "not an event id of this stream")
    heartbeat = _heartbeat()
    book, records = ledger(), store()

    def events() -> Iterator[str]:
        last, idle_since, started = after or "0", time.monotonic(), time.monotonic()
        yield "retry: 3000\n\n"
        while time.monotonic() - started < MAX_STREAM_SECONDS:
            status = records.triage_status(triage_id)  # read before the events: none is missed at the end
            found = book.wait(triage_id, last, min(BLOCK_MS, int(heartbeat * 1000)))
            for event in found:
                last = event.id
                yield f"id: {event.id}\nevent: {event.type}\ndata: {json.dumps(event.to_dict())}\n\n"
            if found:
                idle_since = time.monotonic()
                continue
            if status is not None and status.final:
                yield f"event: end\ndata: {json.dumps({'status': str(status)})}\n\n"
                return
            if time.monotonic() - idle_since >= heartbeat:
                idle_since = time.monotonic()
                yield ": heartbeat\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(stream_with_context(events()), mimetype="text/event-stream", headers=headers)

