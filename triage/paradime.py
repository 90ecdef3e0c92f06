"""Client for Paradime's Bolt GraphQL API (shared/paradime/bolt-api.md).

Credentials (``X-API-KEY``/``X-API-SECRET``) go only to the configured endpoint;
artifact downloads use the pre-signed URL Paradime hands out, with no credentials.
Error messages name the operation, never the endpoint URL (its path holds the
workspace token) nor the pre-signed URL's query string.

Queries are retried with bounded backoff on timeouts, connection errors, 5xx, 429 and
GraphQL ``errors[]``. Mutations create runs, so they are retried only when the request
surely did not reach Paradime (connection refused, 429); a timeout or 5xx after sending
raises ``AmbiguousMutation`` and the caller must not send it again.

Artifact downloads (``stream``/``download``) follow redirects by hand, under this policy:

* at most ``MAX_REDIRECTS`` (3) redirects (301, 302, 303, 307, 308), each a GET without credentials;
* only to ``http`` and ``https`` URLs (``file:``, ``ftp:`` … are refused), and never from ``https``
  down to ``http``;
* every URL connected to (the pre-signed one and each redirect target) must be on a public address:
  its host is resolved and each resolved IP checked with ``ipaddress``; loopback, link-local,
  private, unspecified, multicast and other non-global addresses are refused, except the kinds the
  configured ``PARADIME_API_ENDPOINT`` host itself resolves to (the simulator and the tests run on
  127.0.0.1: then loopback is allowed, private networks still are not).

A download is also bounded in time as a whole (``paradime.download_seconds``): a server that drips a
byte now and then never trips the per-read timeout. A body cut short of its ``Content-Length`` or a
``Content-Encoding`` that does not decode is an ``UpstreamError`` naming it, like a size over the cap.

A refusal is an ``UpstreamError`` (not retryable) with a one-line reason, so the triage falls back to
the command's log. The check resolves the name before ``requests`` connects; a DNS answer that changes
in between (rebinding) is not prevented.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, DecodeError, NewConnectionError, ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

from triage import instrument, ledger
from triage.config import ParadimeSettings
from triage.errors import UpstreamError
from triage.ledger import Service
from triage.models import Command, Resource
from triage.webhook import parse_time

log = logging.getLogger(__name__)

#: The longest wait between two attempts inside a job (Retry-After included).
MAX_PAUSE_SECONDS = 5.0

RUN_STATUS = (
    "query BoltRunStatus($runId: Int!) { boltRunStatus(runId: $runId) "
    "{ ok state commands { id command startDttm endDttm stdout stderr returnCode } } }"
)
COMMAND = (
    "query BoltCommand($commandId: Int!) { boltCommand(commandId: $commandId) "
    "{ command startDttm endDttm stdout stderr returnCode scheduleRunId resources { id path } ok } }"
)
RESOURCE_URL = "query BoltResourceUrl($resourceId: Int!) { boltResourceUrl(resourceId: $resourceId) { ok url } }"
RETRY = "mutation RetryBoltRun($scheduleRunId: Int!) { retryBoltRun(scheduleRunId: $scheduleRunId) { ok runId } }"
LIST_SCHEDULES = (
    "query ListBoltSchedules($offset: Int!, $limit: Int!, $showInactive: Boolean!) "
    "{ listBoltSchedules(offset: $offset, limit: $limit, showInactive: $showInactive) { totalCount } }"
)
LIST_SCHEDULE_NAMES = (
    "query ListBoltSchedules($offset: Int!, $limit: Int!, $showInactive: Boolean!) "
    "{ listBoltSchedules(offset: $offset, limit: $limit, showInactive: $showInactive) "
    "{ schedules { name owner } totalCount } }"
)
SCHEDULE = (
    "query BoltScheduleName($scheduleName: String!) { boltScheduleName(scheduleName: $scheduleName) "
    "{ ok latestRunId owner } }"
)
TRIGGER = "mutation TriggerBoltRun($scheduleName: String!) { triggerBoltRun(scheduleName: $scheduleName) { runId } }"


class AmbiguousMutation(UpstreamError):
    """A mutation was sent but its outcome is unknown: it may have created a run."""

    def __init__(self, message: str):
        super().__init__(message, retryable=False)


@dataclass(frozen=True)
class RunStatus:
    state: str
    commands: tuple[Command, ...]
    logs: dict[int, str]  # command id -> stdout + stderr


@dataclass(frozen=True)
class CommandDetail:
    command: Command
    schedule_run_id: int | None
    log: str  # stdout, then stderr


def redact_url(url: str) -> str:
    """Scheme and host only: paths and queries of Paradime URLs carry tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.netloc else "<url>"


