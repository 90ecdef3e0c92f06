"""RQ jobs: triage the run a webhook is about, and issue a decided retry.

``triage_webhook`` follows the one-way flow: resolve the run → wait until it is finished
→ gather evidence → decide → schedule the retry (``perform_retry``, via RQ's scheduler
when there is a backoff) → tell Slack. ``perform_retry`` sends the retry mutation at most
once per run, guarded in Redis, and records the new run as the next link of the chain.

Every step that can be repeated (a redelivered webhook, a job run twice after a crash,
a re-check) is guarded by a claim in Redis, so repeating it changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from datetime import timedelta
from typing import Any

from rq import Callback, Retry
from rq.exceptions import AbandonedJobError
from rq.job import Job, get_current_job

from triage import broker, instrument, logs, pauses, schedules
from triage.decide import decide
from triage.errors import UpstreamError
from triage.evidence import ArtifactsNotReady, gather
from triage.ledger import EventType, Level
from triage.lifecycle import StoryStatus, TriageStatus
from triage.models import (
    TERMINAL_STATES,
    Decision,
    Evidence,
    evidence_from_dict,
    evidence_to_dict,
)
from triage.paradime import AmbiguousMutation
from triage.routing import mentions_for
from triage.store import ChainLink, RetryOutcome, Story
from triage.summary import recovered_nodes_sentence, run_link, simple_message, verdict_line
from triage.webhook import STARTED, WebhookEvent
from workers import context, notify
from workers.context import Context

log = logging.getLogger("workers.jobs")

class TriageFailed(Exception):
    """Raised to file the job in RQ's failed registry with a clear reason."""


# --- triage ----------------------------------------------------------------------------------


def triage_webhook(triage_id: str, event: dict[str, Any], check: int = 0) -> dict[str, Any]:
    """RQ entry point for one webhook delivery (and its re-checks, and RQ's retries of it).

    Failures are not handled here but in ``triage_failed``, RQ's failure callback, which also runs
    for a job whose worker died: so a killed triage is re-run, and the last failure is told to Slack.
    """
    ev = WebhookEvent.from_dict(event)
    with logs.bound(triage_id, run_id=ev.run_id):
        ctx = context.current()
        status = ctx.store.triage_status(triage_id)
        if status is not None and status.final:
            log.info("triage is %s; this job has nothing left to do", status)
            return {"status": "skipped", "triage_status": str(status)}
        ctx.store.set_status(triage_id, TriageStatus.TRIAGING, checks=check, started_at=time.time())
        ctx.ledger.record(triage_id, EventType.STARTED, f"triage started (check {check})", check=check)
        try:
            result = _triage(ctx, triage_id, ev, check)
        except UpstreamError as exc:
            recheck = ctx.settings.paradime.recheck_seconds
            if not (exc.retryable and check < len(recheck)):
                _no_more_attempts()  # a definite answer: RQ's retries would get the same one
                raise TriageFailed(f"triage {triage_id}: {exc}") from None
            log.warning("%s; trying the whole triage again in %gs", exc, recheck[check])
            result = _again(ctx, triage_id, ev, check, f"upstream error: {exc}")
        fields = {"outcome": result["status"], **{k: v for k, v in result.items() if k != "status"}}
        now = ctx.store.triage_status(triage_id)
        if result["status"] == "waiting":
            now = TriageStatus.WAITING
            ctx.store.advance(triage_id, now, **fields)
        elif now in (TriageStatus.RETRY_SCHEDULED, TriageStatus.RETRIED, TriageStatus.DONE):
            ctx.store.save_triage(triage_id, **fields)  # perform_retry ends it (it may have already)
        else:
            now = TriageStatus.DONE
            ctx.store.advance(triage_id, now, finished_at=time.time(), **fields)
            ctx.ledger.record(triage_id, EventType.DONE, f"triage done: {result['status']}", outcome=result["status"])
        log.info("triage %s: %s", now, json.dumps(result)[:500])
        return result


