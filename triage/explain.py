"""``triage classify``: what the service would conclude from artifacts on disk, without a run.

Give it ``run_results.json`` files, dbt log files and optionally a ``manifest.json``. Each
run_results file is one report (a log given beside a single run_results file is read with it, for
the adapter and as the fallback); a log alone is read the way the service reads a command log when
run_results.json is missing. The verdicts come from the same code the worker runs
(``evidence.failures_of`` and ``decide``), so tuning rules offline tunes the service.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from triage.artifacts import RunResults, adapter_from_log, adapter_from_run_results, parse_run_results
from triage.classify import RuleSet
from triage.config import RetryPolicy
from triage.decide import decide
from triage.errors import ArtifactError
from triage.evidence import CommandFacts, failures_of
from triage.models import Command, Decision, Evidence


@dataclass
class Report:
    path: str
    kind: str  # "run_results" | "log"
    evidence: Evidence
    decision: Decision
    run_results: RunResults | None = None
    owners: dict[str, Any] = field(default_factory=dict)  # node -> manifest.NodeInfo


def _kind(path: Path) -> tuple[str, Any]:
    """("run_results", parsed) | ("manifest", None) | ("log", text); ArtifactError when unreadable."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read: {exc.strerror}") from None
    head = raw[:4096].lstrip()
    if head.startswith(b"{"):
        schema = head.split(b"dbt_schema_version", 1)[-1][:120]
        if b"/manifest/" in schema:
            return "manifest", None
        try:
            return "run_results", parse_run_results(raw)
        except ArtifactError as exc:
            raise ArtifactError(f"{path}: {exc}") from None
    return "log", raw.decode("utf-8", errors="replace")


def explain(paths: list[str | Path], rules: RuleSet, adapter: str | None = None,
            policy: RetryPolicy | None = None) -> tuple[list[Report], list[str]]:
    """Reports for the given files, and notes about files that were not classified (manifests)."""
    policy = policy or RetryPolicy()
    runs, logs, manifests, notes = [], [], [], []
    for p in map(Path, paths):
        kind, content = _kind(p)
        {"run_results": runs, "log": logs, "manifest": manifests}[kind].append((p, content))

    shared_log = logs[0][1] if len(runs) == 1 and len(logs) == 1 else ""
    units = [(p, rr, shared_log, "run_results") for p, rr in runs]
    if not shared_log:
        units += [(p, None, text, "log") for p, text in logs]

    reports = []
    for path, rr, log, kind in units:
        name = f"dbt {rr.command}" if rr and rr.command else "dbt"
        command = Command(id=0, command=name, return_code=1)
        found = adapter or adapter_from_log(log) or (rr and adapter_from_run_results(rr)) or None
        evidence = Evidence(run_id=0, state="ERROR", commands=[command], adapter=found)
        evidence.failures = failures_of(CommandFacts(command, log, rr, None), found, rules, evidence)
        if rr is not None:
            evidence.notes.extend(rr.notes)
        reports.append(Report(str(path), kind, evidence, decide(evidence, 0, policy, "offline"), rr))

    if manifests and reports:
        from triage.manifest import read_node_info_path

        wanted = {f.node for r in reports for f in r.evidence.failures if f.node}
        for path, _ in manifests:
            info = read_node_info_path(path, wanted)
            for r in reports:
                r.owners.update({k: v for k, v in info.items() if k not in r.owners})
    elif manifests:
        notes += [f"{p}: a manifest; nothing to classify (give it with a run_results.json to see owners)"
                  for p, _ in manifests]
    return reports, notes


# --- output ---------------------------------------------------------------------------------------

def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _short(node: str | None) -> str:
    return node.split(".", 2)[-1] if node and node.count(".") >= 2 else (node or "(log)")


def render_text(reports: list[Report], notes: list[str], excerpt_width: int = 70) -> str:
    lines: list[str] = []
    for r in reports:
        rr = r.run_results
        facts = [f"adapter: {r.evidence.adapter or 'unknown'}"]
        if rr:
            facts[:0] = [f"dbt {rr.dbt_version or '?'}", f"schema v{rr.schema_version or '?'}", rr.command or "?"]
        lines.append(f"{r.path}  ({', '.join(facts)})")
        counts = rr.counts() if rr else {}
        if counts:
            lines.append("  " + " · ".join(f"{n} {status}" for status, n in sorted(counts.items())))
        rows = [("NODE", "STATUS", "VERDICT", "CATEGORY", "RULE", "CODE", "SOURCE", "OWNER", "EXCERPT")]
        references: dict[str, str] = {}
        for f in r.evidence.failures:
            c = f.classification
            owner = getattr(r.owners.get(f.node or ""), "owner", None) or "-"
            rows.append((_one_line(_short(f.node), 48), f.status or "-", c.verdict, c.category, c.rule or "-",
                         c.code or "-", c.source, owner, _one_line(c.excerpt or f.message, excerpt_width)))
            if c.rule and c.reference:
                references.setdefault(c.rule, c.reference)
        if not r.owners:
            rows = [row[:7] + row[8:] for row in rows]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
        if len(rows) == 1:
            lines.append("  (no failed node)")
        for rule, reference in references.items():  # where each rule's meaning comes from, to check it
            lines.append(f"  rule {rule}: {_one_line(reference, 200)}")
        for w in r.evidence.warnings:
            lines.append(f"  warning (not a failure): {_short(w)}")
        for note in r.evidence.notes:
            lines.append(f"  note: {note}")
        verb = {"retry": "would retry", "trigger": "would trigger again", "none": "would not retry"}[r.decision.action]
        lines.append(f"  → {verb}: {r.decision.reason}")
        lines.append("")
    lines.extend(notes)
    return "\n".join(lines).rstrip() + "\n"


def render_json(reports: list[Report], notes: list[str]) -> str:
    out = []
    for r in reports:
        rr = r.run_results
        out.append({
            "path": r.path,
            "kind": r.kind,
            "adapter": r.evidence.adapter,
            "dbt_version": rr.dbt_version if rr else None,
            "schema_version": rr.schema_version if rr else None,
            "counts": rr.counts() if rr else {},
            "failures": [
                {**{k: v for k, v in asdict(f).items() if k != "classification"}, **asdict(f.classification),
                 "owner": getattr(r.owners.get(f.node or ""), "owner", None)}
                for f in r.evidence.failures
            ],
            "warnings": r.evidence.warnings,
            "skipped": r.evidence.skipped,
            "notes": r.evidence.notes,
            "decision": {"action": r.decision.action, "reason": r.decision.reason},
        })
    return json.dumps({"reports": out, "notes": notes}, indent=2)