class ParadimeClient:
    def __init__(self, settings: ParadimeSettings, session: requests.Session | None = None,
                 backoff_base: float = 1.0):
        if not settings.configured:
            raise ValueError("Paradime endpoint and credentials are required")
        self.settings = settings
        self.session = session or requests.Session()
        self.backoff_base = backoff_base

    # --- transport --------------------------------------------------------------------------
    #
    # HTTP-level retries are urllib3's ``Retry`` on two sessions: queries retry connect and read
    # errors, 429 and 5xx (honouring ``Retry-After``); mutations retry only what surely never reached
    # Paradime (a connection never made, a 429) and never a read error or a 5xx. Every wait inside a
    # job is at most MAX_PAUSE_SECONDS: a longer outage sends the whole triage back to RQ's scheduler
    # (``paradime.recheck_seconds``). Answers that are HTTP 200 but unusable (GraphQL ``errors[]``,
    # not JSON, no data) are retried here, the same bounded number of times.

    def _session(self, mutation: bool) -> requests.Session:
        attempts, base = self.settings.max_attempts - 1, self.backoff_base
        if mutation:
            retry = _BoundedRetry(total=attempts, connect=attempts, read=0, other=0, status=attempts,
                                  status_forcelist=(429,), allowed_methods=None, backoff_factor=base,
                                  backoff_max=MAX_PAUSE_SECONDS, raise_on_status=False)
        else:
            retry = _BoundedRetry(total=attempts, connect=attempts, read=attempts, other=attempts,
                                  status=attempts, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None,
                                  backoff_factor=base, backoff_max=MAX_PAUSE_SECONDS, raise_on_status=False)
        session = requests.Session()
        session.mount("https://", HTTPAdapter(max_retries=retry))
        session.mount("http://", HTTPAdapter(max_retries=retry))
        return session

    @cached_property
    def _query_session(self) -> requests.Session:
        return self._session(mutation=False)

    @cached_property
    def _mutation_session(self) -> requests.Session:
        return self._session(mutation=True)

    @instrument.upstream("paradime")
    def _post(self, operation: str, query: str, variables: dict[str, Any], *, mutation: bool) -> dict[str, Any]:
        attempts = self.settings.max_attempts
        for attempt in range(1, attempts + 1):
            doc = self._send(operation, {"query": query, "variables": variables}, mutation)
            problem = _unusable(doc, operation)
            if problem is None:
                return doc["data"][operation]
            if mutation:  # Paradime answered: a refusal is definite, anything else may have been applied
                if problem.startswith("GraphQL error"):
                    raise UpstreamError(f"Paradime {operation}: {problem}", retryable=False)
                raise AmbiguousMutation(f"Paradime {operation}: {problem}; it may have been applied")
            if attempt < attempts:
                log.warning("Paradime %s: %s (attempt %d/%d), retrying", operation, problem, attempt, attempts)
                self._pause(attempt)
        raise UpstreamError(f"Paradime {operation}: {problem} after {attempts} attempts")

    def _pause(self, attempt: int) -> None:
        time.sleep(min(self.backoff_base * 2 ** (attempt - 1), MAX_PAUSE_SECONDS))

    def _send(self, operation: str, body: dict[str, Any], mutation: bool) -> Any:
        """One request (with urllib3's retries); the decoded JSON answer, or None when it is not JSON."""
        headers = {"X-API-KEY": self.settings.api_key or "", "X-API-SECRET": self.settings.api_secret or ""}
        session = self._mutation_session if mutation else self._query_session
        timeout, attempts = self.settings.timeout_seconds, self.settings.max_attempts
        try:
            with ledger.upstream(Service.PARADIME, operation) as call:
                resp = session.post(self.settings.endpoint, json=body, headers=headers, timeout=timeout)
                call.status = str(resp.status_code)
        except requests.ConnectionError as exc:
            if _never_sent(exc):
                raise UpstreamError(f"Paradime {operation}: could not connect after {attempts} attempts") from None
            if mutation:
                raise AmbiguousMutation(f"Paradime {operation}: no answer ({_what(exc, timeout)}); it may have been "
                                        "applied") from None
            raise UpstreamError(f"Paradime {operation}: {_what(exc, timeout)} after {attempts} attempts") from None
        except requests.RequestException as exc:
            if mutation:
                raise AmbiguousMutation(f"Paradime {operation}: request failed ({exc.__class__.__name__}); "
                                        "it may have been applied") from None
            raise UpstreamError(f"Paradime {operation}: request failed ({exc.__class__.__name__})") from None
        status = resp.status_code
        if status == 429:
            raise UpstreamError(f"Paradime {operation}: rate limited (HTTP 429) after {attempts} attempts")
        if status >= 500:
            if mutation:
                raise AmbiguousMutation(f"Paradime {operation}: HTTP {status}; it may have been applied")
            raise UpstreamError(f"Paradime {operation}: HTTP {status} after {attempts} attempts")
        if status in (401, 403):
            raise UpstreamError(f"Paradime {operation}: HTTP {status}: the API key/secret were refused",
                                retryable=False)
        if status >= 400:
            raise UpstreamError(f"Paradime {operation}: HTTP {status}", retryable=False)
        try:
            return resp.json()
        except ValueError:
            return None

    # --- operations -------------------------------------------------------------------------

    def schedule_count(self) -> int:
        """How many active schedules the key sees: the cheapest authenticated query, to check the key."""
        data = self._post("listBoltSchedules", LIST_SCHEDULES, {"offset": 0, "limit": 1, "showInactive": False},
                          mutation=False)
        count = data.get("totalCount")
        if isinstance(count, bool) or not isinstance(count, int):
            raise UpstreamError("Paradime listBoltSchedules: answer has no totalCount", retryable=False)
        return count

    def list_schedules(self, offset: int, limit: int) -> tuple[list[tuple[str, str | None]], int]:
        """One page of active schedules as (name, owner), and how many there are in all."""
        data = self._post("listBoltSchedules", LIST_SCHEDULE_NAMES,
                          {"offset": offset, "limit": limit, "showInactive": False}, mutation=False)
        page = []
        for item in data.get("schedules") or []:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]:
                owner = item.get("owner")
                page.append((item["name"], owner if isinstance(owner, str) and owner else None))
        total = data.get("totalCount")
        return page, total if isinstance(total, int) and not isinstance(total, bool) else len(page)

    def schedule(self, name: str) -> tuple[int | None, str | None]:
        """A schedule's latest run id and owner (``boltScheduleName``)."""
        data = self._post("boltScheduleName", SCHEDULE, {"scheduleName": name}, mutation=False)
        latest, owner = data.get("latestRunId"), data.get("owner")
        return (latest if isinstance(latest, int) and not isinstance(latest, bool) else None,
                owner if isinstance(owner, str) and owner else None)

    def run_status(self, run_id: int) -> RunStatus:
        data = self._post("boltRunStatus", RUN_STATUS, {"runId": run_id}, mutation=False)
        state = data.get("state")
        if not isinstance(state, str):
            raise UpstreamError(f"Paradime boltRunStatus({run_id}): answer has no state", retryable=False)
        commands, logs = [], {}
        for i, item in enumerate(data.get("commands") or []):
            command = _command(item, f"boltRunStatus({run_id}).commands[{i}]")
            commands.append(command)
            logs[command.id] = _log(item)
        return RunStatus(state=state.upper(), commands=tuple(commands), logs=logs)

    def command(self, command_id: int) -> CommandDetail:
        data = self._post("boltCommand", COMMAND, {"commandId": command_id}, mutation=False)
        item = dict(data, id=command_id)
        command = _command(item, f"boltCommand({command_id})")
        run_id = data.get("scheduleRunId")
        return CommandDetail(
            command=command,
            schedule_run_id=run_id if isinstance(run_id, int) else None,
            log=_log(data),
        )

    def resource_url(self, resource_id: int) -> str | None:
        """The short-lived download URL, or None while Paradime says the resource is not ready."""
        data = self._post("boltResourceUrl", RESOURCE_URL, {"resourceId": resource_id}, mutation=False)
        url = data.get("url")
        if not data.get("ok") or not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return None
        return url

    @instrument.upstream("artifacts")
    def download(self, url: str, max_bytes: int) -> bytes:
        """GET a pre-signed artifact URL whole (no credentials), refusing bodies over ``max_bytes``;
        timeouts, connection errors, 5xx and 429 are tried again (bounded)."""
        for attempt in range(1, self.settings.max_attempts):
            try:
                return self._read_all(url, max_bytes)
            except UpstreamError as exc:
                if not exc.retryable:
                    raise
            self._pause(attempt)
        return self._read_all(url, max_bytes)  # the last attempt's error, if any, is the answer

    def _read_all(self, url: str, max_bytes: int) -> bytes:
        with ledger.upstream(Service.DOWNLOAD, "artifact"), self.stream(url, max_bytes) as body:
            return b"".join(iter(lambda: body.read(64 * 1024), b""))

    @contextmanager
    def stream(self, url: str, max_bytes: int) -> Iterator[_Capped]:
        """A pre-signed artifact URL as a file-like object, for streaming parsers (a manifest can
        be hundreds of MB). Reading past ``max_bytes`` raises UpstreamError; not retried here.
        Redirects are followed under the policy of the module docstring."""
        where = redact_url(url)
        resp = self._get_artifact(url, where)
        with resp:
            if resp.status_code != 200:
                raise UpstreamError(f"artifact download from {where}: HTTP {resp.status_code}",
                                    retryable=resp.status_code >= 500 or resp.status_code == 429)
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_big(where, max_bytes)
            resp.raw.decode_content = True
            yield _Capped(resp.raw, max_bytes, where, time.monotonic() + self.settings.download_seconds)

    def _get_artifact(self, url: str, where: str) -> requests.Response:
        """GET ``url`` (streamed), following at most MAX_REDIRECTS redirects by hand, each target checked."""
        current = url
        for hop in range(MAX_REDIRECTS + 1):
            refusal = self._refusal(current, where)
            if refusal:
                target = f" redirect to {redact_url(current)}" if hop else ""
                raise UpstreamError(f"artifact download from {where}:{target} refused: {refusal}", retryable=False)
            try:
                resp = self.session.get(current, timeout=self.settings.timeout_seconds, stream=True,
                                        allow_redirects=False)
            except requests.Timeout:
                raise UpstreamError(f"artifact download from {where}: no answer within "
                                    f"{self.settings.timeout_seconds:g}s") from None
            except requests.RequestException as exc:
                raise UpstreamError(f"artifact download from {where}: request failed "
                                    f"({exc.__class__.__name__})") from None
            location = resp.headers.get("Location")
            if resp.status_code not in _REDIRECT_STATUSES or not location:
                return resp
            resp.close()
            following = urljoin(current, location.strip())
            if urlsplit(current).scheme == "https" and urlsplit(following).scheme.lower() == "http":
                raise UpstreamError(f"artifact download from {where}: redirect to {redact_url(following)} refused: "
                                    "https to http downgrade", retryable=False)
            current = following
        raise UpstreamError(f"artifact download from {where}: more than {MAX_REDIRECTS} redirects; not followed",
                            retryable=False)

    def _refusal(self, url: str, where: str) -> str | None:
        """Why the download policy forbids connecting to ``url``, or None when it may."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            return f"{scheme or 'scheme-less'} URL (http and https only)"
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            return "malformed host or port"
        if not host:
            return "URL without a host"
        addresses = _resolve(host, port or (443 if scheme == "https" else 80))
        if addresses is None:
            raise UpstreamError(f"artifact download from {where}: cannot resolve {redact_url(url)}")
        allowed = self._endpoint_kinds
        for address in addresses:
            kind = _non_public_kind(address)
            if kind and kind not in allowed:
                if _is_ip_literal(host):
                    return f"{kind} address {host}"
                return f"{host} resolves to {kind} address {address}"
        return None

    @cached_property
    def _endpoint_kinds(self) -> frozenset[str]:
        """The non-public kinds of address (loopback, private, …) of the configured endpoint's host, which
        artifact downloads may therefore use too (a local simulator, a workspace behind a private network)."""
        parts = urlsplit(self.settings.endpoint or "")
        try:
            port = parts.port
        except ValueError:
            port = None
        found = _resolve(parts.hostname, port or 443) if parts.hostname else None
        return frozenset(kind for address in found or () if (kind := _non_public_kind(address)))

    def retry_run(self, run_id: int) -> int:
        data = self._post("retryBoltRun", RETRY, {"scheduleRunId": run_id}, mutation=True)
        return _new_run_id(data, "retryBoltRun")

    def trigger_run(self, schedule_name: str) -> int:
        data = self._post("triggerBoltRun", TRIGGER, {"scheduleName": schedule_name}, mutation=True)
        return _new_run_id(data, "triggerBoltRun")


class _Capped:
    """A file-like ``read()`` over a streamed response that refuses to read more than ``limit`` bytes or
    to go on past ``deadline`` (``time.monotonic()``). Each read takes what one receive brings
    (``read1``), so a body that drips is given up on at its deadline, at most one socket timeout late."""

    def __init__(self, raw: Any, limit: int, where: str, deadline: float):
        self.raw, self.limit, self.where, self.deadline, self.count = raw, limit, where, deadline, 0
        self.started = time.monotonic()

    def read(self, size: int = 64 * 1024) -> bytes:
        if size == 0:  # parsers probe with read(0) to learn bytes vs str
            return b""
        if time.monotonic() > self.deadline:
            raise UpstreamError(f"artifact download from {self.where}: not finished within "
                                f"{self.deadline - self.started:.0f}s ({self.count} bytes read)", retryable=False)
        try:
            chunk = self.raw.read1(size if size > 0 else 64 * 1024)
        except DecodeError:
            encoding = self.raw.headers.get("Content-Encoding", "")
            raise UpstreamError(f"artifact download from {self.where}: could not decompress "
                                f"(Content-Encoding: {encoding})", retryable=False) from None
        except ProtocolError:  # IncompleteRead among others: the connection ended mid-body
            raise UpstreamError(f"artifact download from {self.where}: connection closed before the end of "
                                f"the body ({self.count} bytes read)") from None
        except (requests.RequestException, OSError, ValueError) as exc:  # timeouts, resets
            raise UpstreamError(f"artifact download from {self.where}: {exc.__class__.__name__}") from None
        self.count += len(chunk)
        if self.count > self.limit:
            raise _too_big(self.where, self.limit)
        return chunk


def _unusable(doc: Any, operation: str) -> str | None:
    """Why an HTTP 200 answer cannot be used, or None."""
    if not isinstance(doc, dict):
        return "answer is not a JSON object"
    if doc.get("errors"):
        return "GraphQL error: " + _messages(doc["errors"])
    if not isinstance(doc.get("data"), dict) or doc["data"].get(operation) is None:
        return f"answer has no data.{operation}"
    return None


class _BoundedRetry(Retry):
    """urllib3's Retry, with a ``Retry-After`` longer than MAX_PAUSE_SECONDS cut to it: a job does not
    sleep for minutes; if the limit persists, the triage goes back to RQ's scheduler."""

    def get_retry_after(self, response):
        after = super().get_retry_after(response)
        return None if after is None else min(after, MAX_PAUSE_SECONDS)


