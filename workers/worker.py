"""Worker entry: ``triage worker`` (the Procfile's ``worker``; ``python -m workers.worker`` also works).

Before taking a job it checks what a worker needs and stops with one line naming the setting
when something is wrong: the configuration (policy, rule files, Paradime and Slack settings),
then the Paradime key (one cheap query) and the Slack credential (``auth.test``, or an empty
post to the incoming webhook, which Slack refuses without posting). An unreachable Redis is
waited for, with one log line per attempt, rather than crash-looping. Each worker also runs
RQ's scheduler (one holds its lock at a time), which enqueues delayed retries and re-checks;
run as many workers as you like.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import threading
import time

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.executions import Execution
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.scripts import release_lock
from rq.serializers import JSONSerializer
from rq.utils import now as rq_now
from rq.worker import BaseWorker, WorkerStatus

from triage import broker, logs
from triage.config import load_settings, redact_url, require_worker
from triage.errors import ConfigError
from triage.probes import one_line, probe_paradime, probe_slack
from workers import context
from workers.jobs import TriageFailed

log = logging.getLogger("workers.worker")

#: A job's heartbeat is refreshed this often and expires after it + 60 s: a dead worker's job is
#: found abandoned at most that long after the worker died, by the next maintenance of any worker.
JOB_MONITORING_SECONDS = 15
#: RQ's maintenance (abandoned jobs re-run or failed, the scheduler process restarted if it died, as
#: after a Redis restart, a dead worker's scheduler lock taken over) every this many seconds instead of
#: RQ's 10 minutes; an idle worker wakes from its blocking wait for jobs this often (worker_ttl below)
#: to run it. Recovery bounds: 15 + 60 + 10 = 85 s after a worker dies for its job; 10 s for the
#: scheduler after Redis is back; SCHEDULER_STALE_SECONDS + 10 s for the scheduler after the worker
#: that ran it died.
MAINTENANCE_SECONDS = 10
#: RQ's scheduler refreshes its lock every ``interval`` (1 s) to expire ``interval + 60`` s later, so a
#: worker killed while its scheduler holds the lock (SIGKILL, OOM, a lost machine) would stop all delayed
#: work (re-checks, retries after their backoff, paced Slack posts) for up to 61 s plus a maintenance
#: interval. A lock not refreshed for this long (its TTL that much below the full one) is released
#: (token-checked) by the next worker's maintenance, which then starts its own scheduler.
SCHEDULER_STALE_SECONDS = 10


class GaveUpInOneLine(logging.Filter):
    """RQ logs every failed job with its traceback. A ``TriageFailed`` is a job giving up on purpose with
    its reason (Paradime down through every re-check, say): its traceback says nothing more, so the line
    keeps only the reason. Any other exception keeps its traceback."""

    _FAILED = "Worker %s: job %s: exception raised while executing (%s)\n%s"
    _MARK = f"{TriageFailed.__module__}.{TriageFailed.__qualname__}: "

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == self._FAILED and isinstance(record.args, tuple) and len(record.args) == 4:
            last = str(record.args[3]).rstrip().rsplit("\n", 1)[-1]
            if last.startswith(self._MARK):
                record.msg = "Worker %s: job %s: gave up (%s): %s"
                record.args = (*record.args[:3], last.removeprefix(self._MARK))
        return True


class _Scheduler(RQScheduler):
    """RQ's scheduler, whose process ends with one log line when Redis goes away, instead of RQ's logged
    traceback followed by multiprocessing's printed one; the worker's maintenance starts a new one."""

    def work(self) -> None:
        try:
            super().work()
        except RedisError as exc:
            self.log.error("Scheduler [PID %s] stopped: Redis unavailable (%s); the worker starts another "
                           "within %d s of Redis being back", os.getpid(), one_line(exc), MAINTENANCE_SECONDS)


class _TriageWorkerMixin:
    """What the service adds to an RQ worker class: it runs ``_Scheduler`` and takes over the scheduler
    lock of a scheduler that has died. A mixin, so that the forking and the simple worker share it."""

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO",
                         date_format: str = DEFAULT_LOGGING_DATE_FORMAT, log_format: str = DEFAULT_LOGGING_FORMAT,
                         ) -> None:
        """RQ's own, but with ``_Scheduler`` (a burst worker only enqueues what is due, in this process)."""
        if burst:
            super()._start_scheduler(burst, logging_level, date_format, log_format)
            return
        self.scheduler = _Scheduler(self.queues, connection=self.connection, serializer=self.serializer,
                                    logging_level=logging_level if logging_level is not None else self.log.level,
                                    date_format=date_format, log_format=log_format)
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            self.scheduler.start()

    def run_maintenance_tasks(self) -> None:
        if self.scheduler is not None:
            release_stale_scheduler_locks(self.connection, [q.name for q in self.queues],
                                          full_ttl=self.scheduler.interval + 60)
        super().run_maintenance_tasks()


