"""The system the benchmarks run against: Redis, a database, the fast receiver and the processes.

An embedded Redis and a temporary SQLite file unless BENCH_REDIS_URL / BENCH_DATABASE_URL are
set; the receiver is bench/receiver.py in RECEIVER_PROCESSES subprocesses sharing its ports,
plain HTTP (`base`) and HTTPS (`secure_base`, a certificate from a private CA made for the run,
which the worker trusts through APEX_CA_BUNDLE). The processes are started as the Procfile
starts them (`python -m workers`, `python -m workers.scheduled`, gunicorn with
config/gunicorn.py for the web), each logging to a file in the benchmark's temporary folder;
cpu_seconds() reads what each has spent from /proc (Linux).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from redis import Redis
from rq import Worker
from rq_scheduler import Scheduler

import apex.pipeline.tables  # noqa: F401  (registers the pipeline's tables on metadata)
from apex import subscriptions
from apex.db import make_engine
from apex.events import publish
from apex.models import metadata
from apex.secretbox import SecretBox, generate_key
from config.settings import _database_url
from launcher.embedded_redis import EmbeddedRedis, free_port
from tests.integration.egress import private_ca
from workers import jobs

WORKER = "workers"  # RQ's worker, with RQ's scheduler (the retries) inside
SCHEDULER = "workers.scheduled"  # the periodic sweeps
WEB = "web"  # gunicorn -c config/gunicorn.py "app:create_app()"
BARE = "bare"  # the same gunicorn serving bench/bare_app.py, the baseline of the web
APPS = {WEB: "app:create_app()", BARE: "bench.bare_app:app"}
RECEIVER_PROCESSES = 2
ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
START_WITHIN = 30.0  # seconds a process has to come up
STOP_WITHIN = 60.0  # seconds a process has to exit after SIGTERM before it is killed
DATA = {
    "lead": {"id": "lead_bench", "email": "ada@example.com", "revenue": 12000, "pad": "x" * 300}
}


@dataclass(frozen=True)
class JobCounts:
    finished: int
    failed: int


class System:
    """Redis, the database and the receiver (started here), and the Apex processes (start())."""

    def __init__(self, tmp: Path) -> None:
        """Start Redis (unless BENCH_REDIS_URL) and the receiver; close() stops them. Raises
        RuntimeError if one does not come up (what did start is stopped)."""
        self.tmp = tmp
        self.redis_server: EmbeddedRedis | None = None
        self.receivers: list[subprocess.Popen[bytes]] = []
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.database_url = _database_url(
            os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{tmp / 'bench.db'}"
        )
        self.engine = make_engine(self.database_url)
        self.key = generate_key()
        self.box = SecretBox(self.key)
        self.web_port = free_port(0)
        self.web_base = f"http://127.0.0.1:{self.web_port}"
        port, secure_port = free_port(18080), free_port(18443)
        self.base = f"http://127.0.0.1:{port}"  # the fast receiver
        self.secure_base = f"https://127.0.0.1:{secure_port}"  # the same, over TLS
        (tmp / "pki").mkdir()
        self.pki = private_ca(tmp / "pki", ["127.0.0.1"])
        self.ca_file = str(self.pki.ca_file)
        self.stats = [f"http://127.0.0.1:{free_port(0)}/" for _ in range(RECEIVER_PROCESSES)]
        try:
            redis_url = os.environ.get("BENCH_REDIS_URL")
            if not redis_url:
                self.redis_server = EmbeddedRedis(tmp / "redis", persist=False).start()
                redis_url = self.redis_server.url
            self.redis_url = redis_url
            self.redis = Redis.from_url(redis_url)
            tls = [str(secure_port), str(self.pki.cert_file), str(self.pki.key_file)]
            for stats in self.stats:
                stats_port = stats.rsplit(":", 1)[1].strip("/")
                command = [sys.executable, "-m", "bench.receiver", str(port), stats_port, *tls]
                self.receivers.append(subprocess.Popen(command))
            self._wait_for_receiver()
        except BaseException:
            self.close()
            raise

    def _wait_for_receiver(self) -> None:
        deadline = time.monotonic() + START_WITHIN
        for stats in self.stats:
            while True:
                if any(r.poll() is not None for r in self.receivers):
                    raise RuntimeError("a receiver process exited")
                try:
                    requests.get(stats, timeout=1)
                    break
                except requests.ConnectionError:
                    if time.monotonic() > deadline:
                        late = f"the receiver did not answer in {START_WITHIN:.0f}s"
                        raise RuntimeError(late) from None
                    time.sleep(0.05)

    def receiver_cpu_seconds(self) -> float:
        """CPU time the receiver's processes have used so far."""
        return sum(_cpu_seconds(r.pid) for r in self.receivers)

    @property
    def database(self) -> str:
        """The database's dialect, e.g. sqlite or postgresql."""
        return self.database_url.split(":")[0].split("+")[0]

    def reset(self) -> None:
        """Empty tables, an empty Redis and no arrivals at the receiver."""
        metadata.drop_all(self.engine)
        metadata.create_all(self.engine)
        self.redis.flushdb()
        for stats in self.stats:
            requests.delete(stats, timeout=5)

    def start(self, *modules: str, **env: str) -> None:
        """Start `python -m <module>` for each module (WEB and BARE: gunicorn), with `env` over
        the benchmark's settings, and wait until each is up (a worker registered, the
        scheduler's periodic jobs planned, the web answering). A module named twice runs in two
        processes (labels "workers", "workers-2"…). Raises RuntimeError, with the end of its
        log, if one exits or is not up in time."""
        environ = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.database_url,
            "APEX_SECRET_KEY": self.key,
            "APEX_ALLOW_HTTP": "1",
            "APEX_ALLOW_PRIVATE_DESTINATIONS": "1",
            "APEX_CA_BUNDLE": self.ca_file,
            "APEX_LOG_LEVEL": "WARNING",
            "PORT": str(self.web_port),
            **env,
        }
        for module in modules:
            label, n = module, 1
            while label in self.processes:
                n += 1
                label = f"{module}-{n}"
            command = [sys.executable, "-m", module]
            if module in APPS:
                command = [str(GUNICORN), "-c", "config/gunicorn.py", APPS[module]]
            with open(self._log(label), "wb") as log:  # this start's log only
                self.processes[label] = subprocess.Popen(
                    command, cwd=ROOT, env=environ, stdout=log, stderr=log
                )
        deadline = time.monotonic() + START_WITHIN
        for module in modules:
            while not self._up(module):
                self.check()
                if time.monotonic() > deadline:
                    late = f"{module} not up in {START_WITHIN:.0f}s"
                    raise RuntimeError(late + self.tail(module))
                time.sleep(0.05)

    def cpu_seconds(self, module: str) -> float:
        """CPU time used so far by the processes started for `module` and their children
        (gunicorn's workers, the worker's RQ scheduler)."""
        return sum(
            _cpu_seconds(p.pid)
            for label, p in self.processes.items()
            if label == module or label.startswith(module + "-")
        )

    def check(self) -> None:
        """Raise RuntimeError, with the end of its log, if a started process has exited."""
        for module, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{module} exited with {process.returncode}{self.tail(module)}")

    def stop(self) -> None:
        """SIGTERM every started process, then wait for each (killing one that overstays)."""
        processes, self.processes = self.processes, {}
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for module, process in processes.items():
            try:
                process.wait(STOP_WITHIN)
            except subprocess.TimeoutExpired:
                print(f"bench: {module} still running {STOP_WITHIN:.0f}s after SIGTERM; killed",
                      file=sys.stderr)  # fmt: skip
                process.kill()
                process.wait()

    def jobs_run(self) -> JobCounts:
        """The RQ jobs the workers finished and failed since the last reset(), from their records
        in Redis (kept a minute after a worker stops)."""
        finished = failed = 0
        for key in self.redis.scan_iter("rq:worker:*", _type="HASH"):
            done, broke = self.redis.hmget(key, "successful_job_count", "failed_job_count")
            finished += int(done or 0)
            failed += int(broke or 0)
        return JobCounts(finished, failed)

    def subscribe(self, url: str, events: list[str]) -> str:
        sub, _ = subscriptions.create(self.engine, self.box, url, events)
        return sub.id

    def publish(self, event_type: str) -> tuple[str, float]:
        """Publish and enqueue as the API does; returns the event's id and when it started."""
        started = time.time()
        published = publish(self.engine, event_type, DATA)
        jobs.enqueue_deliveries(self.redis, published.pending)
        return published.id, started

    def arrivals(self) -> dict[str, float]:
        """The receiver's arrival times by "<path>:<webhook-id>"."""
        merged: dict[str, float] = {}
        for stats in self.stats:
            merged.update(requests.get(stats, timeout=5).json())
        return merged

    def close(self) -> None:
        try:
            self.stop()
        finally:
            for receiver in self.receivers:
                receiver.terminate()
                receiver.wait()
            self.engine.dispose()
            if self.redis_server is not None:
                self.redis_server.stop()

    def _up(self, module: str) -> bool:
        if module == WORKER:
            started = sum(label.split("-")[0] == WORKER for label in self.processes)
            return len(Worker.all(connection=self.redis)) >= started
        if module == SCHEDULER:
            return bool(self.redis.zcard(Scheduler.scheduled_jobs_key))
        if module in APPS:
            try:
                return requests.get(self.web_base + "/health", timeout=1).status_code < 500
            except requests.RequestException:  # not listening yet, or still booting
                return False
        return True

    def _log(self, module: str) -> Path:
        return self.tmp / f"{module}.log"

    def tail(self, module: str, lines: int = 30) -> str:
        """The last `lines` lines of `module`'s log, each on a new line and indented."""
        text = self._log(module).read_text(errors="replace").splitlines()[-lines:]
        return "".join(f"\n  {line}" for line in text)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` and its living descendants (0 if gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return own + sum(_cpu_seconds(child) for child in children)
