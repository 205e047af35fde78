"""Slow-client benchmark: `python -m bench.slowclients` from the repo root (part of `make bench`).

The system as deployed (gunicorn -c config/gunicorn.py "app:create_app()", `python -m workers`,
`python -m workers.scheduled`; an embedded Redis and a temporary SQLite file unless
BENCH_REDIS_URL / BENCH_DATABASE_URL are set) serves a normal request, a signed Stripe webhook
(202), paced one every PACE seconds from one client, while SLOW clients trickle a request at 1
byte/s: half their headers, half their body (unauthenticated, to the same inbound door), each
starting over when the server answers or closes. Prints one JSON line per figure: the normal
request's p50/p99 with 0 (the baseline, same run), 2, 4 and 50 slow clients, medians of REPEATS
runs, and their ratio to the baseline; goal: p99 under 100 ms with 50. The deadline is
BENCH_CLIENT_TIMEOUT (default 3 s, not the deployed 10 s) so that within a short run every slow
client is cut off with 408 and starts over, several times: threads are freed and taken again
while the normal requests are served. `web_rss_mb` is gunicorn's memory (master and workers)
while the slow clients trickle.

The same gunicorn config with sync workers (GUNICORN_CMD_ARGS "--worker-class sync --threads
1", the web tier before the read deadline) is measured after, one run per count. A normal request
waits at most REQUEST_TIMEOUT (then it counts as `timed_out`, at REQUEST_TIMEOUT in the
percentiles, which are then lower bounds) and a run stops sending after RUN_BUDGET (what is left
counts as `unsent`).
BENCH_SLOW_CLIENTS (e.g. "0,50,100") and WEB_THREADS / WEB_CONCURRENCY size other trials;
BENCH_SKIP_SYNC=1 leaves the sync workers out.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

import apex.pipeline.tables  # noqa: F401  (registers the pipeline's tables on metadata)
from apex.db import make_engine
from apex.models import metadata
from apex.secretbox import generate_key
from bench.ingest import Sender
from bench.report import REPEATS, emit, percentile
from config.settings import Settings, _database_url
from launcher.embedded_redis import EmbeddedRedis, free_port

SLOW = tuple(int(n) for n in os.environ.get("BENCH_SLOW_CLIENTS", "0,2,4,50").split(","))
REQUESTS = 100  # normal requests per run
PACE = 0.02  # seconds between normal requests
RAMP = 1.5  # seconds for the slow clients to connect and start trickling before a run
REQUEST_TIMEOUT = 5.0  # a normal request unanswered by then counts as timed out, at 5 s
RUN_BUDGET = 8.0  # seconds; a run stops sending then, counting what is left as unsent
PATH = "/api/webhooks/stripe"
CLIENT_TIMEOUT = os.environ.get("BENCH_CLIENT_TIMEOUT", "3")
ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)  # seconds, answered 202
    errors: Counter[str] = field(default_factory=Counter)
    timed_out: int = 0  # requests unanswered at REQUEST_TIMEOUT (in latencies at that value)
    unsent: int = 0  # requests left when the run's budget ran out (not in latencies)


class System:
    """Web (gunicorn with our config), worker and scheduler processes, logging to `folder`."""

    def __init__(self, name: str, env: dict[str, str], folder: Path, gunicorn_args: str) -> None:
        self.name = name
        self.port = free_port(0)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / f"{name}-web.log"
        self._logs: list[IO[bytes]] = []
        web_env = {**env, "PORT": str(self.port), "GUNICORN_CMD_ARGS": gunicorn_args}
        self.web = self._start(
            [str(GUNICORN), "-c", "config/gunicorn.py", "app:create_app()"], web_env, "web"
        )
        self.others = [
            self._start([sys.executable, "-m", module], env, module)
            for module in ("workers", "workers.scheduled")
        ]
        self.folder = folder

    def _start(self, args: list[str], env: dict[str, str], label: str) -> subprocess.Popen[bytes]:
        log = (self.log_path.parent / f"{self.name}-{label}.log").open("wb")
        self._logs.append(log)
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.web.poll() is not None:
                raise RuntimeError(f"{self.name}: gunicorn exited:\n{self.log_tail()}")
            try:
                if requests.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: not healthy in {timeout}s:\n{self.log_tail()}")

    def rss_mb(self) -> float | None:
        """Resident memory of gunicorn's master and workers (Linux /proc), None elsewhere."""
        try:
            children = Path(f"/proc/{self.web.pid}/task/{self.web.pid}/children").read_text()
            total = 0
            for pid in [self.web.pid, *map(int, children.split())]:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            return None
        return round(total / 1024, 1)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        for process in [self.web, *self.others]:
            if process.poll() is None:
                process.terminate()
        for process in [self.web, *self.others]:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._logs:
            log.close()


