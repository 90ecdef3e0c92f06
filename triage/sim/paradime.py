"""A Paradime Bolt GraphQL simulator: a real HTTP server for tests and the demo.

Paradime offers no sandbox, so the triage service is exercised against this
stand-in. It speaks the operations of Paradime's Bolt API (``boltRunStatus``,
``boltCommand``, ``boltResourceUrl``, ``triggerBoltRun``, the three retry
mutations, ``cancelBoltRun``, ``boltScheduleName``) with the documented shapes,
serves artifacts through pre-signed URLs, and sends ``bolt.run.completed``
webhooks when the runs it created end, like the real service would.

Tests drive it in-process (``add_run``, ``queue_outcome``, ``fail_next`` ...);
other processes (the demo, a worker under test) drive it over HTTP under
``/_sim/``. Everything it knows sits behind one lock, so both can be used while
the server threads answer requests.

Run standalone with ``python -m triage.sim.paradime --port 8765``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import itertools
import json
import logging
import re
import secrets
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
from flask import Flask, Response, jsonify, request
from standardwebhooks.webhooks import Webhook
from werkzeug.serving import BaseWSGIServer, make_server

from triage.models import FAILED_STATUSES, INFRA_COMMAND_PREFIXES, TERMINAL_STATES
from triage.sim import serve_until_interrupted

log = logging.getLogger(__name__)

RUN_ID_START = 15500
COMMAND_ID_START = 59000
RESOURCE_ID_START = 306000
RESOURCE_URL_TTL = 300.0  # seconds a boltResourceUrl link stays valid
IN_PROGRESS_STATES = frozenset({"STARTING", "RUNNING"})
FAULT_KINDS = frozenset({"http_500", "http_502", "http_429", "timeout", "slow_answer", "graphql_error", "bad_json"})
RUN_RESULTS_PATH = "target/run_results.json"
INFRA_PREFIX_COMMANDS = ("git clone ...", "dbt deps")  # what every new run starts with
GRAPHQL_PATH = "/api/v1/simworkspace/graphql"
INFRA_ONLY_MESSAGE = (
    "Only infrastructure commands (git clone, dbt deps) failed, nothing to retry: "
    "trigger the schedule again instead"
)

# The query Paradime puts in each webhook command (`api_query`), as in its documented example.
COMMAND_QUERY = (
    "query BoltCommand {{\n    boltCommand(commandId: {id}) {{\n        command\n        startDttm\n"
    "        endDttm\n        stdout\n        stderr\n        returnCode\n        scheduleRunId\n"
    "        resources {{\n            id\n            path\n        }}\n    }}\n}}"
)
RESOURCE_QUERY = "query BoltResourceUrl {{\n boltResourceUrl(resourceId: {id}) {{\n ok\n url\n }}\n}}"


def format_dttm(value: datetime | None) -> str | None:
    """Bolt's time format: UTC without a timezone, microseconds (``2024-08-27 22:59:01.476387``)."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if value else None


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _iso_z(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


NOT_RUN = -10  # Bolt's return code for a command that did not run


def _is_infra(command: str) -> bool:
    return command.strip().startswith(INFRA_COMMAND_PREFIXES)


# --------------------------------------------------------------------------- data


@dataclass
class SimCommand:
    """What a command of a simulated run does: its outcome, logs and the artifacts it leaves.

    ``artifacts`` maps a path (``target/run_results.json``) to its content; a dict is JSON-encoded.
    ``duration`` only shapes the start/end times the API reports.
    """

    command: str
    return_code: int = 0
    stdout: str = ""
    stderr: str = ""
    artifacts: dict[str, bytes | str | dict] = field(default_factory=dict)
    duration: float = 1.0


@dataclass
class SimResource:
    """An artifact stored by the simulator, downloadable through a signed URL."""

    id: int
    path: str
    content: bytes


@dataclass
class RunCommand:
    """A command as a run holds it: ids and times assigned; the outcome stays hidden until it ends."""

    id: int
    command: str
    planned: SimCommand
    start: datetime | None = None
    end: datetime | None = None
    return_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    resources: list[SimResource] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.end is not None and self.return_code is not None

    @property
    def failed(self) -> bool:
        """-10 is Bolt's code for a command that did not run (see the boltRunStatus example)."""
        return self.return_code is not None and self.return_code not in (0, NOT_RUN)

    @property
    def status(self) -> str:
        """The webhook's lowercase status; only ``succeeded`` is documented, the rest is our guess."""
        if not self.finished:
            return "running"
        if self.return_code == NOT_RUN:
            return "skipped"
        return "succeeded" if self.return_code == 0 else "failed"

    def run_results(self) -> dict | None:
        for resource in self.resources:
            if resource.path == RUN_RESULTS_PATH:
                try:
                    return json.loads(resource.content)
                except ValueError:
                    return None
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "command": self.command,
            "start_dttm": format_dttm(self.start),
            "end_dttm": format_dttm(self.end),
            "return_code": self.return_code,
            "status": self.status,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "resources": [{"id": r.id, "path": r.path} for r in self.resources],
        }


@dataclass
class SimRun:
    """A Bolt run. ``retry_of`` and ``triggered_by`` record how the simulator came to create it."""

    id: int
    schedule_name: str
    branch: str
    state: str
    commands: list[RunCommand]
    created_at: float
    retry_of: int | None = None
    triggered_by: str | None = None  # the mutation that created it; None for add_run

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.id,
            "schedule_name": self.schedule_name,
            "branch": self.branch,
            "state": self.state,
            "retry_of": self.retry_of,
            "triggered_by": self.triggered_by,
            "commands": [c.to_dict() for c in self.commands],
        }