def _no_more_attempts() -> None:
    """Tell RQ not to retry the job now failing (the failure callback then dead-letters it)."""
    job = get_current_job()
    if job is not None:
        job.retries_left = 0


def triage_failed(job: Job, connection: Any, exc_type: type, exc: BaseException, tb: Any) -> None:
    """RQ's failure callback: the triage raised, or its worker died (``AbandonedJobError``).

    With attempts left RQ runs it again (the triage is ``failed`` meanwhile); with none, it is
    dead-lettered and Slack hears "Could not triage run N: <reason>".
    """
    triage_id, event = job.args[0], job.args[1]
    ev = WebhookEvent.from_dict(event)
    reason = _failure_reason(exc_type, exc)
    with logs.bound(triage_id, run_id=ev.run_id):
        ctx = context.current()
        if ctx.store.triage_status(triage_id) in (TriageStatus.DONE, TriageStatus.CANCELED):
            return
        if job.retries_left:
            log.warning("attempt failed (%s); RQ tries again (%d left)", reason, job.retries_left)
            ctx.store.set_status(triage_id, TriageStatus.FAILED, error=reason)
            ctx.ledger.record(triage_id, EventType.FAILED, f"attempt failed: {reason}", Level.WARNING)
            return
        _give_up(ctx, triage_id, ev, reason)


def _failure_reason(exc_type: type, exc: BaseException) -> str:
    if exc_type is AbandonedJobError or isinstance(exc, AbandonedJobError):
        return "the worker running it stopped before it finished (killed, or out of memory)"
    if isinstance(exc, TriageFailed):
        return str(exc).split(": ", 1)[-1]
    return f"internal error ({exc_type.__name__}); see the worker log"


def _again(ctx: Context, triage_id: str, ev: WebhookEvent, check: int, why: str) -> dict[str, Any]:
    """Look again later (bounded by ``paradime.recheck_seconds``), through RQ's scheduler."""
    delay = ctx.settings.paradime.recheck_seconds[check]
    job_id = f"triage-{triage_id}-check{check + 1}"
    ctx.queue.enqueue_in(
        timedelta(seconds=delay), broker.TRIAGE_JOB, triage_id, ev.to_dict(), check + 1,
        job_id=job_id, failure_ttl=broker.FAILURE_TTL, description=f"re-check {ev.dedup_key} ({why})",
        retry=broker.triage_retry(ctx.settings.jobs), on_failure=broker.triage_callback(),
    )
    ctx.store.save_triage(triage_id, job_id=job_id, next_check_at=time.time() + delay)
    ctx.ledger.record(triage_id, EventType.RECHECK_SCHEDULED, f"checking again in {delay:g}s: {why}", job_id=job_id)
    return {"status": "waiting", "reason": why, "next_check_in": delay}


def _resolve_run_id(ctx: Context, ev: WebhookEvent) -> int:
    """The body carried no run id: ask Paradime which run one of its commands belongs to."""
    last = "the webhook has no commands"
    for command in ev.commands:
        detail = ctx.paradime.command(command.id)
        if detail.schedule_run_id is not None:
            return detail.schedule_run_id
        last = f"boltCommand({command.id}) has no scheduleRunId"
    raise UpstreamError(f"cannot resolve the run id: {last}", retryable=False)


