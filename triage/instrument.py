"""Decorators that count what the intake, the jobs and the clients did (``triage.metrics``).

Why decorators: the code they measure changes often, and a one-line ``@instrument.…`` above a
function keeps the counting out of its body. Each reads only the function's result (or exception):
the webhook answer, the triage result dict, the retry result, the delivery result. None of them
changes the result, and none can raise into the caller: mapping and recording errors are swallowed
(``metrics`` logs a Redis failure once).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from triage import metrics
from triage.errors import UpstreamError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_WEBHOOK_ERRORS = {400: "invalid", 401: "unauthorized", 413: "too_large", 503: "unavailable"}
_DELIVERIES = {"posted": "posted", "updated": "updated", "already": "duplicate", "folded into incident": "folded",
               "later": "deferred"}


_warned: set[str] = set()


def _quietly(record: Callable[[], None]) -> None:
    """Run ``record``; a failure (a result of a shape this module does not know, after a change to the
    code it measures) is not the caller's problem: no count, one warning per kind of failure."""
    try:
        record()
    except Exception as exc:
        kind = f"{exc.__class__.__name__}: {str(exc)[:80]}"
        if kind not in _warned:
            _warned.add(kind)
            log.warning("metrics: a result could not be counted (%s); see triage/instrument.py", kind)


#: Set on ``flask.g`` by the intake view when its answer was already counted with the admission itself
#: (``metrics.add`` in ``Store.admit``'s one round trip): a second count would cost a second round trip.
COUNTED = "webhook_counted"


def webhook(view: F) -> F:
    """The intake view: ``webhooks_total{outcome}`` from its answer (202 queued/requeued, 200
    duplicate, 401, 400, 413, 503), unless the view counted it itself (``COUNTED``)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from flask import current_app

        try:
            response = current_app.make_response(view(*args, **kwargs))
        except Exception as exc:
            code = getattr(exc, "code", 500)
            _quietly(lambda: metrics.count(metrics.WEBHOOKS, outcome=_WEBHOOK_ERRORS.get(code, "error")))
            raise
        from flask import g

        if not g.pop(COUNTED, False):
            _quietly(lambda: metrics.count(metrics.WEBHOOKS, outcome=_webhook_outcome(response)))
        return response

    return wrapper  # type: ignore[return-value]


def _webhook_outcome(response: Any) -> str:
    if response.status_code < 300:
        return str((response.get_json(silent=True) or {}).get("status") or "queued")
    return _WEBHOOK_ERRORS.get(response.status_code, "error")


def triage(run: F) -> F:
    """``_triage(ctx, triage_id, event, check)``: ``triages_total{verdict,category}`` and the duration
    histogram, for results that are a verdict (not "waiting", "started" or "duplicate"). The category
    comes from the evidence the triage stored (``ctx.store.evidence``): the result only counts failures."""

    @functools.wraps(run)
    def wrapper(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        result = run(ctx, *args, **kwargs)
        seconds = time.monotonic() - start
        _quietly(lambda: _count_verdict(ctx, result, seconds))
        return result

    return wrapper  # type: ignore[return-value]


def _count_verdict(ctx: Any, result: dict[str, Any], seconds: float) -> None:
    status = result.get("status")
    if status == "triaged":
        if result.get("action") in ("retry", "trigger"):
            verdict = "retrying"
        else:
            verdict = "gave_up" if result.get("attempt") else "not_retried"
        evidence = ctx.store.evidence(result["run_id"]) or {"failures": []}
        categories = Counter(f["classification"]["category"] for f in evidence["failures"])
        category = categories.most_common(1)[0][0] if categories else "none"
    elif status in ("recovered", "succeeded"):
        verdict, category = status, "none"
    else:
        return
    metrics.count_triage(verdict, category, seconds)


def dead_letter(give_up: F) -> F:
    """``_give_up(ctx, triage_id, …)``: a triage with no attempt left (``could_not_triage``)."""

    @functools.wraps(give_up)
    def wrapper(ctx: Any, triage_id: str, *args: Any, **kwargs: Any) -> Any:
        result = give_up(ctx, triage_id, *args, **kwargs)
        _quietly(lambda: metrics.dead_lettered(triage_id))
        return result

    return wrapper  # type: ignore[return-value]


def retry(perform: F) -> F:
    """``perform_retry(triage_id, run_id, origin, attempt, action, schedule_name)``:
    ``retries_total{action,outcome}``; an exception (RQ will try again, or give up) is ``error``."""

    @functools.wraps(perform)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        action = args[4] if len(args) > 4 else kwargs.get("action", "")
        try:
            result = perform(*args, **kwargs)
        except Exception:
            _quietly(lambda: metrics.count(metrics.RETRIES, action=action, outcome="error"))
            raise
        _quietly(lambda: metrics.count(metrics.RETRIES, action=action, outcome=result.get("status")))
        return result

    return wrapper  # type: ignore[return-value]


def retry_failed(callback: F) -> F:
    """RQ's failure callback of a retry job: ``failed`` once it has no attempt left (its worker died,
    or every attempt raised)."""

    @functools.wraps(callback)
    def wrapper(job: Any, *args: Any, **kwargs: Any) -> Any:
        result = callback(job, *args, **kwargs)
        if not job.retries_left:
            _quietly(lambda: metrics.count(metrics.RETRIES, action=job.args[4], outcome="failed"))
        return result

    return wrapper  # type: ignore[return-value]


def delivery(deliver: F) -> F:
    """``deliver(op, tries)`` on the slack queue: ``slack_deliveries_total{outcome}``."""

    @functools.wraps(deliver)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = deliver(*args, **kwargs)
        except Exception:
            _quietly(lambda: metrics.count(metrics.SLACK_DELIVERIES, outcome="error"))
            raise
        outcome = _DELIVERIES.get(str(result.get("status")), "skipped") if isinstance(result, dict) else "skipped"
        _quietly(lambda: metrics.count(metrics.SLACK_DELIVERIES, outcome=outcome))
        return result

    return wrapper  # type: ignore[return-value]


def upstream(service: str) -> Callable[[F], F]:
    """A client call: ``upstream_errors_total{service}`` when it raises UpstreamError (after the
    client's own retries). A Slack 429 is not counted: it is pacing, and the delivery is deferred."""

    def decorate(call: F) -> F:
        @functools.wraps(call)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return call(*args, **kwargs)
            except UpstreamError as exc:
                if type(exc).__name__ != "RateLimited":
                    _quietly(lambda: metrics.count(metrics.UPSTREAM_ERRORS, service=service))
                raise

        return wrapper  # type: ignore[return-value]

    return decorate