@dataclass
class Schedule:
    """A Bolt schedule; registered by the first ``add_run`` naming it, or by ``add_schedule``."""

    name: str
    commands: list[str]
    branch: str = "main"
    owner: str = "data-team@example.com"
    schedule: str = "0 6 * * *"
    source: str = "ui"

    @property
    def uuid(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bolt-schedule:{self.name}"))


@dataclass(frozen=True)
class Call:
    """One request the simulator received; ``variables`` holds the resolved arguments of the field."""

    operation: str
    variables: dict
    authorized: bool
    at: float
    query: str = ""


@dataclass
class _Fault:
    operation: str | None
    remaining: int
    kind: str
    delay: float


class GraphQLError(Exception):
    """Raised by an operation to answer ``{"data": {field: null}, "errors": [...]}``."""


# --------------------------------------------------------------------------- run_results.json

_ADAPTER_RESPONSES: dict[str, Callable[[], dict]] = {
    "postgres": lambda: {"_message": "SELECT 1", "code": "SELECT", "rows_affected": 1},
    "redshift": lambda: {"_message": "SELECT 1", "code": "SELECT", "rows_affected": 1},
    "snowflake": lambda: {"_message": "SUCCESS 1", "code": "SUCCESS", "rows_affected": 1,
                          "query_id": str(uuid.uuid4())},
    "bigquery": lambda: {"_message": "CREATE TABLE (1.0 rows, 0 processed)", "code": "CREATE TABLE",
                         "bytes_processed": 0, "bytes_billed": 0, "location": "US",
                         "project_id": "sim-project", "job_id": str(uuid.uuid4()), "slot_ms": 0},
    "databricks": lambda: {"_message": "OK", "query_id": str(uuid.uuid4())},
}


def _node_result(node: tuple | dict, at: datetime, adapter_type: str | None) -> dict:
    spec = dict(node) if isinstance(node, dict) else dict(zip(("unique_id", "status", "message"), node, strict=False))
    uid, status = spec["unique_id"], spec["status"]
    is_test = uid.startswith("test.")
    ran = status != "skipped"
    if is_test and status == "pass":
        failures: int | None = 0
    elif is_test and status in ("fail", "warn"):
        failures = 1
    else:
        failures = None
    failures = spec.get("failures", failures)
    default_messages = {
        "success": "SELECT 1" if adapter_type in ("postgres", "redshift") else "OK",
        "fail": f"Got {failures} result{'s' if failures != 1 else ''}, configured to fail if != 0",
        "warn": f"Got {failures} result{'s' if failures != 1 else ''}, configured to warn if != 0",
        "error": "Runtime Error",
    }
    ok = status in ("success", "pass", "fail", "warn")
    adapter_response = (_ADAPTER_RESPONSES.get(adapter_type or "", lambda: {"_message": "OK"})()
                        if ok else {})
    relation = None if is_test else '"analytics"."analytics"."{}"'.format(uid.rsplit(".", 1)[-1])
    timing = []
    if ran:
        timing = [
            {"name": "compile", "started_at": _iso_z(at),
             "completed_at": _iso_z(at + timedelta(seconds=0.02))},
            {"name": "execute", "started_at": _iso_z(at + timedelta(seconds=0.02)),
             "completed_at": _iso_z(at + timedelta(seconds=0.12))},
        ]
    return {
        "status": status,
        "timing": timing,
        "thread_id": "Thread-1 (worker)",
        "execution_time": 0.12 if ran else 0,
        "adapter_response": spec.get("adapter_response", adapter_response),
        "message": spec.get("message", default_messages.get(status)),
        "failures": failures,
        "unique_id": uid,
        "compiled": ran,
        "compiled_code": spec.get("compiled_code", "select 1"),
        "relation_name": spec.get("relation_name", relation),
    }


def make_run_results(
    nodes: list[tuple | dict],
    generated_at: datetime | str | None = None,
    dbt_version: str = "1.8.0",
    adapter_type: str | None = None,
    command: str = "run",
) -> dict:
    """Build a schema-v6 ``run_results.json`` dict shaped like the ones dbt 1.8 writes.

    ``nodes`` are ``(unique_id, status, message)`` tuples or dicts that may also carry
    ``failures``, ``relation_name``, ``adapter_response``. Real run_results.json files do not
    name their adapter; ``adapter_type`` only shapes ``adapter_response`` the way that adapter does.
    """
    if isinstance(generated_at, str):
        generated = generated_at
        start = _utcnow()
    else:
        end = generated_at or _utcnow()
        start = end - timedelta(seconds=0.15 * len(nodes) + 0.1)
        generated = _iso_z(end)
    results = [_node_result(node, start + timedelta(seconds=0.15 * i), adapter_type)
               for i, node in enumerate(nodes)]
    return {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "dbt_version": dbt_version,
            "generated_at": generated,
            "invocation_id": str(uuid.uuid4()),
            "env": {},
        },
        "results": results,
        "elapsed_time": round(0.15 * len(nodes) + 0.1, 6),
        "args": {"which": command, "invocation_command": f"dbt {command}"},
    }