@instrument.triage
def _triage(ctx: Context, triage_id: str, ev: WebhookEvent, check: int) -> dict[str, Any]:
    run_id = ev.run_id
    if run_id is None:  # the body named no run: learnt from Paradime now, so recorded and indexed now
        run_id = _resolve_run_id(ctx, ev)
        ev = dataclasses.replace(ev, run_id=run_id)
        ctx.store.save_triage(triage_id, run_id=run_id)
        ctx.ledger.link_run(run_id, triage_id)

    link = ctx.store.link(run_id)
    if ev.event_type == STARTED:
        what = f"retry {link.attempt} of run {link.origin}" if link and link.attempt else "a run"
        log.info("run %s started (%s); nothing to triage until it completes", run_id, what)
        return {"status": "started", "run_id": run_id}

    status = ctx.paradime.run_status(run_id)
    ctx.ledger.record(triage_id, EventType.RUN_STATUS, f"run {run_id} is {status.state}", state=status.state)
    if status.state not in TERMINAL_STATES:
        if check < len(ctx.settings.paradime.recheck_seconds):
            return _again(ctx, triage_id, ev, check, f"run {run_id} is {status.state}")
        raise UpstreamError(f"run {run_id} still {status.state} after {check} re-checks", retryable=False)
    if link is None and not ev.schedule_name:  # the documented payload names no schedule: ask Bolt
        ev = dataclasses.replace(ev, schedule_name=schedules.name_of_run(ctx.paradime, run_id))
    pending = link is None and ev.schedule_name and ctx.store.retries.pending(ev.schedule_name)
    if pending and check < len(ctx.settings.paradime.recheck_seconds):
        # The retry mutation for this schedule is in flight: this run may be its result, not yet linked.
        return _again(ctx, triage_id, ev, check, "a retry of this schedule is being recorded")

    owner = ctx.store.claim_run(run_id, triage_id)
    if owner != triage_id:
        log.info("run %s is already triaged by %s; nothing to do", run_id, owner)
        return {"status": "duplicate", "run_id": run_id, "triaged_by": owner}

    link = link or ChainLink(origin=run_id, attempt=0)
    if link.attempt == 0:
        ctx.store.set_link(run_id, link)

    if status.state == "SUCCESS" and not any(c.failed for c in status.commands):
        if link.attempt == 0:
            return {"status": "succeeded", "run_id": run_id}
        return _recovered(ctx, run_id, link)

    allow_missing = check >= len(ctx.settings.paradime.recheck_seconds)
    try:
        with ctx.ledger.classifying(triage_id):
            evidence = gather(ctx.paradime, run_id, status, ctx.rules, ctx.settings.paradime.artifact_max_bytes,
                              wait_for_artifacts=not allow_missing,
                              manifest_max_bytes=ctx.settings.paradime.manifest_max_bytes)
    except ArtifactsNotReady as exc:
        return _again(ctx, triage_id, ev, check, str(exc))

    ctx.ledger.evidence(triage_id, evidence)
    ctx.store.advance(triage_id, TriageStatus.DECIDING)
    nodes = [f.node for f in evidence.failures if f.node]
    schedule = ev.schedule_name or _story_schedule(ctx, link)
    evidence = schedules.with_schedule_owner(evidence, ctx.paradime, schedule, ctx.settings.slack.owners)
    history = ctx.history.get(nodes, schedule=schedule, origin=link.origin)
    decision = decide(evidence, link.attempt, ctx.settings.retry, schedule, history)
    decision = pauses.hold(ctx.store.redis, decision, schedule)
    ctx.ledger.decided(triage_id, decision)
    ctx.history.record_failures(run_id, evidence.failures, schedule=schedule, origin=link.origin)
    log.info("run %s (attempt %d of chain %s): %s — %s", run_id, link.attempt, link.origin, decision.action,
              decision.reason)
    _act(ctx, triage_id, ev, run_id, link, evidence, decision)
    return {
        "status": "triaged", "run_id": run_id, "origin": link.origin, "attempt": link.attempt,
        "action": decision.action, "reason_code": str(decision.code), "reason": decision.reason,
        "backoff_seconds": decision.backoff_seconds,
        "failures": len(evidence.failures),  # the evidence itself: Store.save_evidence, in _act
    }


def _story_schedule(ctx: Context, link: ChainLink) -> str | None:
    return ctx.store.story(link.origin).schedule_name


