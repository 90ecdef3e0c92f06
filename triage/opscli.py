"""``triage ls / show / events / replay / cancel / pause / resume``: the operations API from a shell.

It talks to the API over HTTP (``TRIAGE_API_URL``, default ``http://127.0.0.1:8000``) with a token
from the environment (``TRIAGE_API_TOKEN``, else ``TRIAGE_ADMIN_TOKEN``, else ``TRIAGE_READ_TOKEN``),
never from a flag, so that it stays out of shell history and ``ps``. Tables for people, ``--json``
for scripts (the API's own answer, unchanged). Exit status: 0 ok, 1 the API refused (its message is
printed), 2 usage or connection error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import requests

COMMANDS = ("ls", "show", "events", "replay", "cancel", "pause", "resume")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ApiFailure(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``2h``, ``1d`` → seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 2h, 1d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30):
        env = os.environ
        self.url = (url or env.get("TRIAGE_API_URL") or "http://127.0.0.1:8000").rstrip("/")
        self.token = token or env.get("TRIAGE_API_TOKEN") or env.get("TRIAGE_ADMIN_TOKEN") or env.get(
            "TRIAGE_READ_TOKEN") or ""
        self.timeout = timeout

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None) -> Any:
        resp = requests.request(method, f"{self.url}/api/v1{path}", json=body, params=params,
                                headers=self._headers(), timeout=self.timeout)
        try:
            doc = resp.json()
        except ValueError:
            doc = {"message": resp.text[:200]}
        if resp.status_code >= 400:
            raise ApiFailure(resp.status_code, f"HTTP {resp.status_code} {doc.get('error', '')}: "
                                               f"{doc.get('message', '')}")
        return doc

    def stream(self, triage_id: str) -> Iterator[dict[str, Any]]:
        """The triage's events as they happen, until it is final (SSE); a dropped connection is
        resumed where it stopped (``Last-Event-ID``)."""
        last: str | None = None
        for _ in range(100):  # reconnections, each after the server's hour or a network cut
            headers = self._headers() | ({"Last-Event-ID": last} if last else {})
            try:
                with requests.get(f"{self.url}/api/v1/triages/{triage_id}/stream", headers=headers, stream=True,
                                  timeout=(10, 120)) as resp:
                    if resp.status_code >= 400:
                        raise ApiFailure(resp.status_code, f"HTTP {resp.status_code}: {resp.text[:200]}")
                    for kind, event_id, doc in _messages(resp.iter_lines(decode_unicode=True)):
                        if kind == "end":
                            return
                        last = event_id or last
                        yield doc
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                continue


def _messages(lines: Iterator[str]) -> Iterator[tuple[str | None, str | None, dict[str, Any]]]:
    """(event type, id, data) of each SSE message; comments (heartbeats) skipped."""
    kind, event_id, data = None, None, []
    for line in lines:
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            yield kind, event_id, json.loads("\n".join(data))
            kind, event_id, data = None, None, []


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c)))[:60] for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines) + "\n"


def _event_line(e: dict[str, Any]) -> str:
    from datetime import datetime

    at = datetime.fromisoformat(e["at"]).strftime("%H:%M:%S")
    return f"{at}  {e['level']:<7}  {e['type']:<18}  {e['message']}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="triage", description="bolt-triage operations (TRIAGE_API_URL, token from env)")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list triages, newest first")
    for name in ("status", "schedule", "verdict", "category", "since", "until", "triggered-by", "cursor"):
        ls.add_argument(f"--{name}")
    ls.add_argument("--run-id", type=int)
    ls.add_argument("--limit", type=int, default=20)
    show = sub.add_parser("show", help="one triage")
    show.add_argument("id")
    ev = sub.add_parser("events", help="a triage's timeline")
    ev.add_argument("id")
    ev.add_argument("--follow", "-f", action="store_true", help="stream events until the triage is final")
    rp = sub.add_parser("replay", help="triage the same event again (guards hold)")
    rp.add_argument("ids", nargs="+", metavar="ID")
    cn = sub.add_parser("cancel", help="cancel a waiting triage or a scheduled retry")
    cn.add_argument("id")
    cn.add_argument("--reason", default="")
    pa = sub.add_parser("pause", help="pause automatic retries")
    pa.add_argument("schedule", nargs="?", default="*", help="schedule name or glob (default *)")
    group = pa.add_mutually_exclusive_group(required=True)
    group.add_argument("--for", dest="for_seconds", type=duration, help="e.g. 2h")
    group.add_argument("--until", help="ISO 8601 time")
    pa.add_argument("--reason", default="")
    rs = sub.add_parser("resume", help="resume automatic retries")
    rs.add_argument("schedule", nargs="?", help="the paused glob (default: every pause)")
    for sp in (ls, show, ev, rp, cn, pa, rs):
        sp.add_argument("--json", action="store_true", help="print the API's JSON answer")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    client = Client()
    if not client.token:
        print("triage: set TRIAGE_API_TOKEN (or TRIAGE_ADMIN_TOKEN / TRIAGE_READ_TOKEN)", file=sys.stderr)
        return 2
    try:
        return _run(args, client)
    except ApiFailure as exc:
        print(f"triage {args.command}: {exc}", file=sys.stderr)
        return 1
    except requests.RequestException as exc:
        print(f"triage {args.command}: cannot reach {client.url} ({exc.__class__.__name__})", file=sys.stderr)
        return 2


def _out(args, doc: Any, text: str) -> int:
    print(json.dumps(doc, indent=2) if args.json else text, end="" if not args.json else "\n")
    return 0


def _run(args, client: Client) -> int:
    if args.command == "ls":
        params = {k: v for k, v in {"status": args.status, "schedule": args.schedule, "verdict": args.verdict,
                                    "category": args.category, "since": args.since, "until": args.until,
                                    "triggered_by": args.triggered_by, "run_id": args.run_id,
                                    "limit": args.limit, "cursor": args.cursor}.items() if v is not None}
        doc = client.call("GET", "/triages", params=params)
        text = _table(doc["triages"], ["id", "status", "verdict", "schedule_name", "run_id", "triggered_by",
                                       "received_at"])
        if doc.get("next_cursor"):
            text += f"more: --cursor {doc['next_cursor']}\n"
        return _out(args, doc, text)
    if args.command == "show":
        doc = client.call("GET", f"/triages/{args.id}")
        decision = doc.get("decision") or {}
        text = "".join(f"{k:<16}{v}\n" for k, v in [
            ("id", doc["id"]), ("status", doc["status"]), ("verdict", doc["verdict"]), ("run", doc["run_id"]),
            ("schedule", doc["schedule_name"]), ("triggered by", doc["triggered_by"]),
            ("decision", f"{decision.get('action')} ({decision.get('reason_code')}): {decision.get('text')}"),
            ("retry", (doc["actions"].get("retry") or {}).get("new_run_id")),
            ("trace (ms)", doc["execution_trace"]), ("error", doc.get("error"))])
        if doc["failures"]:
            text += _table(doc["failures"], ["unique_id", "verdict", "category", "rule", "owner"])
        return _out(args, doc, text)
    if args.command == "events":
        if args.follow:
            for event in client.stream(args.id):
                print(json.dumps(event) if args.json else _event_line(event), flush=True)
            return 0
        doc = client.call("GET", f"/triages/{args.id}/events")
        return _out(args, doc, "".join(_event_line(e) + "\n" for e in doc["events"]))
    if args.command == "replay":
        doc = client.call("POST", "/triages/bulk-replay", {"ids": args.ids})
        rows = [{"id": r["id"], "new_triage_id": r.get("new_triage_id"), "reason": r.get("reason")}
                for r in doc["results"]]
        _out(args, doc, _table(rows, ["id", "new_triage_id", "reason"]))
        return 0 if doc["failed"] == 0 else 1
    if args.command == "cancel":
        doc = client.call("DELETE", f"/triages/{args.id}", {"reason": args.reason} if args.reason else None)
        return _out(args, doc, f"{doc['id']}: {doc['status']}\n")
    if args.command == "pause":
        body: dict[str, Any] = {"schedule": args.schedule, "reason": args.reason}
        body.update({"for_seconds": args.for_seconds} if args.for_seconds else {"until": args.until})
        doc = client.call("POST", "/retries/pause", body)
        return _out(args, doc, _table(doc["pauses"], ["schedule", "until", "reason"]))
    doc = client.call("POST", "/retries/resume", {"schedule": args.schedule} if args.schedule else {})
    return _out(args, doc, f"resumed: {', '.join(doc['resumed']) or 'nothing was paused'}\n")