def _healed_run_results(source: dict | None, command: str) -> dict:
    """The run_results.json of a successful re-run: every node that failed or was skipped now passes."""
    which = command.split()[1] if len(command.split()) > 1 else "run"
    if not source:
        return make_run_results([], command=which)
    nodes = []
    for result in source.get("results", []):
        uid, status = result.get("unique_id", ""), result.get("status")
        if status in FAILED_STATUSES or status == "skipped":
            status = "pass" if uid.startswith("test.") else "success"
        node = {"unique_id": uid, "status": status}
        if "relation_name" in result:
            node["relation_name"] = result["relation_name"]
        nodes.append(node)
    version = source.get("metadata", {}).get("dbt_version", "1.8.0")
    return make_run_results(nodes, dbt_version=version, command=which)


def _success_command(command: str, source: RunCommand | None = None) -> SimCommand:
    """A command that succeeds; a dbt command gets a run_results.json healed from ``source``'s."""
    if command.startswith("git clone"):
        return SimCommand(command, stdout="Cloning into 'repo'...\n")
    if command.startswith("dbt deps"):
        return SimCommand(command, stdout="Installing packages\nUp to date!\n")
    if not command.startswith("dbt "):
        return SimCommand(command, stdout="done\n")
    results = _healed_run_results(source.run_results() if source else None, command)
    total = len(results["results"])
    return SimCommand(
        command,
        stdout=f"Completed successfully\n\nDone. PASS={total} WARN=0 ERROR=0 SKIP=0 TOTAL={total}\n",
        artifacts={RUN_RESULTS_PATH: results},
    )


def _with_infra(commands: list[SimCommand]) -> list[SimCommand]:
    """Every Bolt run starts by cloning the repository and installing packages."""
    return [_success_command(c) for c in INFRA_PREFIX_COMMANDS] + commands


# --------------------------------------------------------------------------- GraphQL parsing

_FIELD_RE = re.compile(r"\{\s*([A-Za-z_]\w*)\s*")
_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"')
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_NAME_RE = re.compile(r"[A-Za-z_]\w*")


class _ArgParser:
    """Reads a GraphQL argument list ``(name: value, ...)``: literals or ``$variables``.

    Only what the Bolt API needs: strings, numbers, booleans, null, enums, lists.
    """

    def __init__(self, text: str, pos: int, variables: dict):
        self.text, self.pos, self.variables = text, pos, variables

    def _skip(self) -> None:
        while self.pos < len(self.text) and (self.text[self.pos].isspace() or self.text[self.pos] == ","):
            self.pos += 1

    def _peek(self) -> str:
        self._skip()
        if self.pos >= len(self.text):
            raise GraphQLError("Syntax Error: unexpected end of query")
        return self.text[self.pos]

    def _match(self, pattern: re.Pattern[str]) -> str:
        m = pattern.match(self.text, self.pos)
        if not m:
            raise GraphQLError(f"Syntax Error: unexpected {self.text[self.pos]!r} at {self.pos}")
        self.pos = m.end()
        return m.group(0)

    def arguments(self) -> dict[str, Any]:
        if self._peek() != "(":
            return {}
        self.pos += 1
        args: dict[str, Any] = {}
        while self._peek() != ")":
            name = self._match(_NAME_RE)
            if self._peek() != ":":
                raise GraphQLError(f"Syntax Error: expected ':' after {name}")
            self.pos += 1
            args[name] = self.value()
        self.pos += 1
        return args

    def value(self) -> Any:
        c = self._peek()
        if c == '"':
            return json.loads(self._match(_STRING_RE))
        if c == "$":
            self.pos += 1
            return self.variables.get(self._match(_NAME_RE))
        if c == "[":
            self.pos += 1
            items = []
            while self._peek() != "]":
                items.append(self.value())
            self.pos += 1
            return items
        if c == "-" or c.isdigit():
            number = self._match(_NUMBER_RE)
            return float(number) if any(ch in number for ch in ".eE") else int(number)
        name = self._match(_NAME_RE)
        return {"true": True, "false": False, "null": None}.get(name, name)


def parse_query(query: str, variables: dict | None = None) -> tuple[str, dict[str, Any]]:
    """Find the top-level field of a query and its resolved arguments.

    Selection sets are not read: the simulator answers with the whole object.
    """
    m = _FIELD_RE.search(query)
    if not m:
        raise GraphQLError("Syntax Error: no field selected")
    parser = _ArgParser(query, m.end(), variables or {})
    return m.group(1), parser.arguments()


def _int_arg(args: dict, name: str) -> int:
    value = args.get(name)
    if value is None:
        raise GraphQLError(f"Argument '{name}' of type 'Int!' is required but not provided")
    if not isinstance(value, int) or isinstance(value, bool):
        raise GraphQLError(f"Argument '{name}' has invalid value {value!r}: Int cannot represent it")
    return value


def _str_arg(args: dict, name: str, required: bool = True) -> str | None:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise GraphQLError(f"Argument '{name}' of type 'String!' is required but not provided")
    return value


# --------------------------------------------------------------------------- the simulator