def _act(ctx: Context, triage_id: str, ev: WebhookEvent, run_id: int, link: ChainLink,
         evidence: Evidence, decision: Decision) -> None:
    retrying = decision.action in ("retry", "trigger")
    with ctx.store.story_lock(link.origin):
        story = ctx.store.story(link.origin)
        story.schedule_name = story.schedule_name or ev.schedule_name
        story.branch = story.branch or ev.branch
        ctx.store.save_evidence(triage_id, evidence_to_dict(evidence))
        if story.attempts <= link.attempt:  # a re-run of an older triage must not rewrite a newer outcome
            story.status = StoryStatus.RETRYING if retrying else (
                StoryStatus.GAVE_UP if link.attempt else StoryStatus.NOT_RETRIED)
        ctx.store.save_story(story)

    scheduled = False
    if retrying:  # the status first: a retry without backoff may run before this job goes on
        ctx.store.advance(triage_id, TriageStatus.RETRY_SCHEDULED)
        scheduled = _schedule_retry(ctx, triage_id, run_id, link, decision, story.schedule_name)
    if link.attempt == 0:
        notify.first_message(ctx, story, evidence, decision)
    else:  # a retry run failed again: the story goes on under its first message
        status = verdict_line(decision, link.attempt, evidence=evidence)
        notify.later_message(ctx, story, run_id, link, evidence, decision, status)
    if not scheduled:  # no retry job of this triage will end it: it ends here
        ctx.store.advance(triage_id, TriageStatus.NOTIFIED)


def _schedule_retry(ctx: Context, triage_id: str, run_id: int, link: ChainLink, decision: Decision,
                    schedule_name: str | None) -> bool:
    """Enqueue ``perform_retry`` once per run (a fixed job id; the mutation itself is guarded too).

    True when a retry job of this triage ends it (scheduled now, or by an earlier attempt of this same
    triage, whatever it has done since); False when the run's retry belongs to another triage (a
    replay of a run already retried): nobody retries it again, and this triage ends without a retry."""
    job_id = f"retry-{run_id}"
    guard, existing = ctx.store.retries.state(run_id), ctx.queue.fetch_job(job_id)
    if guard or existing is not None:
        mine = existing is not None and existing.args[0] == triage_id  # that job ends this triage
        said = str(guard) if guard else "scheduled"
        log.info("retry of run %s already scheduled or issued (%s)", run_id, said)
        ctx.ledger.record(triage_id, EventType.RETRY_SCHEDULED if mine else EventType.RETRY_NOT_SCHEDULED,
                          f"retry of run {run_id} already {said}", guard=str(guard) if guard else None)
        return mine
    args = (triage_id, run_id, link.origin, decision.attempt, decision.action, schedule_name)
    # Retry(...) only matters when Paradime was provably not reached (refused connection, 429):
    # perform_retry never lets RQ resend a mutation whose outcome is unknown.
    kwargs = dict(job_id=job_id, failure_ttl=broker.FAILURE_TTL, description=f"{decision.action} run {run_id}",
                  retry=Retry(max=3, interval=[30, 60, 120]), on_failure=Callback(broker.RETRY_FAILED))
    if decision.backoff_seconds > 0:
        ctx.queue.enqueue_in(timedelta(seconds=decision.backoff_seconds), broker.RETRY_JOB, *args, **kwargs)
        log.info("retry %d of run %s scheduled in %gs", decision.attempt, run_id, decision.backoff_seconds)
    else:
        ctx.queue.enqueue(broker.RETRY_JOB, *args, **kwargs)
    ctx.ledger.record(triage_id, EventType.RETRY_SCHEDULED, f"{decision.action} in {decision.backoff_seconds:g}s")
    return True


def _failed_in(ctx: Context, run_id: int) -> tuple[list[str], list[str]]:
    """(failed nodes, failed commands) of a triaged run, from its stored evidence."""
    evidence = ctx.store.evidence(run_id) or {"failures": []}
    return (sorted({f["node"] for f in evidence["failures"] if f.get("node")}),
            sorted({f["command"] for f in evidence["failures"]}))


