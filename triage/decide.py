"""Retry or not: the product's one decision, made from the evidence and the nodes' history.

Order of the checks (the first that applies wins), so that the reason given is the
most useful one for a human:

1. nothing failed, or the run was cancelled by someone → no action;
2. any deterministic failure → not retrying (a retry would fail the same way and burn money);
3. any unrecognised failure → not retrying, unless ``retry.retry_unknown`` is on, or
   ``retry.retry_unknown_if_flaky`` is on and every such failure is of a node known to be flaky;
4. history beats text: a node failed with the same error (``triage.history.signature``) in each of
   the last ``retry.same_error_runs`` runs of its schedule and no retry ever recovered it → not retrying,
   whatever the message says;
5. a *conditional* failure (maybe load, maybe the query: a timeout, "gone away", DNS, memory) gets
   at most one retry, and none when
   a. it fails the same way on that retry ("failed the same way on retry: likely not transient"), or
   b. the node failed the same way in the schedule's previous run and was not recovered; a timeout or
      memory error naming a configured limit is then deterministic (the query needs more than the limit);
6. the chain's retry budget (``retry.max_attempts``) is spent → gave up;
7. a failure's retry cap (``retry_cap``: the rule's ``max_retries``; conditional: 1; a transient verdict
   that rests on a generic code or a phrase only: 1) is reached → gave up; a failed node was retried
   ``retry.give_up_after_unrecovered`` times and never recovered → gave up
   (its "transient" failure is not going away by itself);
8. only infrastructure commands (git clone, dbt deps) failed → trigger the schedule again
   (``retryBoltRun`` refuses such runs), which needs the schedule name;
9. otherwise → ``retryBoltRun`` (reason CONDITIONAL when a conditional failure is among them).
"""

from __future__ import annotations

from collections import Counter

from triage.config import RetryPolicy
from triage.history import NodeHistory, signature
from triage.models import Classification, Decision, Evidence, Failure, Reason

#: The most retries a transient verdict gets when it rests on a generic code (an HTTP status, a bare
#: SQLSTATE) or on a phrase alone, however large ``retry.max_attempts`` is. See ``retry_cap``.
WEAK_EVIDENCE_RETRIES = 1


def retry_cap(classification: Classification) -> int | None:
    """The most automatic retries this failure deserves (None: only the chain's budget limits it).

    The cost model: a retry of a transient failure costs one more run; a retry of a deterministic failure
    misread as transient costs a run *each time*, and hides the real bug for as long. How sure a verdict
    is depends on what it rests on (``Classification.evidence``):

    * a **vendor's own code** (Snowflake ``000625``, SQL Server ``1205``, ClickHouse ``202``, a Databricks
      ``DELTA_CONCURRENT_*`` class, a BigQuery reason) names exactly one failure, and the vendor or its
      connector says it is retryable: the rule's cap (``max_retries``) or the chain's full budget;
    * a **generic code** (an HTTP ``503``, SQLSTATE ``08001``) is shared by failures of every kind: a 503
      from a proxy in front of a host that is gone, 08001 for a host name that is wrong;
    * a **phrase** alone ("connection reset", "timed out") may sit in a message whose real error is
      elsewhere, or be a symptom of a configuration that will not change by itself.

    Generic codes and phrases therefore get at most ``WEAK_EVIDENCE_RETRIES`` (one), like a conditional
    verdict: if the failure was a blip, one retry recovers it; if it was not, it fails the same way once
    and is given up, so a deterministic failure misread from weak evidence is never retried twice.
    A deterministic or unknown verdict is not retried at all (checks 2 and 3), whatever its cap.
    """
    if classification.verdict == "conditional":
        return 1
    cap = classification.max_retries
    if classification.verdict == "transient" and classification.evidence in ("generic_code", "phrase"):
        return WEAK_EVIDENCE_RETRIES if cap is None else min(cap, WEAK_EVIDENCE_RETRIES)
    return cap


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") else f"{n} {word}s"


def _categories(failures) -> str:
    counts = Counter(f.classification.category for f in failures)
    return ", ".join(f"{n}× {cat}" for cat, n in counts.most_common())


def _name(node: str | None) -> str:
    return (node or "?").split(".")[-1]


