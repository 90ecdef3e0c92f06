"""Every Redis key bolt-triage writes is named here, and only here.

As in RQ (``Job.key_for``, the registries' ``key``), each key belongs to one domain object, its
*owner*, which is the only code that reads or writes it; callers ask the owner, never build a key.
Every key has a TTL or is an index bounded by its owner (``tests/test_reliability.py`` scans Redis
after a full pipeline run to prove it):

======================================  =========================  ===============================
key                                     owner                      kept
======================================  =========================  ===============================
``bt:delivery:<webhook id>``            ``Store.admit``            ``intake.dedup_ttl_seconds``
``bt:event:<run|cmds>:<event>``         ``Store.admit``            ``intake.dedup_ttl_seconds``
``bt:triage:<triage id>`` (hash)        ``Store`` (triage record)  ``RECORD_TTL``
``bt:triages`` (zset, id → time)        ``Store`` (triage record)  newest ``TRIAGE_INDEX_MAX``
``bt:triaged:<run>``                    ``Store.claim_run``        ``RECORD_TTL``
``bt:chain:<run>``                      ``Store.link``             ``RECORD_TTL``
``bt:story:<origin>``                   ``Store.story``            ``RECORD_TTL``
``bt:lock:story:<origin>``              ``Store.story_lock``       60 s
``bt:retry:<run>``                      ``RetryGuard``             ``RECORD_TTL``
``bt:pending:<schedule>``               ``RetryGuard``             ``PENDING_TTL``
``bt:slack:<message id>``               ``PostLedger``             ``RECORD_TTL`` (90 s sending)
``bt:parent:<origin>``                  ``PostLedger``             ``RECORD_TTL``
``bt:thread:<origin>:seq|done|set``     ``PostLedger``             ``RECORD_TTL``
``bt:storm:<channel>:<category>``       ``incidents.Storms``       2 × storm window
``bt:storm-incident:<ch>:<category>``   ``incidents.Storms``       storm window
``bt:incident:<ch>:<cat>:<t>[:runs]``   ``incidents.Storms``       ``INCIDENT_TTL``
``bt:incident:…:posted|post``           ``incidents.Storms``       ``INCIDENT_TTL`` (90 s sending)
``bt:repeat:<schedule>:<sig>[:count]``  ``repeats.Repeats``        repeat interval
``bt:slack-pace:<ch>``, ``-sent:``      ``slack.Pacer``            ~10 pacing intervals
``bt:node:<unique id>`` (hash)          ``history.History``        ``history.TTL``
``bt:nodes`` (zset)                     ``history.History``        newest ``history.INDEX_MAX``
``bt:node-<event>:<node>:<run>``        ``history.History``        ``history.TTL``
``bt:node-signatures:<sched>:<node>``   ``history.History``        ``history.TTL``, newest ``RUNS_KEPT``
``bt:node-recovered:<sched>:<node>``    ``history.History``        ``history.TTL``
``bt:ledger:<tid>:events`` (stream)     ``ledger.Ledger``          ``retention.ledger_days``, cap
``bt:ledger:<tid>:<part>``              ``ledger.Ledger``          calls, trace, children: same
``bt:ledger:run:<run>`` (zset)          ``ledger.Ledger``          ``retention.ledger_days``, cap
``bt:ledger:pauses`` (hash)             ``pauses.Pauses``          until its last pause ends
``bt:metrics:c:<counter>`` (hash)       ``triage.metrics``         ``metrics.TTL``, renewed by writes
``bt:metrics:h:<histogram>`` (hash)     ``triage.metrics``         ``metrics.TTL``, renewed by writes
``bt:metrics:dead_letter`` (set)        ``triage.metrics``         ``metrics.TTL``; pruned at scrape
======================================  =========================  ===============================

RQ's own keys (``rq:…``) are RQ's: jobs carry ``result_ttl``/``failure_ttl`` (``triage.broker``).
"""

from __future__ import annotations

PREFIX = "bt:"
TRIAGES = PREFIX + "triages"
NODES = PREFIX + "nodes"
METRICS_DEAD_LETTER = PREFIX + "metrics:dead_letter"


# --- intake and triage records (triage.store.Store) -----------------------------------------------