def _recovered(ctx: Context, run_id: int, link: ChainLink) -> dict[str, Any]:
    previous = link.parent if link.parent is not None else link.origin
    nodes, commands = _failed_in(ctx, previous)
    if link.via != "trigger":  # same code: the nodes that failed before now passed
        ctx.history.record_recovery(run_id, nodes, schedule=_story_schedule(ctx, link), origin=link.origin)
    flaky = [h for h in ctx.history.get(nodes).values() if h.is_flaky]  # the documented definition only
    story = ctx.store.update_story(link.origin, status="recovered", flaky_nodes=[h.node for h in flaky])
    if nodes:
        sentence = f"Recovered on retry {link.attempt} — " + recovered_nodes_sentence(nodes, flaky)
    else:
        what = ", ".join(f"`{c}`" for c in commands) or "the failed commands"
        sentence = f"Recovered on retry {link.attempt} — {what} failed transiently"
    log.info("run %s succeeded: chain %s recovered", run_id, link.origin)
    body = f"Run {run_link(run_id)} (retry {link.attempt} of run {link.origin}) succeeded. {sentence}."
    notify.note(ctx, f"{run_id}:recovered",
                simple_message("recovered", f"{story.schedule_name or 'Bolt run'} recovered", body), story=story,
                quiet_in_incident=True)
    notify.refresh(ctx, story, ("recovered", sentence))
    return {"status": "recovered", "run_id": run_id, "origin": link.origin, "attempt": link.attempt,
            "flaky_nodes": nodes}


@instrument.dead_letter
def _give_up(ctx: Context, triage_id: str, ev: WebhookEvent, reason: str) -> None:
    """No attempt left: dead-letter the triage and tell Slack, once (the note is claimed by key)."""
    log.error("giving up: %s", reason)
    ctx.store.set_status(triage_id, TriageStatus.DEAD_LETTER, error=logs.redact(reason), finished_at=time.time())
    ctx.ledger.record(triage_id, EventType.DEAD_LETTER, f"gave up: {reason}", Level.ERROR)
    if ev.run_id is not None:
        what = f"run {ev.run_id}"
    else:
        what = "the run of command " + ", ".join(str(c.id) for c in ev.commands)
    if ev.schedule_name:
        what += f" of {ev.schedule_name}"
    message = simple_message("error", f"Could not triage {what}", reason,
                             mentions=mentions_for(ctx.settings.slack, "error", []))
    try:
        notify.note(ctx, f"{triage_id}:could-not-triage", message)
    except Exception as exc:  # Redis gone too: the log and the failed registry still tell
        log.error("could not queue the Slack note: %s", exc)


# --- retry -------------------------------------------------------------------------------------


@instrument.retry
def perform_retry(triage_id: str, run_id: int, origin: int, attempt: int, action: str,
                  schedule_name: str | None) -> dict[str, Any]:
    """Send ``retryBoltRun`` (or ``triggerBoltRun``) for ``run_id`` — at most once, whatever happens.

    The claim ``retry:<run>`` is written before sending and replaced by the outcome after. A claim
    found without an outcome means an earlier attempt stopped in between: the mutation may or may
    not have reached Paradime, so it is never sent again and a human is asked to look.
    """
    with logs.bound(triage_id, run_id=run_id):
        ctx = context.current()
        if ctx.store.triage_status(triage_id) is TriageStatus.CANCELED:
            log.info("retry of run %s canceled; not sent", run_id)
            return {"status": "canceled"}
        story = ctx.store.story(origin)
        if (pause := pauses.Pauses(ctx.store.redis).applying(schedule_name or story.schedule_name)) is not None:
            return _held(ctx, triage_id, run_id, story, pause)
        if not ctx.store.retries.claim(run_id, triage_id):
            state = ctx.store.retries.state(run_id)
            if state is None:  # released since (never sent): RQ's next try of the sender sends it
                return {"status": "already", "guard": "released"}
            if state.outcome is RetryOutcome.CLAIMED:
                since = time.time() - (state.claimed_at or 0)
                window = _in_flight_seconds(ctx)
                if since < window:  # its sender may still be waiting for Paradime: look again after
                    _check_later(ctx, (triage_id, run_id, origin, attempt, action, schedule_name), window - since)
                    log.info("retry of run %s is being sent by another job; checking again later", run_id)
                    return {"status": "already", "guard": "in flight"}
                _interrupted(ctx, triage_id, run_id, story)
                return {"status": "unknown", "reason": "interrupted between claim and outcome"}
            log.info("retry of run %s not sent again (%s)", run_id, state)
            return {"status": "already", "guard": str(state)}
        result = _send_retry(ctx, run_id, origin, attempt, action, schedule_name, story)
        ctx.ledger.record(triage_id, EventType.RETRY_SENT, f"{action} of run {run_id}: {result['status']}", **result)
        ctx.store.advance(triage_id, TriageStatus.RETRIED, retry=result)
        ctx.store.advance(triage_id, TriageStatus.DONE, finished_at=time.time())
        ctx.ledger.record(triage_id, EventType.DONE, f"triage done: retry {result['status']}")
        return result