class ParadimeSimulator:
    """A Paradime workspace in a thread: GraphQL endpoint, artifact URLs, webhooks, control API."""

    make_run_results = staticmethod(make_run_results)

    def __init__(
        self,
        api_key: str = "sim-key",
        api_secret: str = "sim-secret",
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_target: str | None = None,
        webhook_secret: str | None = None,
        include_run_fields: bool = True,
        run_duration: float = 0.3,
        latency: float = 0.0,
    ):
        self._api_key = api_key
        self._api_secret = api_secret
        self.host = host
        self.port = port
        self.webhook_target = webhook_target
        self.webhook_secret = webhook_secret
        self.include_run_fields = include_run_fields
        self.run_duration = run_duration
        #: Seconds added before answering every API call and artifact download (not the /_sim/ control
        #: API): a real workspace is tens of milliseconds away, and bench/pipeline.py measures the
        #: service's overhead beyond that I/O.
        self.latency = latency
        self.delayed = 0  # requests that were answered after ``latency`` (API calls and downloads)

        self._lock = threading.RLock()
        self._url_key = secrets.token_bytes(32)  # signs artifact URLs; new per simulator
        self._run_ids = itertools.count(RUN_ID_START)
        self._command_ids = itertools.count(COMMAND_ID_START)
        self._resource_ids = itertools.count(RESOURCE_ID_START)
        self._runs: dict[int, SimRun] = {}
        self._commands: dict[int, tuple[int, RunCommand]] = {}  # command id -> (run id, command)
        self._resources: dict[int, SimResource] = {}
        self._schedules: dict[str, Schedule] = {}
        self._outcomes: dict[str, deque[list[SimCommand]]] = {}
        self._faults: list[_Fault] = []
        self._not_ready: dict[int, int | None] = {}  # resource id -> answers left (None: forever)
        self._calls: list[Call] = []
        self._timers: list[threading.Timer] = []

        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.app = self._build_app()
        self._operations: dict[str, Callable[[dict], dict]] = {
            "boltRunStatus": self._op_run_status,
            "boltCommand": self._op_command,
            "boltResourceUrl": self._op_resource_url,
            "triggerBoltRun": self._op_trigger,
            "retryBoltRun": self._op_retry,
            "retryAllBoltRun": self._op_retry_all,
            "retryBoltRunFromFailure": self._op_retry_from_failure,
            "cancelBoltRun": self._op_cancel,
            "boltScheduleName": self._op_schedule_name,
            "listBoltSchedules": self._op_list_schedules,
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ParadimeSimulator:
        self._server = make_server(self.host, self.port, self.app, threaded=True)
        self.port = self._server.server_port
        # A short poll interval makes stop() quick: tests start and stop many simulators.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="paradime-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ParadimeSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def api_secret(self) -> str:
        return self._api_secret

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}{GRAPHQL_PATH}"

    # ------------------------------------------------------------------ runs

    def add_schedule(self, name: str, commands: list[str], branch: str = "main", **fields: str) -> None:
        """Register a schedule that has no run yet, so ``triggerBoltRun`` can start one."""
        with self._lock:
            self._schedules[name] = Schedule(name, list(commands), branch, **fields)

    def add_run(
        self,
        schedule_name: str,
        commands: list[SimCommand],
        state: str | None = None,
        branch: str = "main",
    ) -> int:
        """Record a run as if Bolt had executed it; returns its id.

        ``state`` None derives ERROR/SUCCESS from the return codes. An in-progress state
        (``RUNNING``) leaves the commands without end time or return code until ``set_state``
        moves the run to a terminal state.
        """
        with self._lock:
            if schedule_name not in self._schedules:
                self.add_schedule(schedule_name, [c.command for c in commands if not _is_infra(c.command)],
                                  branch)
            run = self._create_run(schedule_name, commands, branch)
            if state not in IN_PROGRESS_STATES:
                self._complete(run, state)
            elif state != "RUNNING":
                run.state = state
            return run.id

    def set_state(self, run_id: int, state: str) -> None:
        """Force a run's state; a terminal state also finishes its unfinished commands as planned."""
        with self._lock:
            run = self._run(run_id)
            if state in TERMINAL_STATES and run.state in IN_PROGRESS_STATES:
                self._complete(run, state)
            else:
                run.state = state

    def get_run(self, run_id: int) -> SimRun:
        """A copy of the run (KeyError if unknown): safe to read while the server works."""
        with self._lock:
            return copy.deepcopy(self._run(run_id))

    @property
    def runs(self) -> list[SimRun]:
        with self._lock:
            return [copy.deepcopy(r) for r in self._runs.values()]

    def queue_outcome(self, schedule_name: str, commands: list[SimCommand]) -> None:
        """Say what the next run created for the schedule (by retry or trigger) will be, verbatim.

        The list is the run's complete command list (include ``git clone``/``dbt deps`` if wanted).
        Queued outcomes are used first in, first out. With none queued every command succeeds.
        """
        with self._lock:
            self._outcomes.setdefault(schedule_name, deque()).append(list(commands))

    def _run(self, run_id: int) -> SimRun:
        try:
            return self._runs[run_id]
        except KeyError:
            raise KeyError(f"no run {run_id}") from None

    def _create_run(
        self,
        schedule_name: str,
        commands: list[SimCommand],
        branch: str,
        retry_of: int | None = None,
        triggered_by: str | None = None,
    ) -> SimRun:
        """A RUNNING run whose commands have start times (laid out to end now) but no outcome yet."""
        run_commands = [RunCommand(next(self._command_ids), c.command, c) for c in commands]
        self._lay_out(run_commands, _utcnow())
        for c in run_commands:
            c.end = None
        run = SimRun(next(self._run_ids), schedule_name, branch, "RUNNING", run_commands, time.time(),
                     retry_of, triggered_by)
        self._runs[run.id] = run
        for c in run_commands:
            self._commands[c.id] = (run.id, c)
        return run

    @staticmethod
    def _lay_out(commands: list[RunCommand], end_at: datetime) -> None:
        """Give commands consecutive start/end times (by their durations) so that the last ends at end_at."""
        gap = timedelta(seconds=0.1)
        t = end_at - sum((timedelta(seconds=c.planned.duration) + gap for c in commands), timedelta())
        for c in commands:
            t += gap
            c.start, c.end = t, t + timedelta(seconds=c.planned.duration)
            t = c.end

    def _complete(self, run: SimRun, state: str | None) -> None:
        """End a run: unfinished commands take their planned outcome and artifacts."""
        self._lay_out(run.commands, _utcnow())
        for c in run.commands:
            if c.return_code is not None:
                continue
            c.return_code, c.stdout, c.stderr = c.planned.return_code, c.planned.stdout, c.planned.stderr
            for path, content in c.planned.artifacts.items():
                if run.triggered_by and isinstance(content, dict) and isinstance(content.get("metadata"), dict):
                    # A run a mutation created writes its artifacts as it ends; a queued outcome's
                    # run_results.json was built earlier, so stamp it now (add_run keeps what it is given).
                    content = {**content, "metadata": {**content["metadata"], "generated_at": _iso_z(c.end)}}
                c.resources.append(self._store_resource(path, content))
        run.state = state or ("ERROR" if any(c.failed for c in run.commands) else "SUCCESS")

    def _store_resource(self, path: str, content: bytes | str | dict) -> SimResource:
        if isinstance(content, dict):
            data = json.dumps(content).encode()
        elif isinstance(content, str):
            data = content.encode()
        else:
            data = bytes(content)
        resource = SimResource(next(self._resource_ids), path, data)
        self._resources[resource.id] = resource
        return resource

    def _start_new_run(
        self,
        schedule_name: str,
        commands: list[SimCommand],
        branch: str,
        retry_of: int | None,
        operation: str,
    ) -> int:
        """Create a run the way Bolt does for a mutation: RUNNING now, ended by a timer later."""
        queued = self._outcomes.get(schedule_name)
        if queued:
            commands = queued.popleft()
        run = self._create_run(schedule_name, commands, branch, retry_of, operation)
        timer = threading.Timer(self.run_duration, self._finish, (run.id,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()
        return run.id

    def _finish(self, run_id: int) -> None:
        """Timer callback: end the run, then announce it like Paradime would."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.state not in IN_PROGRESS_STATES:
                return  # canceled or forced meanwhile
            self._complete(run, None)
            target = self.webhook_target
        if target:
            try:
                self.deliver(run_id, target=target)
            except requests.RequestException as exc:
                log.warning("webhook for run %s to %s failed: %s", run_id, target, exc)

    # ------------------------------------------------------------------ faults and calls

    def fail_next(self, operation: str | None = None, times: int = 1, kind: str = "http_500",
                  delay: float = 3.0) -> None:
        """Make the next ``times`` requests for ``operation`` fail in the way ``kind`` says.

        ``operation`` None matches any GraphQL operation; ``"artifact"`` matches artifact
        downloads. ``timeout`` sleeps ``delay`` seconds and then answers normally; ``slow_answer``
        carries the operation out at once (a mutation creates its run) and answers after ``delay``.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(_Fault(operation, times, kind, delay))

    def resource_not_ready(self, resource_id: int, times: int | None = None) -> None:
        """Make ``boltResourceUrl`` answer ``{ok: false, url: null}`` (``times`` answers, or forever)."""
        with self._lock:
            self._not_ready[resource_id] = times

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_of(self, operation: str) -> list[Call]:
        return [c for c in self.calls if c.operation == operation]

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def _take_fault(self, operation: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.operation == operation or (fault.operation is None and operation != "artifact"):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    @staticmethod
    def _fault_response(fault: _Fault) -> Response | None:
        """The failure to answer with, or None to answer normally (after a delay, for ``timeout``)."""
        if fault.kind == "timeout":
            time.sleep(fault.delay)
            return None
        if fault.kind == "slow_answer":
            return None  # carried out by the caller, which sleeps before answering
        if fault.kind == "http_500":
            return _json_response({"errors": [{"message": "Internal Server Error"}]}, 500)
        if fault.kind == "http_502":
            return Response("<html><body><h1>502 Bad Gateway</h1></body></html>", 502, mimetype="text/html")
        if fault.kind == "http_429":
            response = _json_response({"errors": [{"message": "Too Many Requests"}]}, 429)
            response.headers["Retry-After"] = "1"
            return response
        if fault.kind == "graphql_error":
            return _json_response({"data": None, "errors": [{"message": "Internal error (simulated)"}]}, 200)
        return Response('{"data": {"boltRun', 200, mimetype="application/json")  # bad_json

    # ------------------------------------------------------------------ artifacts

    def resource_url(self, resource_id: int, ttl: float = RESOURCE_URL_TTL) -> str:
        """A pre-signed download URL like ``boltResourceUrl`` returns (a negative ttl makes it expired)."""
        expires = int(time.time() + ttl)
        sig = self._sign(resource_id, expires)
        return f"{self.base_url}/artifacts/{resource_id}?expires={expires}&sig={sig}"

    def _sign(self, resource_id: int, expires: int) -> str:
        return hmac.new(self._url_key, f"{resource_id}.{expires}".encode(), hashlib.sha256).hexdigest()

    # ------------------------------------------------------------------ webhooks

    def webhook_payload(self, run_id: int, event: str = "bolt.run.completed") -> dict:
        """The webhook body for a run, in the documented shape (keys sorted at both levels)."""
        with self._lock:
            run = self._run(run_id)
            commands = [
                {
                    "api_query": COMMAND_QUERY.format(id=c.id),
                    "command": c.command,
                    "end_dttm": format_dttm(c.end) if c.finished else None,
                    "id": c.id,
                    "json_resources": [
                        {"id": r.id, "path": r.path, "resource_query": RESOURCE_QUERY.format(id=r.id)}
                        for r in c.resources
                        if r.path.endswith(".json")
                    ],
                    "return_code": c.return_code,
                    "start_dttm": format_dttm(c.start),
                    "status": c.status,
                }
                for c in run.commands
            ]
            body: dict[str, Any] = {"api_url": self.graphql_url, "commands": commands}
            if self.include_run_fields:
                body.update(schedule_name=run.schedule_name, run_id=run.id, state=run.state,
                            branch=run.branch, event_type=event)
            return dict(sorted(body.items()))

    def deliver(
        self,
        run_id: int,
        event: str = "bolt.run.completed",
        target: str | None = None,
        signed: bool = True,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """POST the run's webhook to ``target`` (or ``webhook_target``), signed per Standard Webhooks.

        A ``webhook-id`` in ``headers`` is signed instead of a fresh one (to replay a delivery);
        other given headers override the computed ones (e.g. a wrong signature).
        """
        url = target or self.webhook_target
        if not url:
            raise ValueError("no webhook target: pass target= or set webhook_target")
        body = json.dumps(self.webhook_payload(run_id, event), sort_keys=True)
        extra = dict(headers or {})
        sent = {"Content-Type": "application/json"}
        if signed and self.webhook_secret:
            lowered = {k.lower(): v for k, v in extra.items()}
            msg_id = lowered.get("webhook-id") or f"msg_{uuid.uuid4().hex}"
            now = datetime.now(timezone.utc)
            sent["webhook-id"] = msg_id
            sent["webhook-timestamp"] = str(int(now.timestamp()))
            sent["webhook-signature"] = Webhook(self.webhook_secret).sign(msg_id, now, body)
        sent.update(extra)
        return requests.post(url, data=body.encode(), headers=sent, timeout=10)

    # ------------------------------------------------------------------ GraphQL operations

    def _op_run_status(self, args: dict) -> dict:
        run = self._known_run(_int_arg(args, "runId"))
        return {
            "ok": True,
            "state": run.state,
            "commands": [
                {"id": c.id, "command": c.command, "startDttm": format_dttm(c.start),
                 "endDttm": format_dttm(c.end) if c.finished else None, "stdout": c.stdout,
                 "stderr": c.stderr, "returnCode": c.return_code}
                for c in run.commands
            ],
        }

    def _op_command(self, args: dict) -> dict:
        command_id = _int_arg(args, "commandId")
        if command_id not in self._commands:
            raise GraphQLError(f"Command {command_id} not found")
        run_id, c = self._commands[command_id]
        return {
            "command": c.command,
            "startDttm": format_dttm(c.start),
            "endDttm": format_dttm(c.end) if c.finished else None,
            "stdout": c.stdout,
            "stderr": c.stderr,
            "returnCode": c.return_code,
            "scheduleRunId": run_id,
            "resources": [{"id": r.id, "path": r.path} for r in c.resources],
            "ok": True,
        }

    def _op_resource_url(self, args: dict) -> dict:
        resource_id = _int_arg(args, "resourceId")
        if resource_id not in self._resources:
            raise GraphQLError(f"Resource {resource_id} not found")
        if resource_id in self._not_ready:
            left = self._not_ready[resource_id]
            if left is not None:
                if left <= 1:
                    del self._not_ready[resource_id]
                else:
                    self._not_ready[resource_id] = left - 1
            return {"ok": False, "url": None}
        return {"ok": True, "url": self.resource_url(resource_id)}

    def _op_trigger(self, args: dict) -> dict:
        schedule = self._known_schedule(_str_arg(args, "scheduleName"))
        commands = args.get("commands")
        if commands is not None and not (
            isinstance(commands, list) and all(isinstance(c, str) for c in commands)
        ):
            raise GraphQLError("Argument 'commands' must be a list of strings")
        branch = _str_arg(args, "branch", required=False) or schedule.branch
        latest = self._latest_run(schedule.name)
        sources = {c.command: c for c in latest.commands} if latest else {}
        planned = [_success_command(text, sources.get(text)) for text in (commands or schedule.commands)]
        run_id = self._start_new_run(schedule.name, _with_infra(planned), branch, None, "triggerBoltRun")
        return {"runId": run_id}

    def _op_retry(self, args: dict) -> dict:
        original = self._known_run(_int_arg(args, "scheduleRunId"))
        self._check_retryable(original)
        failed = [c for c in original.commands if c.failed and not _is_infra(c.command)]
        planned = self._retry_commands(failed, failed)
        run_id = self._start_new_run(original.schedule_name, planned, original.branch, original.id,
                                     "retryBoltRun")
        return {"ok": True, "runId": run_id}

    def _op_retry_all(self, args: dict) -> dict:
        original = self._known_run(_int_arg(args, "scheduleRunId"))
        if original.state in IN_PROGRESS_STATES:
            raise GraphQLError("Cannot retry a run that is still in progress")
        commands = [c for c in original.commands if not _is_infra(c.command)]
        if not commands:
            raise GraphQLError("Schedule run has no commands to retry")
        planned = _with_infra([_success_command(c.command, c) for c in commands])
        run_id = self._start_new_run(original.schedule_name, planned, original.branch, original.id,
                                     "retryAllBoltRun")
        return {"ok": True, "runId": run_id}

    def _op_retry_from_failure(self, args: dict) -> dict:
        schedule = self._known_schedule(_str_arg(args, "scheduleName"))
        failed_runs = [r for r in self._runs.values()
                       if r.schedule_name == schedule.name and r.state in ("ERROR", "FAILED")]
        if not failed_runs:
            raise GraphQLError(f"No failed run to retry for schedule '{schedule.name}'")
        original = max(failed_runs, key=lambda r: r.id)
        self._check_retryable(original)
        rest = [c for c in original.commands if not _is_infra(c.command)]
        first = next(i for i, c in enumerate(rest) if c.failed)
        planned = self._retry_commands(rest[first:], [c for c in rest if c.failed])
        run_id = self._start_new_run(schedule.name, planned, original.branch, original.id,
                                     "retryBoltRunFromFailure")
        return {"runId": run_id}

    def _op_cancel(self, args: dict) -> dict:
        run = self._known_run(_int_arg(args, "scheduleRunId"))
        if run.state not in IN_PROGRESS_STATES:
            return {"ok": False}
        now = _utcnow()
        for c in run.commands:
            if c.return_code is None:
                c.end, c.return_code, c.stderr = now, -1, "Run canceled"
        run.state = "CANCELED"
        return {"ok": True}

    def _op_schedule_name(self, args: dict) -> dict:
        schedule = self._known_schedule(_str_arg(args, "scheduleName"))
        latest = self._latest_run(schedule.name)
        return {
            "ok": True,
            "latestRunId": latest.id if latest else None,
            "commands": list(schedule.commands),
            "owner": schedule.owner,
            "schedule": schedule.schedule,
            "uuid": schedule.uuid,
            "source": schedule.source,
        }

    def _op_list_schedules(self, args: dict) -> dict:
        offset, limit = _int_arg(args, "offset"), _int_arg(args, "limit")
        schedules = sorted(self._schedules.values(), key=lambda s: s.name)
        page = []
        for schedule in schedules[offset:offset + limit]:
            latest = self._latest_run(schedule.name)
            page.append({
                "name": schedule.name, "schedule": schedule.schedule, "owner": schedule.owner,
                "lastRunAt": _iso_z(datetime.fromtimestamp(latest.created_at, timezone.utc)) if latest else None,
                "lastRunState": latest.state if latest else None, "nextRunAt": None,
                "id": zlib.crc32(schedule.name.encode()) % 1_000_000, "uuid": schedule.uuid, "source": schedule.source,
                "commands": list(schedule.commands), "gitBranch": schedule.branch,
            })
        return {"schedules": page, "totalCount": len(schedules)}

    def _known_run(self, run_id: int) -> SimRun:
        if run_id not in self._runs:
            raise GraphQLError(f"Schedule run {run_id} not found")
        return self._runs[run_id]

    def _known_schedule(self, name: str | None) -> Schedule:
        if name not in self._schedules:
            raise GraphQLError(f"Bolt schedule '{name}' not found")
        return self._schedules[name]

    def _latest_run(self, schedule_name: str) -> SimRun | None:
        runs = [r for r in self._runs.values() if r.schedule_name == schedule_name]
        return max(runs, key=lambda r: r.id) if runs else None

    @staticmethod
    def _check_retryable(run: SimRun) -> None:
        """The refusals ``retryBoltRun`` documents, in its order."""
        if run.state in IN_PROGRESS_STATES:
            raise GraphQLError("Cannot retry a run that is still in progress")
        if not run.commands:
            raise GraphQLError("Schedule run has no commands to retry")
        failed = [c for c in run.commands if c.failed]
        if not failed:
            raise GraphQLError("All commands were successful, nothing to retry")
        if all(_is_infra(c.command) for c in failed):
            raise GraphQLError(INFRA_ONLY_MESSAGE)

    @staticmethod
    def _retry_commands(commands: list[RunCommand], failed: list[RunCommand]) -> list[SimCommand]:
        """Infra commands, then ``commands`` with the first failed dbt command replaced by ``dbt retry``."""
        first_dbt = next((c for c in failed if c.command.strip().startswith("dbt ")), None)
        planned = [_success_command("dbt retry" if c is first_dbt else c.command, c) for c in commands]
        return _with_infra(planned)

    # ------------------------------------------------------------------ HTTP

    def _authorized(self) -> bool:
        key = request.headers.get("X-API-KEY", "")
        secret = request.headers.get("X-API-SECRET", "")
        return hmac.compare_digest(key.encode(), self._api_key.encode()) and hmac.compare_digest(
            secret.encode(), self._api_secret.encode()
        )

    def _graphql(self) -> Response:
        authorized = self._authorized()
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            self._record(Call("", {}, authorized, time.time()))
            return _json_response({"errors": [{"message": "Must provide query string."}]}, 400)
        query, variables = body["query"], body.get("variables") or {}
        field_name, error = "", None
        try:
            field_name, args = parse_query(query, variables if isinstance(variables, dict) else {})
        except GraphQLError as exc:
            args, error = dict(variables) if isinstance(variables, dict) else {}, str(exc)
        self._record(Call(field_name, args, authorized, time.time(), query))

        # Faults come before the credential check: a failing gateway answers before the API does.
        fault = self._take_fault(field_name)
        if fault and (response := self._fault_response(fault)) is not None:
            return response
        if not authorized:
            return _json_response({"errors": [{"message": "Unauthorized"}]}, 401)
        if error is None and field_name not in self._operations:
            error = f"Cannot query field '{field_name}' on type 'Query'"
        if error is None:
            try:
                with self._lock:
                    answer = _json_response({"data": {field_name: self._operations[field_name](args)}})
                if fault and fault.kind == "slow_answer":
                    time.sleep(fault.delay)
                return answer
            except GraphQLError as exc:
                error = str(exc)
        if not field_name:
            return _json_response({"data": None, "errors": [{"message": error}]})
        errors = [{"message": error, "path": [field_name]}]
        return _json_response({"data": {field_name: None}, "errors": errors})

    def _artifact(self, resource_id: int) -> Response:
        expires, sig = request.args.get("expires", ""), request.args.get("sig", "")
        valid = expires.isdigit() and hmac.compare_digest(
            sig.encode(), self._sign(resource_id, int(expires)).encode()
        )
        self._record(Call("artifact", {"resourceId": resource_id}, valid, time.time()))
        fault = self._take_fault("artifact")
        if fault and (response := self._fault_response(fault)) is not None:
            return response
        with self._lock:
            resource = self._resources.get(resource_id)
        if resource is None:
            return Response("Not Found", 404, mimetype="text/plain")
        if not valid or int(expires) < time.time():
            return Response("Request has expired or the signature does not match", 403, mimetype="text/plain")
        mimetype = "application/json" if resource.path.endswith(".json") else "text/plain"
        return Response(resource.content, 200, mimetype=mimetype)

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _build_app(self) -> Flask:
        app = Flask("paradime-sim")
        app.add_url_rule(GRAPHQL_PATH, "graphql", self._graphql, methods=["POST"])

        @app.before_request
        def network_latency() -> None:
            if self.latency and not request.path.startswith("/_sim/"):
                with self._lock:
                    self.delayed += 1
                time.sleep(self.latency)

        app.add_url_rule("/artifacts/<int:resource_id>", "artifact", self._artifact, methods=["GET"])

        @app.get("/_sim/health")
        def health() -> Response:
            return jsonify(ok=True)

        @app.post("/_sim/runs")
        def add_run() -> Response:
            body = request.get_json(force=True)
            run_id = self.add_run(body["schedule_name"], _commands_from_json(body.get("commands", [])),
                                  body.get("state"), body.get("branch", "main"))
            return jsonify(run_id=run_id)

        @app.get("/_sim/runs/<int:run_id>")
        def get_run(run_id: int) -> Response:
            try:
                return jsonify(self.get_run(run_id).to_dict())
            except KeyError:
                return _json_response({"error": f"no run {run_id}"}, 404)

        @app.post("/_sim/outcomes")
        def outcomes() -> Response:
            body = request.get_json(force=True)
            self.queue_outcome(body["schedule_name"], _commands_from_json(body.get("commands", [])))
            return jsonify(ok=True)

        @app.post("/_sim/fail")
        def fail() -> Response:
            body = request.get_json(force=True)
            self.fail_next(body.get("operation"), int(body.get("times", 1)), body.get("kind", "http_500"),
                           float(body.get("delay", 3.0)))
            return jsonify(ok=True)

        @app.get("/_sim/calls")
        def calls() -> Response:
            return jsonify([asdict(c) for c in self.calls])

        @app.post("/_sim/deliver")
        def deliver() -> Response:
            body = request.get_json(force=True)
            try:
                response = self.deliver(int(body["run_id"]), body.get("event", "bolt.run.completed"))
            except (requests.RequestException, ValueError, KeyError) as exc:
                return _json_response({"status_code": None, "error": str(exc)}, 502)
            return jsonify(status_code=response.status_code)

        return app


def _json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, mimetype="application/json")


def _commands_from_json(items: list[dict]) -> list[SimCommand]:
    return [
        SimCommand(
            command=item["command"],
            return_code=int(item.get("return_code", 0)),
            stdout=item.get("stdout", ""),
            stderr=item.get("stderr", ""),
            artifacts=dict(item.get("artifacts") or {}),
            duration=float(item.get("duration", 1.0)),
        )
        for item in items
    ]


def main(argv: list[str] | None = None) -> None:
    """Serve the simulator in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description="Paradime Bolt GraphQL simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default="sim-key", help="X-API-KEY to accept")
    parser.add_argument("--api-secret", default="sim-secret", help="X-API-SECRET to accept")
    parser.add_argument("--webhook-target", help="URL to POST bolt.run.completed webhooks to")
    parser.add_argument("--webhook-secret", help="whsec_... secret to sign webhooks with")
    parser.add_argument("--run-duration", type=float, default=2.0, help="seconds a new run stays RUNNING")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API call and download")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    sim = ParadimeSimulator(args.api_key, args.api_secret, args.host, args.port, args.webhook_target,
                            args.webhook_secret, run_duration=args.run_duration, latency=args.latency).start()
    print(f"Paradime simulator at {sim.base_url} (GraphQL: {sim.graphql_url})", flush=True)
    serve_until_interrupted(sim)


if __name__ == "__main__":
    main()