def delivery(webhook_id: str) -> str:
    return f"{PREFIX}delivery:{webhook_id}"


def event(dedup_key: str) -> str:
    return f"{PREFIX}event:{dedup_key}"


def triage(triage_id: str) -> str:
    return f"{PREFIX}triage:{triage_id}"


def run_claim(run_id: int) -> str:
    return f"{PREFIX}triaged:{run_id}"


def chain(run_id: int) -> str:
    return f"{PREFIX}chain:{run_id}"


def story(origin: int) -> str:
    return f"{PREFIX}story:{origin}"


def story_lock(origin: int) -> str:
    return f"{PREFIX}lock:story:{origin}"


# --- the retry mutation (triage.store.RetryGuard) ---------------------------------------------------

def retry(run_id: int) -> str:
    return f"{PREFIX}retry:{run_id}"


def retry_pending(schedule: str) -> str:
    return f"{PREFIX}pending:{schedule}"


# --- Slack posts (triage.store.PostLedger) -----------------------------------------------------------

def post(message_id: str) -> str:
    return f"{PREFIX}slack:{message_id}"


def parent_message(origin: int) -> str:
    return f"{PREFIX}parent:{origin}"


def thread(origin: int, part: str) -> str:
    """``seq`` (last number handed out), ``done`` (replies settled in order), ``settled`` (a set)."""
    return f"{PREFIX}thread:{origin}:{part}"


# --- storms (triage.incidents, triage.repeats) ------------------------------------------------

def storm_window(channel: str, category: str) -> str:
    return f"{PREFIX}storm:{channel}:{category}"


def storm_incident(channel: str, category: str) -> str:
    return f"{PREFIX}storm-incident:{channel}:{category}"


def incident(incident_id: str, part: str = "") -> str:
    """An incident's metadata hash, or one of its parts (``runs``, ``posted``, ``post``)."""
    return f"{PREFIX}{incident_id}" + (f":{part}" if part else "")


def repeat(schedule: str, signature: str, part: str = "") -> str:
    return f"{PREFIX}repeat:{schedule}:{signature}" + (f":{part}" if part else "")


# --- Slack pacing (triage.slack.Pacer) ----------------------------------------------------------------

def pace(channel: str) -> str:
    return f"{PREFIX}slack-pace:{channel}"


def last_sent(channel: str) -> str:
    return f"{PREFIX}slack-sent:{channel}"


# --- node history (triage.history.History) ------------------------------------------------------------

def node(unique_id: str) -> str:
    return f"{PREFIX}node:{unique_id}"


def node_event(kind: str, unique_id: str, run_id: int) -> str:
    """Once-per-run markers: ``run`` (a failure counted), ``retries``, ``recoveries``."""
    return f"{PREFIX}node-{kind}:{unique_id}:{run_id}"


def node_signatures(schedule: str, unique_id: str) -> str:
    """How a node failed under a schedule, newest first (``"-"`` when the schedule is unknown)."""
    return f"{PREFIX}node-signatures:{schedule}:{unique_id}"


def node_recovered(schedule: str, unique_id: str) -> str:
    """The chains (origins) of a schedule in which a retry recovered the node."""
    return f"{PREFIX}node-recovered:{schedule}:{unique_id}"


# --- the triage ledger (triage.ledger.Ledger) and the retry switch (triage.pauses.Pauses) ---------------

LEDGER = PREFIX + "ledger:"


def ledger(triage_id: str, part: str) -> str:
    """A triage's ``events`` (stream), ``calls`` (list), ``trace`` (hash) or ``children`` (list)."""
    return f"{LEDGER}{triage_id}:{part}"


def ledger_run(run_id: int) -> str:
    """Every triage about a Bolt run (zset, triage id → time)."""
    return f"{LEDGER}run:{run_id}"


def retry_pauses() -> str:
    return f"{LEDGER}pauses"


# --- metrics (triage.metrics; read by triage.monitoring at scrape time) -------------------------------

def metrics_counter(name: str) -> str:
    return f"{PREFIX}metrics:c:{name}"


def metrics_histogram(name: str) -> str:
    return f"{PREFIX}metrics:h:{name}"