def _held(ctx: Context, triage_id: str, run_id: int, story: Story, pause: pauses.Pause) -> dict[str, Any]:
    """A retry came due while retries are paused: not sent (not claimed either, so a replay after the
    pause may send it); the story says so and asks its owners to look."""
    ctx.ledger.record(triage_id, EventType.RETRY_HELD, f"retry of run {run_id} not sent: {pause.clause()}")
    _conclude(ctx, story, StoryStatus.NEEDS_HUMAN, f"Not retrying: {pause.clause()}")
    ctx.store.advance(triage_id, TriageStatus.DONE, outcome="retry_paused", finished_at=time.time())
    return {"status": "paused", "until": pause.until}


def _send_retry(ctx: Context, run_id: int, origin: int, attempt: int, action: str,
                schedule_name: str | None, story: Story) -> dict[str, Any]:
    guard = ctx.store.retries
    if schedule_name:
        guard.mark_pending(schedule_name, run_id)
    try:
        if action == "trigger":
            new_run = ctx.paradime.trigger_run(schedule_name or "")
        else:
            new_run = ctx.paradime.retry_run(run_id)
    except AmbiguousMutation as exc:
        guard.record(run_id, RetryOutcome.UNKNOWN, str(exc))
        _conclude(ctx, story, StoryStatus.NEEDS_HUMAN,
                  f"The retry request for run {run_id} got no clear answer ({exc}). It may have started a run; "
                  f"check the runs of {_schedule(story)} in Bolt ({run_link(run_id)}). Not retrying again.")
        return {"status": "unknown", "reason": str(exc)}
    except UpstreamError as exc:
        if exc.retryable:  # it never reached Paradime: a later attempt may send it
            guard.release(run_id)
            job = get_current_job()
            if job is None or not job.retries_left:
                _conclude(ctx, story, StoryStatus.GAVE_UP, f"Could not retry run {run_id}: {exc}")
            raise TriageFailed(f"retry of run {run_id}: {exc}") from None
        guard.record(run_id, RetryOutcome.REFUSED, str(exc))
        _conclude(ctx, story, StoryStatus.GAVE_UP, f"Paradime refused to retry run {run_id}: {exc}")
        return {"status": "refused", "reason": str(exc)}
    finally:
        if schedule_name:
            guard.clear_pending(schedule_name)

    guard.record(run_id, RetryOutcome.ISSUED, str(new_run))
    ctx.store.set_link(new_run, ChainLink(origin=origin, attempt=attempt, parent=run_id, via=action))
    if action == "retry":
        ctx.history.record_retry(run_id, _failed_in(ctx, run_id)[0])
    with ctx.store.story_lock(origin):
        story = ctx.store.story(origin)
        story.attempts = max(story.attempts, attempt)
        story.runs.append(new_run)
        ctx.store.save_story(story)
    verb = "triggered the schedule again" if action == "trigger" else "retried"
    log.info("%s run %s: new run %s (retry %d of chain %s)", verb, run_id, new_run, attempt, origin)
    if ctx.slack.threads:
        note = simple_message("info", f"Retry {attempt} started", f"{verb.capitalize()}: new {run_link(new_run)}.")
        notify.note(ctx, f"{run_id}:retry-started", note, story=story, quiet_in_incident=True)
    return {"status": "issued", "new_run_id": new_run, "attempt": attempt}