def _never_sent(exc: requests.ConnectionError) -> bool:
    """urllib3's own distinction: a connect error (refused, DNS, connect timeout) means the request
    never left; anything else (a read timeout, a dropped connection) means it may have arrived."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError wraps the last error
    return isinstance(reason, NewConnectionError | ConnectTimeoutError) or isinstance(exc, requests.ConnectTimeout)


def _what(exc: requests.ConnectionError, timeout: float) -> str:
    if isinstance(exc, requests.Timeout) or isinstance(getattr(exc.args[0] if exc.args else None, "reason", None),
                                                        ReadTimeoutError):
        return f"no answer within {timeout:g}s"
    return "connection lost"


#: How many redirects an artifact download follows (see the module docstring for the whole policy).
MAX_REDIRECTS = 3
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _resolve(host: str, port: int) -> list[IPAddress] | None:
    """Every address ``host`` resolves to (an IP literal is itself), or None when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # socket.gaierror is an OSError; an over-long label a UnicodeError
        return None
    addresses = []
    for info in infos:
        try:
            addresses.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))  # no IPv6 zone id
        except ValueError:
            continue
    return addresses or None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _non_public_kind(address: IPAddress) -> str | None:
    """``"loopback"``, ``"private"`` … for an address a download must not reach; None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    for kind, test in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                       ("unspecified", address.is_unspecified), ("multicast", address.is_multicast),
                       ("private", address.is_private)):
        if test:
            return kind
    return None if address.is_global else "non-public"


def _too_big(where: str, max_bytes: int) -> UpstreamError:
    return UpstreamError(f"artifact from {where} is larger than {max_bytes} bytes; not read", retryable=False)


def _messages(errors: Any) -> str:
    if isinstance(errors, list):
        texts = [str(e.get("message")) if isinstance(e, dict) else str(e) for e in errors]
        return "; ".join(texts)[:300]
    return str(errors)[:300]


def _log(item: dict[str, Any]) -> str:
    parts = [item.get("stdout"), item.get("stderr")]
    return "\n".join(p for p in parts if isinstance(p, str) and p)


def _command(item: Any, where: str) -> Command:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int):
        raise UpstreamError(f"Paradime {where}: malformed command", retryable=False)
    rc = item.get("returnCode")
    resources = tuple(
        Resource(id=r["id"], path=r["path"])
        for r in item.get("resources") or []
        if isinstance(r, dict) and isinstance(r.get("id"), int) and isinstance(r.get("path"), str)
    )
    try:
        start = parse_time(item.get("startDttm"), f"{where}.startDttm")
        end = parse_time(item.get("endDttm"), f"{where}.endDttm")
    except Exception as exc:
        raise UpstreamError(f"Paradime {where}: {exc}", retryable=False) from None
    return Command(
        id=item["id"],
        command=str(item.get("command") or ""),
        return_code=rc if isinstance(rc, int) else None,
        start=start,
        end=end,
        resources=resources,
    )


def _new_run_id(data: dict[str, Any], operation: str) -> int:
    run_id = data.get("runId")
    if data.get("ok") is False:
        raise UpstreamError(f"Paradime {operation}: refused (ok: false)", retryable=False)
    if not isinstance(run_id, int):
        raise AmbiguousMutation(f"Paradime {operation}: answer has no runId; a run may have been created")
    return run_id
