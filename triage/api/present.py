"""A triage as the API shows it: the record (``triage.store``), its chain, its story, its ledger.

Why a separate view rather than the record itself: the record is the workers' working state (JSON
fields, epoch floats, the whole evidence); the API promises a stable shape (ISO times, the decision
and the failures per node, the actions taken, the execution trace in milliseconds).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from triage import logs
from triage.api.query import story_statuses, triggered_by, verdict_of
from triage.ledger import Ledger
from triage.lifecycle import StoryStatus
from triage.store import Store

MAX_EXCERPT = 1000  # characters of a failure's message in a bundle: never a whole log


def iso(value: float | None) -> str | None:
    return datetime.fromtimestamp(value, timezone.utc).isoformat() if value else None


def slack_permalink(channel: str | None, ts: str | None) -> str | None:
    """Slack's archive link of a message (works for channel ids, which the Web API answers with)."""
    if not channel or not ts:
        return None
    return f"https://slack.com/archives/{channel.lstrip('#')}/p{ts.replace('.', '')}"


def failures(record: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for f in (record.get("evidence") or {}).get("failures") or []:
        c = f["classification"]
        out.append({"unique_id": f.get("node"), "command": f.get("command"), "verdict": c["verdict"],
                    "category": c["category"], "rule": c.get("rule"), "excerpt": logs.redact(c.get("excerpt") or ""),
                    "source": c.get("source"), "owner": f.get("owner")})
    return out


def execution_trace(record: dict[str, Any], trace: dict[str, float]) -> dict[str, int | None]:
    """Where the time went, in ms: queue wait (admitted → first start), the calls by service, the
    classification, and the total (admitted → finished, or → now while it runs)."""
    received = record.get("received_at")
    started = trace.get("first_started_at")
    end = record.get("finished_at")
    def ms(v: float | None) -> int | None:
        return round(v) if v is not None else None
    return {
        "queue_wait": ms((started - received) * 1000) if started and received else None,
        "paradime": ms(trace.get("paradime", 0.0)),
        "download": ms(trace.get("download", 0.0)),
        "classify": ms(trace.get("classify", 0.0)),
        "slack": ms(trace.get("slack", 0.0)),
        "total": ms((end - received) * 1000) if end and received else None,
    }


class Presenter:
    def __init__(self, store: Store, ledger: Ledger):
        self.store, self.ledger = store, ledger

    def view(self, triage_id: str, record: dict[str, Any], story_status: StoryStatus | None = None,
             with_story: bool = True) -> dict[str, Any]:
        run_id = record.get("run_id")
        link = self.store.link(run_id) if run_id is not None else None
        origin = record.get("origin") or (link.origin if link else run_id)
        story = self.store.story(origin) if with_story and origin is not None else None
        if story_status is None and story is not None and self.store.has_story(origin):
            story_status = StoryStatus(story.status)
        verdict = verdict_of(record, story_status)
        retry = record.get("retry") or {}
        decision = None
        if record.get("action"):
            decision = {"action": record["action"], "reason_code": record.get("reason_code"),
                        "text": record.get("reason")}
        slack = None
        if story is not None and story.slack_ts and (link is None or link.attempt == 0):
            slack = {"channel": story.slack_channel, "ts": story.slack_ts,
                     "permalink": slack_permalink(story.slack_channel, story.slack_ts)}
        return {
            "id": triage_id,
            "status": record.get("status"),
            "verdict": str(verdict) if verdict else None,
            "attempt": record.get("attempts", 1),
            "run_id": run_id,
            "schedule_name": record.get("schedule_name"),
            "triggered_by": str(triggered_by(record)),
            "parent_triage_id": record.get("parent_triage_id"),
            "event": record.get("event"),
            "decision": decision,
            "failures": failures(record),
            "actions": {
                "retry": ({"mutation": "triggerBoltRun" if record.get("action") == "trigger" else "retryBoltRun",
                           "status": retry.get("status"), "new_run_id": retry.get("new_run_id")} if retry else None),
                "slack": slack,
            },
            "chain": ({"original_run_id": link.origin, "attempt": link.attempt, "parent_run_id": link.parent}
                      if link else None),
            "error": record.get("error"),
            "received_at": iso(record.get("received_at")),
            "started_at": iso(record.get("started_at")),
            "finished_at": iso(record.get("finished_at")),
            "next_check_at": iso(record.get("next_check_at")) if record.get("status") == "waiting" else None,
            "execution_trace": execution_trace(record, self.ledger.trace(triage_id)),
        }

    def views(self, triage_ids: list[str]) -> list[dict[str, Any]]:
        """Views of several triages (those whose records have expired are left out)."""
        records = self.store.get_triages(triage_ids)
        stories = story_statuses(self.store, records)
        return [self.view(t, r, s) for t, r, s in zip(triage_ids, records, stories, strict=True) if r]

    def bundle(self, triage_id: str, record: dict[str, Any]) -> dict[str, Any]:
        """Everything needed to understand one triage offline; never a secret or a whole log."""
        evidence = record.get("evidence") or {}
        failed = evidence.get("failures") or []
        run_id = record.get("run_id")
        return {
            "triage": self.view(triage_id, record),
            "events": [e.to_dict() for e in self.ledger.events(triage_id)],
            "evidence": {
                "state": evidence.get("state"),
                "adapter": evidence.get("adapter"),
                "notes": [logs.redact(n) for n in evidence.get("notes") or []],
                "commands": [{"id": c.get("id"), "command": c.get("command"), "return_code": c.get("return_code"),
                              "failed": bool(c.get("return_code")) and c.get("return_code") != -10,
                              "log_excerpts": [logs.redact(f.get("message") or "")[:MAX_EXCERPT]
                                               for f in failed if f.get("command_id") == c.get("id")
                                               and f["classification"].get("source") == "log"]}
                             for c in evidence.get("commands") or []],
                "run_results": [{"unique_id": f.get("node"), "status": f.get("status"),
                                 "message": logs.redact(f.get("message") or "")[:MAX_EXCERPT],
                                 "failures": f.get("failures")}
                                for f in failed if f["classification"].get("source") == "run_results"],
                "rules_matched": sorted({c["rule"] for f in failed if (c := f["classification"]).get("rule")}),
                "warnings": evidence.get("warnings") or [],
                "skipped": evidence.get("skipped", 0),
            },
            "calls": self.ledger.calls(triage_id),
            "guards": {"retry": str(self.store.retries.state(run_id) or "") or None if run_id is not None else None,
                       "triaged_by": self.store.run_owner(run_id) if run_id is not None else None},
        }