def _in_flight_seconds(ctx: Context) -> float:
    """How long a live sender can hold the claim: every attempt's timeout, its pauses, and a margin."""
    p = ctx.settings.paradime
    return p.timeout_seconds * p.max_attempts + 30 * (p.max_attempts - 1) + 30


def _check_later(ctx: Context, args: tuple, delay: float) -> None:
    job_id = f"retry-{args[1]}-check"
    if not Job.exists(job_id, connection=ctx.store.redis):
        ctx.queue.enqueue_in(timedelta(seconds=max(delay, 1)), broker.RETRY_JOB, *args, job_id=job_id,
                             failure_ttl=broker.FAILURE_TTL, description=f"check the retry of run {args[1]}")


def _schedule(story: Story) -> str:
    return story.schedule_name or f"the schedule of run {story.origin}"


def _interrupted(ctx: Context, triage_id: str, run_id: int, story: Story) -> None:
    """The claim has no outcome: whoever held it stopped between claiming and recording."""
    log.warning("retry of run %s was claimed but its outcome never recorded: it may or may not have been sent",
                run_id)
    ctx.store.retries.record(run_id, RetryOutcome.UNKNOWN, "interrupted before the outcome was recorded")
    _conclude(ctx, story, StoryStatus.NEEDS_HUMAN,
              f"The retry of run {run_id} may or may not have been sent: the worker sending it stopped before "
              f"Paradime's answer was recorded. Check the runs of {_schedule(story)} in Bolt "
              f"({run_link(run_id)}) and retry by hand if no new run started. Not retrying automatically.")
    ctx.store.advance(triage_id, TriageStatus.DONE, outcome="retry_unknown", finished_at=time.time())


@instrument.retry_failed
def retry_failed(job: Job, connection: Any, exc_type: type, exc: BaseException, tb: Any) -> None:
    """RQ's failure callback for ``perform_retry`` (its worker died, or it raised with no try left)."""
    triage_id, run_id, origin = job.args[0], job.args[1], job.args[2]
    with logs.bound(triage_id, run_id=run_id):
        if job.retries_left:
            return  # RQ runs it again; the claim tells that attempt what happened
        ctx = context.current()
        state = ctx.store.retries.state(run_id)
        story = ctx.store.story(origin)
        if state is not None and state.outcome is RetryOutcome.CLAIMED:
            _interrupted(ctx, triage_id, run_id, story)
        elif state is None and story.status not in (StoryStatus.GAVE_UP, StoryStatus.NEEDS_HUMAN):
            _conclude(ctx, story, StoryStatus.GAVE_UP,
                      f"Could not retry run {run_id}: {_failure_reason(exc_type, exc)}")
        ctx.store.advance(triage_id, TriageStatus.DONE, outcome="retry_failed", finished_at=time.time())


def _conclude(ctx: Context, story: Story, status: StoryStatus, sentence: str) -> None:
    """The chain ends without a retry result: the story says why, in its thread, mentioning its owners."""
    log.warning(sentence)
    story = ctx.store.update_story(story.origin, status=status)
    stored = ctx.store.evidence(story.origin)
    failures = evidence_from_dict(stored).failures if stored else []
    mentions = mentions_for(ctx.settings.slack, str(status), failures)
    notify.note(ctx, f"{story.origin}:conclusion:{status}",
                simple_message("error", f"{story.schedule_name or 'Bolt run'}: retry not done", sentence,
                               mentions=mentions), story=story)
    notify.refresh(ctx, story, (str(status), sentence))