def _history_says_stop(failures: list[Failure], history: dict[str, NodeHistory], attempts_used: int,
                       policy: RetryPolicy) -> Decision | None:
    """Checks 4 and 5 of the module docstring: what earlier runs of the same nodes tell."""
    for f in failures:
        h = history.get(f.node or "")
        if h and h.repeats(signature(f), policy.same_error_runs):
            runs = policy.same_error_runs
            return Decision("none", f"{_name(f.node)} failed this way in the last {runs} runs and retries "
                                    f"never recovered it", code=Reason.SAME_ERROR_HISTORY,
                            detail=f"failed this way in the last {runs} runs")
    for f in failures:
        if f.classification.verdict != "conditional":
            continue
        h = history.get(f.node or "")
        sig = signature(f)
        if h and attempts_used > 0 and sig in h.this_chain:
            return Decision("none", f"{_name(f.node)} failed the same way on retry: likely not transient",
                            code=Reason.FAILED_SAME_ON_RETRY)
        if h and attempts_used == 0 and h.failed_same_way_before(sig):
            limit = f.classification.limit
            if limit:
                return Decision("none", f"{_name(f.node)} hit its configured limit ({limit}) again, as in the "
                                        f"previous run: the query needs more than the limit allows",
                                code=Reason.LIMIT_REPEATED, detail=limit)
            return Decision("none", f"{_name(f.node)} failed the same way in the previous run of the schedule; "
                                    f"a retry is unlikely to help", code=Reason.REPEATED_PREVIOUS_RUN)
    return None


def decide(evidence: Evidence, attempts_used: int, policy: RetryPolicy, schedule_name: str | None,
           history: dict[str, NodeHistory] | None = None) -> Decision:
    """Decide for a finished run that is attempt ``attempts_used`` of its chain (0 = the original run).

    ``history`` is what was known of the failed nodes *before* this run (see triage.history).
    """
    history = history or {}
    if evidence.state == "CANCELED":
        return Decision("none", "the run was cancelled; not retrying a cancelled run", code=Reason.CANCELED)
    failures = evidence.failures
    if not failures and not evidence.failed_commands:
        return Decision("none", "the run succeeded", code=Reason.SUCCEEDED)

    deterministic = [f for f in failures if f.classification.verdict == "deterministic"]
    if deterministic:
        return Decision("none", f"{_plural(len(deterministic), 'failure')} will fail again "
                                f"({_categories(deterministic)})", code=Reason.DETERMINISTIC)
    unknown = [f for f in failures if f.classification.verdict == "unknown"]
    flaky = [history[f.node] for f in failures if f.node in history and history[f.node].is_flaky]
    if unknown and not policy.retry_unknown:
        known_flaky = policy.retry_unknown_if_flaky and all(
            f.node in history and history[f.node].is_flaky for f in unknown)
        if not known_flaky:
            return Decision("none", f"{_plural(len(unknown), 'failure')} not recognised; a human should look",
                            code=Reason.UNRECOGNISED)

    stop = _history_says_stop(failures, history, attempts_used, policy)
    if stop is not None:
        return stop

    attempt = attempts_used + 1
    if attempts_used >= policy.max_attempts:
        return Decision("none", f"retry budget spent: {_plural(attempts_used, 'automatic retry')} already made "
                                f"(retry.max_attempts: {policy.max_attempts})", code=Reason.BUDGET_SPENT)
    caps = [cap for f in failures if (cap := retry_cap(f.classification)) is not None]
    if caps and attempt > min(caps):
        capped = min(caps)
        return Decision("none", f"this kind of failure is worth only {_plural(capped, 'retry')}, "
                                f"and {_plural(attempts_used, 'retry')} already failed", code=Reason.RULE_CAP)

    limit = policy.give_up_after_unrecovered
    hopeless = [h for f in failures if (h := history.get(f.node or "")) and limit and h.retries >= limit
                and h.recoveries == 0]
    if hopeless:
        return Decision("none", f"retrying never helped: {hopeless[0].node.split('.')[-1]} failed again after "
                                f"each of its {_plural(hopeless[0].retries, 'retry')}", code=Reason.NEVER_RECOVERED)

    backoff = policy.backoff_for(attempt)
    summary = _categories(failures) or "transient failure"
    if flaky:
        summary += "; known flaky: " + ", ".join(h.describe() for h in flaky[:3])
    failed_commands = evidence.failed_commands
    if failed_commands and all(c.is_infra for c in failed_commands):
        if not schedule_name:
            return Decision("none", "only git clone / dbt deps failed, but the webhook named no schedule "
                                    "to trigger again", code=Reason.NO_SCHEDULE)
        return Decision("trigger", f"only infrastructure commands failed ({summary}); triggering "
                                   f"schedule '{schedule_name}' again", attempt, backoff, code=Reason.INFRA_ONLY,
                        detail=summary)
    if any(f.classification.verdict == "conditional" for f in failures):
        return Decision("retry", f"conditional: {summary}; one retry, since this may be the load or the query "
                                 f"itself", attempt, backoff, code=Reason.CONDITIONAL, detail=summary)
    return Decision("retry", f"transient: {summary}", attempt, backoff, code=Reason.TRANSIENT, detail=summary)