class SlowClients:
    """`count` clients, each trickling one request at 1 byte/s and starting over when answered
    or cut off, until stop(). Even-numbered ones trickle their headers, odd ones their body."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.stopping = threading.Event()
        self.answered: Counter[str] = Counter()  # first status line token seen, or "closed"
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._loop, args=(i % 2 == 1,), daemon=True)
            for i in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _loop(self, body: bool) -> None:
        while not self.stopping.is_set():
            outcome = self._one(body)
            with self._lock:
                self.answered[outcome] += 1

    def _one(self, body: bool) -> str:
        head = f"POST {PATH} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        head += "Content-Length: 4096\r\n\r\n"
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            self.stopping.wait(0.5)
            return "connect_failed"
        with sock:
            if body:
                trickle, first = b"{" + b" " * 4095, head.encode()
            else:
                trickle, first = head.encode() + b"{}", b""
            try:
                if first:
                    sock.sendall(first)
                for byte in trickle:
                    sock.sendall(bytes([byte]))
                    sock.settimeout(1.0)
                    try:
                        reply = sock.recv(64)  # also the 1 s pause between bytes
                    except TimeoutError:
                        reply = None
                    if reply is not None:
                        return reply.split(b" ")[1].decode() if reply else "closed"
                    if self.stopping.is_set():
                        return "stopped"
            except OSError:
                return "closed"
        return "sent_whole"

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(5)


def measure(sender: Sender, system: System, timeout: float, budget: float) -> Run:
    """REQUESTS signed webhooks, one every PACE s, each on a new connection (as a router's
    would be when the tier is busy); stops sending at `budget` seconds."""
    run = Run()
    url = system.base + PATH
    began = time.monotonic()
    for n in range(REQUESTS):
        if time.monotonic() - began > budget:
            run.unsent = REQUESTS - n
            break
        body, headers = sender.signed(f"evt_{sender.batch()}_{n}")
        sent = time.perf_counter()
        try:
            response = requests.post(url, data=body, headers=headers, timeout=(timeout, timeout))
        except requests.Timeout:
            run.timed_out += 1
            run.latencies.append(timeout)
            continue
        except requests.RequestException as exc:
            run.errors[type(exc).__name__] += 1
            continue
        elapsed = time.perf_counter() - sent
        if response.status_code == 202:
            run.latencies.append(elapsed)
        else:
            run.errors[str(response.status_code)] += 1
        time.sleep(max(0.0, PACE - elapsed))
    run.latencies.sort()
    return run


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def percentiles(runs: list[Run]) -> tuple[float, float]:
    """Median over the runs of each run's p50 and p99."""
    p50 = statistics.median(percentile(run.latencies, 50) for run in runs if run.latencies)
    p99 = statistics.median(percentile(run.latencies, 99) for run in runs if run.latencies)
    return p50, p99


def series(label: str, sender: Sender, system: System, repeats: int, threads: int) -> None:
    """For each count of slow clients (0 first: the baseline), REPEATS runs while they trickle;
    one figure printed per count as soon as it is measured."""
    base: tuple[float, float] | None = None
    for count in SLOW:
        slow = SlowClients(system.port, count)
        try:
            if count:
                time.sleep(RAMP)
            runs = [measure(sender, system, REQUEST_TIMEOUT, RUN_BUDGET) for _ in range(repeats)]
            rss = system.rss_mb()
        finally:
            slow.stop()
        p50, p99 = percentiles(runs)
        base = base or (p50, p99)
        emit(
            f"slowclients_{label}",
            slow_clients=count,
            p50_ms=ms(p50),
            p99_ms=ms(p99),
            baseline_p50_ms=ms(base[0]),
            baseline_p99_ms=ms(base[1]),
            p99_ratio=round(p99 / base[1], 2),
            goal_p99_ms=100 if label == "gthread" and count == 50 else None,
            runs=len(runs),
            threads_per_worker=threads,
            client_timeout_s=float(CLIENT_TIMEOUT) if label == "gthread" else None,
            web_rss_mb=rss,
            answered=sum(len(run.latencies) - run.timed_out for run in runs),
            timed_out=sum(run.timed_out for run in runs),
            unsent=sum(run.unsent for run in runs),
            errors=dict(sum((run.errors for run in runs), Counter())),
            slow_client_outcomes=dict(slow.answered),
        )
        if count:
            time.sleep(1.0)  # let the server close what the slow clients left


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the processes are stopped too
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        redis_server: EmbeddedRedis | None = None
        systems: list[System] = []
        try:
            redis_url = os.environ.get("BENCH_REDIS_URL")
            if not redis_url:
                redis_server = EmbeddedRedis(tmp / "redis", persist=False).start()
                redis_url = redis_server.url
            database_url = _database_url(
                os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{tmp / 'bench.db'}"
            )
            engine = make_engine(database_url)
            metadata.create_all(engine)
            engine.dispose()
            secret = "whsec_" + secrets.token_hex(24)
            sender = Sender(secret)
            env = {
                **os.environ,
                "REDIS_URL": redis_url,
                "DATABASE_URL": database_url,
                "APEX_SECRET_KEY": generate_key(),
                "STRIPE_WEBHOOK_SECRET": secret,
                "APEX_LOG_LEVEL": "WARNING",
                "APEX_CLIENT_TIMEOUT": CLIENT_TIMEOUT,
            }
            threads = int(env.get("WEB_THREADS") or Settings.web_threads)
            after = System("gthread", env, tmp, "")
            systems.append(after)
            after.wait_ready()
            measure(sender, after, REQUEST_TIMEOUT, RUN_BUDGET)  # warm-up: connections, caches
            series("gthread", sender, after, REPEATS, threads)
            after.stop()
            systems.remove(after)

            if os.environ.get("BENCH_SKIP_SYNC"):
                return
            before = System("sync", env, tmp, "--worker-class sync --threads 1")
            systems.append(before)
            before.wait_ready()
            measure(sender, before, REQUEST_TIMEOUT, RUN_BUDGET)
            series("sync", sender, before, 1, 1)
        finally:
            for system in systems:
                system.stop()
            if redis_server is not None:
                redis_server.stop()


if __name__ == "__main__":
    main()