class TriageWorker(_TriageWorkerMixin, Worker):
    """RQ's forking worker (a work horse per job) with the service's scheduler handling: the default."""


class _Heartbeat:
    """Keeps a running job's heartbeat from a thread, as the forking worker's monitor loop does for its
    work horse: RQ's ``SimpleWorker`` beats only when a job starts, with a TTL of the job's whole timeout
    + 60 s, so a worker killed mid-job had its triage found abandoned only after ~11 min. With this the
    TTL is the forking worker's (``job_monitoring_interval`` + 60 s) and the bound is the same 85 s.

    It stops (under its lock, so no beat lands after) before RQ records the job's end: a late beat would
    put a finished job back in the started registry. It also stops once the job is past its timeout + 60 s
    (wedged beyond what SIGALRM could interrupt), so that RQ's cleanup then finds it abandoned."""

    def __init__(self, worker: SimpleTriageWorker, job: Job, execution: Execution) -> None:
        self.worker, self.job, self.execution = worker, job, execution
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat {job.id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.lock:
            self.stopped.set()
        self.thread.join()

    def _run(self) -> None:
        interval = self.worker.job_monitoring_interval
        while not self.stopped.wait(interval):
            started, timeout = self.job.started_at, self.job.timeout
            if started and timeout not in (None, -1) and (rq_now() - started).total_seconds() > timeout + 60:
                return
            with self.lock:
                if self.stopped.is_set():
                    return
                try:
                    self.worker.maintain_heartbeats(self.job, self.execution)
                except RedisError as exc:  # the next beat tries again; RQ's own monitor does the same
                    log.warning("job %s: heartbeat not refreshed (%s)", self.job.id, one_line(exc))


class SimpleTriageWorker(_TriageWorkerMixin, SimpleWorker):
    """Jobs in the worker process (``--worker-class simple``): no fork per job, see the README's
    Benchmarks. Job timeouts by SIGALRM, as in a work horse; heartbeats by ``_Heartbeat``."""

    _beat: _Heartbeat | None = None

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return BaseWorker.get_heartbeat_ttl(self, job, working_time)  # the forking worker's: a beat keeps it

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        self._beat = _Heartbeat(self, job, execution)
        self._beat.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            self._stop_beat()
        self.set_state(WorkerStatus.IDLE)

    def _stop_beat(self) -> None:
        beat, self._beat = self._beat, None
        if beat is not None:
            beat.stop()

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry, execution) -> None:
        self._stop_beat()
        super().handle_job_success(job, queue, started_job_registry, execution)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry=None, exc_string: str = "",
                           execution=None) -> None:
        self._stop_beat()
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)


