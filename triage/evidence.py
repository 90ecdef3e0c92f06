"""Gather the evidence for a finished run: what failed, and what each failure says.

For every failed command: its details and log (``boltCommand``), then its
``target/run_results.json`` (``boltResourceUrl`` + GET). Failed nodes come from
run_results.json; when that file is missing, unreadable or stale (written before
the command started: dbt died before running nodes), the command's log is read instead.
Every failure is then classified, with the adapter known from the artifacts or the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from triage.artifacts import (
    RunResults,
    adapter_from_log,
    adapter_from_run_results,
    extract_log_errors,
    parse_run_results,
)
from triage.classify import RuleSet, classify, classify_node
from triage.errors import ArtifactError, UpstreamError
from triage.manifest import read_node_info
from triage.models import Command, Evidence, Failure

if TYPE_CHECKING:  # the offline tools use this module without loading requests
    from triage.paradime import ParadimeClient, RunStatus

log = logging.getLogger(__name__)

RUN_RESULTS = "run_results.json"
MANIFEST = "manifest.json"


class ArtifactsNotReady(Exception):
    """Paradime lists an artifact but cannot hand it out yet: look again later."""


@dataclass
class CommandFacts:
    """What one failed command left behind: its log and, when usable, its run_results.json."""

    command: Command
    log: str
    run_results: RunResults | None
    note: str | None


def _run_results_of(client: ParadimeClient, command: Command, max_bytes: int,
                    wait: bool) -> tuple[RunResults | None, str | None]:
    resource = next((r for r in command.resources if r.path.rsplit("/", 1)[-1] == RUN_RESULTS), None)
    if resource is None:
        return None, f"`{command.command}` left no run_results.json; read its log"
    url = client.resource_url(resource.id)
    if url is None:
        if wait:
            raise ArtifactsNotReady(f"run_results.json of command {command.id} is not ready yet")
        return None, f"`{command.command}`: run_results.json never became ready; read its log"
    try:
        parsed = parse_run_results(client.download(url, max_bytes))
    except (ArtifactError, UpstreamError) as exc:
        return None, f"`{command.command}`: run_results.json unusable ({exc}); read its log"
    if parsed.is_stale(command.start):
        return None, f"`{command.command}`: run_results.json predates the command (stale); read its log"
    return parsed, None


def _facts(client: ParadimeClient, command: Command, status_log: str, max_bytes: int, wait: bool) -> CommandFacts:
    detail = client.command(command.id)
    merged = Command(
        id=command.id,
        command=command.command or detail.command.command,
        return_code=command.return_code if command.return_code is not None else detail.command.return_code,
        start=command.start or detail.command.start,
        end=command.end or detail.command.end,
        resources=detail.command.resources or command.resources,
    )
    rr, note = _run_results_of(client, merged, max_bytes, wait)
    return CommandFacts(merged, detail.log or status_log, rr, note)


def gather(client: ParadimeClient, run_id: int, status: RunStatus, rules: RuleSet, max_bytes: int,
           wait_for_artifacts: bool = True, manifest_max_bytes: int = 0) -> Evidence:
    """Raise ArtifactsNotReady while Paradime cannot hand out a listed artifact and ``wait_for_artifacts``."""
    evidence = Evidence(run_id=run_id, state=status.state, commands=list(status.commands))
    facts = [_facts(client, c, status.logs.get(c.id, ""), max_bytes, wait_for_artifacts)
             for c in evidence.failed_commands]

    adapter = None
    for f in facts:
        adapter = adapter or adapter_from_log(f.log) or (f.run_results and adapter_from_run_results(f.run_results))
    evidence.adapter = adapter

    for f in facts:
        if f.note:
            evidence.notes.append(f.note)
        evidence.failures.extend(failures_of(f, adapter, rules, evidence))

    if evidence.state in ("ERROR", "FAILED") and not evidence.failed_commands:
        evidence.notes.append(f"run state is {evidence.state} but every command returned 0")
    if manifest_max_bytes and any(f.node for f in evidence.failures):
        _attach_owners(client, [f.command for f in facts], evidence, manifest_max_bytes)
    return evidence


def _attach_owners(client: ParadimeClient, commands: list[Command], evidence: Evidence, max_bytes: int) -> None:
    """Owner, tags and file of each failed node, from the run's manifest.json (streamed, best effort:
    without it the triage is as good, only the owners are missing)."""
    resource = next((r for c in commands for r in c.resources if r.path.rsplit("/", 1)[-1] == MANIFEST), None)
    if resource is None:
        return
    nodes = {f.node for f in evidence.failures if f.node}
    try:
        url = client.resource_url(resource.id)
        if url is None:
            evidence.notes.append("manifest.json not ready; owners unknown")
            return
        with client.stream(url, max_bytes) as stream:
            info = read_node_info(stream, nodes)
    except (UpstreamError, ArtifactError) as exc:
        evidence.notes.append(f"owners unknown: manifest.json unusable ({exc})")
        return
    evidence.failures = [
        replace(f, owner=i.owner, tags=i.tags, path=i.path) if (i := info.get(f.node or "")) else f
        for f in evidence.failures
    ]


def failures_of(f: CommandFacts, adapter: str | None, rules: RuleSet, evidence: Evidence) -> list[Failure]:
    """Classified failures of one command: its failed nodes, else the errors in its log.

    Warnings and skipped nodes are counted into ``evidence``; the service and ``triage classify``
    both use this, so the offline verdicts are the service's verdicts.
    """
    cmd = f.command
    rr = f.run_results
    if rr is not None:
        evidence.warnings.extend(n.unique_id for n in rr.warned)
        evidence.skipped += len(rr.skipped)
        if rr.failed:
            return [
                Failure(
                    command_id=cmd.id, command=cmd.command, message=n.message or "",
                    classification=classify_node(n.status, n.resource_type, n.message, adapter=adapter,
                                                 rules=rules, source="run_results"),
                    node=n.unique_id, resource_type=n.resource_type, status=n.status,
                    relation_name=n.relation_name, failures=n.failures,
                )
                for n in rr.failed
            ]
        evidence.notes.append(f"`{cmd.command}` failed but run_results.json shows no failed node; read its log")

    errors = extract_log_errors(f.log)
    if not errors:
        message = f"`{cmd.command}` exited with code {cmd.return_code} and left no log"
        return [Failure(cmd.id, cmd.command, message, classify(message, adapter=adapter, rules=rules, source="log"))]
    return [
        Failure(
            command_id=cmd.id, command=cmd.command, message=f"{e.title}\n{e.message}".strip(),
            classification=classify(f"{e.title}\n{e.message}", adapter=adapter, rules=rules, source="log"),
            node=e.node,
        )
        for e in errors
    ]
