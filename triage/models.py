"""Domain objects shared by every stage of the triage pipeline.

They are plain dataclasses so that a stage's output can be logged, stored in
Redis as JSON (``dataclasses.asdict``) and read by the next stage without any
of them knowing how the previous one was built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from triage.enums import TextEnum

#: Bolt run states (Paradime SDK enum). STARTING and RUNNING are not terminal.
TERMINAL_STATES = frozenset({"SUCCESS", "ERROR", "FAILED", "CANCELED", "SKIPPED"})

#: Commands that ``retryBoltRun`` skips; a run where only these failed must be triggered again.
INFRA_COMMAND_PREFIXES = ("git clone", "dbt deps")

#: Bolt's return code for a command that did not run (skipped after an earlier failure, or an
#: infrastructure command a retry run leaves out); see the boltRunStatus example in bolt-api.md.
NOT_RUN_RETURN_CODE = -10

#: Node statuses in run_results.json that count as a failure of the node.
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})


@dataclass(frozen=True)
class Resource:
    """An artifact a Bolt command produced (``target/run_results.json`` …)."""

    id: int
    path: str


@dataclass(frozen=True)
class Command:
    """One command of a Bolt run, as the webhook or ``boltRunStatus`` describes it."""

    id: int
    command: str
    return_code: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    status: str | None = None
    resources: tuple[Resource, ...] = ()

    @property
    def finished(self) -> bool:
        return self.end is not None and self.return_code is not None

    @property
    def failed(self) -> bool:
        """A command's outcome is judged by its return code (its ``status`` values are undocumented).

        ``-10`` means the command did not run; any other non-zero code (including a negative
        one: killed by a signal) is a failure.
        """
        return self.return_code is not None and self.return_code not in (0, NOT_RUN_RETURN_CODE)

    @property
    def not_run(self) -> bool:
        return self.return_code == NOT_RUN_RETURN_CODE

    @property
    def is_infra(self) -> bool:
        return self.command.strip().startswith(INFRA_COMMAND_PREFIXES)


@dataclass(frozen=True)
class Classification:
    """A verdict on one failure message, with the evidence behind it."""

    verdict: str  # "transient" | "conditional" | "deterministic" | "unknown"
    category: str  # e.g. "connection", "lock_conflict", "sql_error", "unknown"
    rule: str | None = None  # name of the rule that matched, None for unknown
    excerpt: str = ""  # the part of the message the rule matched in
    source: str = ""  # "run_results" or "log"
    max_retries: int | None = None  # a rule may cap the retries it deserves (a conditional one: 1)
    code: str | None = None  # the machine code found, e.g. "sqlstate:40001", "clickhouse:202"
    reference: str = ""  # where the rule's meaning comes from: a vendor page or a connector file
    limit: str | None = None  # a configured limit the message names (statement_timeout, max_execution_time)
    #: What the verdict rests on: "vendor_code" (a vendor's own number or error class), "generic_code" (a
    #: SQLSTATE or an HTTP status, shared by every vendor), "phrase" (wording alone), "" (not from a rule).
    #: triage.decide.retry_cap gives generic codes and phrases a smaller retry budget.
    evidence: str = ""


@dataclass(frozen=True)
class Failure:
    """One thing that went wrong in a run: a failed dbt node, or a failed command seen only in its log."""

    command_id: int
    command: str
    message: str
    classification: Classification
    node: str | None = None  # dbt unique_id, None when only the log told us
    resource_type: str | None = None
    status: str | None = None  # run_results status: error, fail, runtime error
    relation_name: str | None = None
    failures: int | None = None  # failing rows of a data test
    owner: str | None = None  # from the manifest: config.meta.owner, meta.owner, group owner, tested node's
    tags: tuple[str, ...] = ()
    path: str | None = None  # the node's file, e.g. models/staging/stg_orders.sql
    schedule_owner: str | None = None  # the Bolt schedule's owner: who is pinged when no node owner maps


@dataclass
class Evidence:
    """Everything the worker learned about a finished run before deciding."""

    run_id: int
    state: str
    commands: list[Command]
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # dbt nodes with status warn
    skipped: int = 0
    adapter: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. "run_results.json stale, used the log"

    @property
    def failed_commands(self) -> list[Command]:
        return [c for c in self.commands if c.failed]


@dataclass(frozen=True)
class Decision:
    """What to do about a failed run, and why: a reason code for code to branch on (the Slack
    renderer), and one sentence a human can read (the "why" line, logs, the operations API)."""

    action: str  # "retry" | "trigger" | "none"
    reason: str
    attempt: int = 0  # which automatic retry this would be (1-based), 0 when not retrying
    backoff_seconds: float = 0.0
    code: Reason | None = None  # None only for decisions made by hand (tests, previews)
    detail: str = ""  # the reason's parameter worth a headline: the failures' categories for TRANSIENT


class Reason(TextEnum):
    """Why ``triage.decide`` decided as it did, one code per rule of its docstring."""

    CANCELED = "canceled"
    SUCCEEDED = "succeeded"
    DETERMINISTIC = "deterministic"
    UNRECOGNISED = "unrecognised"
    BUDGET_SPENT = "budget_spent"
    RULE_CAP = "rule_cap"
    NEVER_RECOVERED = "never_recovered"
    NO_SCHEDULE = "no_schedule"
    INFRA_ONLY = "infra_only"
    TRANSIENT = "transient"
    CONDITIONAL = "conditional"  # retrying once: load or the query itself
    FAILED_SAME_ON_RETRY = "failed_same_on_retry"  # a conditional failure repeated on its retry
    REPEATED_PREVIOUS_RUN = "repeated_previous_run"  # a conditional failure, as in the schedule's previous run
    LIMIT_REPEATED = "limit_repeated"  # a configured limit (timeout, memory) hit again: deterministic now
    SAME_ERROR_HISTORY = "same_error_history"  # same node, same error in the last K runs, never recovered
    PAUSED = "paused"  # a retry was due, but an operator paused automatic retries (triage.pauses)


def evidence_from_dict(d: dict) -> Evidence:
    """Rebuild Evidence stored as ``dataclasses.asdict`` JSON (to re-render a Slack parent later)."""

    def when(v):
        return datetime.fromisoformat(v) if v else None

    commands = [
        Command(id=c["id"], command=c["command"], return_code=c.get("return_code"), start=when(c.get("start")),
                end=when(c.get("end")), status=c.get("status"),
                resources=tuple(Resource(**r) for r in c.get("resources") or ()))
        for c in d.get("commands", [])
    ]
    failures = [
        Failure(**{**f, "classification": Classification(**f["classification"]), "tags": tuple(f.get("tags") or ())})
        for f in d.get("failures", [])
    ]
    return Evidence(run_id=d["run_id"], state=d["state"], commands=commands, failures=failures,
                    warnings=list(d.get("warnings", [])), skipped=d.get("skipped", 0), adapter=d.get("adapter"),
                    notes=list(d.get("notes", [])))


def evidence_to_dict(e: Evidence) -> dict:
    """JSON-safe form of Evidence (datetimes as ISO strings)."""
    from dataclasses import asdict

    d = asdict(e)
    for c in d["commands"]:
        for k in ("start", "end"):
            c[k] = c[k].isoformat() if c[k] else None
    return d