def release_stale_scheduler_locks(redis: Redis, queue_names: list[str], full_ttl: float,
                                  stale_after: float = SCHEDULER_STALE_SECONDS) -> list[str]:
    """Release each queue's scheduler lock that has not been refreshed for ``stale_after`` seconds (its
    TTL is below ``full_ttl - stale_after``); the queues whose lock was released. Judged by the lock's own
    TTL, so neither clocks nor the holder's metadata (written only after the lock is taken) matter; the
    release deletes the lock only while the stale holder still has it."""
    released = []
    for name in queue_names:
        key = RQScheduler.get_locking_key(name)
        holder, ttl = redis.get(key), redis.ttl(key)
        if holder is None or ttl < 0 or ttl >= full_ttl - stale_after:
            continue
        if release_lock(redis, key, holder.decode()):
            log.warning("scheduler lock for %s released: not refreshed for %.0f s (its holder is gone)", name,
                        full_ttl - ttl)
            released.append(name)
    return released


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage worker", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="quit when the queue is empty")
    parser.add_argument("--name", help="worker name (default: RQ's random one)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO").upper())
    parser.add_argument("--worker-class", choices=("fork", "simple"), default=os.environ.get("WORKER_CLASS", "fork"),
                        help="fork: RQ's Worker, a work horse per job (default); simple: SimpleWorker, jobs in "
                             "this process (job timeouts by SIGALRM as well); bench/pipeline.py compares them")
    parser.add_argument("--no-probe", action="store_true",
                        help="skip the Paradime and Slack credential checks at start")
    args = parser.parse_args(argv)
    try:
        log_setup = {"level": args.log_level, "fmt": os.environ.get("LOG_FORMAT", "text")}
        logs.install([], **log_setup)  # masks secret-shaped text already; the configured secrets once read:
        settings = load_settings()
        logs.install(logs.secrets_of(settings), **log_setup)
        warnings = require_worker(settings)
        ctx = context.build(settings)
    except (ConfigError, ValueError) as exc:  # logs.install: ValueError naming LOG_LEVEL / LOG_FORMAT
        print(f"bolt-triage worker: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.guard_std_streams()  # from here on, text printed outside logging (a child's traceback) is logged too
    logging.getLogger("rq.worker").addFilter(GaveUpInOneLine())
    for warning in warnings:
        log.warning("%s", warning)
    wait_for_redis(ctx.store.redis, settings.redis_url)
    if not args.no_probe:
        for probe in (probe_paradime(settings), probe_slack(settings)):
            if probe.fatal:
                print(f"bolt-triage worker: {probe.name}: {probe.detail}", file=sys.stderr)
                return 2
            if probe.ok:
                log.info("%s", probe.line())
            else:
                log.warning("%s; starting anyway: jobs retry while it is unreachable", probe.line())
    context.install(ctx)
    # Slack first: a delivery is a few ms of work that ends a story's wait, so an alert never waits behind
    # a backlog of unrelated triages (a burst of 200 used to put every alert after the last triage).
    # Pacing per channel is the notifier's (Redis), not the queue order's, so it holds either way.
    queues = [broker.queue(ctx.store.redis, broker.SLACK_QUEUE), ctx.queue]
    worker_class = SimpleTriageWorker if args.worker_class == "simple" else TriageWorker
    worker = worker_class(queues, connection=ctx.store.redis, serializer=JSONSerializer, name=args.name,
                    job_monitoring_interval=JOB_MONITORING_SECONDS, maintenance_interval=MAINTENANCE_SECONDS,
                    worker_ttl=MAINTENANCE_SECONDS + 15)  # RQ blocks on the queue worker_ttl - 15 s between checks
    # Everything built so far (modules, settings, rules, clients) lives as long as the process: frozen, the
    # garbage collector never walks it, so a work horse's collections do not touch (and copy) the parent's
    # pages: a full collection in a fresh horse took 34-41 ms before, 3-4 ms after (Python's gc docs advise
    # gc.freeze() before fork for this). Objects made later, per job, are collected as usual.
    gc.freeze()
    worker.work(burst=args.burst, with_scheduler=True, logging_level=args.log_level)
    return 0


def wait_for_redis(redis: Redis, url: str, max_delay: float = 30.0) -> None:
    """Block until Redis answers, saying so once per attempt (backing off to ``max_delay``)."""
    delay = 1.0
    while True:
        try:
            redis.ping()
            return
        except RedisError as exc:
            log.warning("waiting for Redis at %s: %s; next try in %gs", redact_url(url), one_line(exc), delay)
        time.sleep(delay)
        delay = min(delay * 2, max_delay)


if __name__ == "__main__":
    sys.exit(main())
