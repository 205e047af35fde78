"""Inbound benchmark: `python -m bench.ingest` from the repo root.

Signed Stripe events accepted per second by POST /api/webhooks/stripe, served by gunicorn with
WORKERS sync workers to CLIENTS concurrent clients, vs a bare Flask endpoint answering 204
(bench/bare_app.py) on the same gunicorn flags in the same run (ratio; goal >= 0.6), and the
p50/p99 latency of both. Prints one JSON line per figure, each a median over REPEATS runs; the
two servers are measured alternately within each run.

Every request carries a new Stripe event id, signed on the fly with stripe's own library as a
sender would, so each is verified, stored and enqueued (202). The baseline gets the same signed
bodies, built the same way, so the ratio compares the servers, not the clients. Uses an embedded
Redis and a temporary SQLite file unless BENCH_REDIS_URL / BENCH_DATABASE_URL are set (e.g. a
PostgreSQL URL); BENCH_INGEST_REQUESTS sets the requests per run (default 3000).
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests
import sqlalchemy as sa
import stripe
from redis import Redis

from apex.db import make_engine
from apex.models import inbound_events, metadata
from apex.secretbox import generate_key
from bench.report import emit, percentile
from config.settings import _database_url
from launcher.embedded_redis import EmbeddedRedis, free_port
from workers.inbound import READY_INBOUND

REPEATS = 3
CLIENTS = 8
WORKERS = 2
N = int(os.environ.get("BENCH_INGEST_REQUESTS", "3000"))
WARMUP = CLIENTS * 20  # untimed requests per server before the first run
RUN_SECONDS = 120.0  # a run stops sending after this long, whatever is left
REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read
PATH = "/api/webhooks/stripe"
ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"


@dataclass
class Run:
    """What one timed run measured against one server."""

    accepted: int = 0
    seconds: float = 0.0
    client_cpu: float = 0.0  # seconds of this process's CPU (the clients') during the run
    latencies: list[float] = field(default_factory=list)  # seconds, of the accepted requests
    errors: Counter[str] = field(default_factory=Counter)  # by status code or exception

    @property
    def per_s(self) -> float:
        return self.accepted / max(self.seconds, 1e-9)

    @property
    def client_cpu_pct(self) -> float:
        """The clients' CPU as a share of one core: near 100 they, not the server, set the pace
        (one process, one GIL)."""
        return 100 * self.client_cpu / max(self.seconds, 1e-9)


class Server:
    """`gunicorn <app> -w WORKERS -b 127.0.0.1:<port>` as a subprocess, logging to `log_path`."""

    def __init__(self, name: str, app: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.port = free_port(0)
        self.url = f"http://127.0.0.1:{self.port}{PATH}"
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        args = [str(GUNICORN), app, "-w", str(WORKERS), "-b", f"127.0.0.1:{self.port}"]
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the server answers HTTP at all (any status)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} gunicorn exited:\n{self.log_tail()}")
            try:
                requests.get(f"http://127.0.0.1:{self.port}/", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} gunicorn did not answer in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM (gunicorn stops its workers gracefully), SIGKILL if it takes over 30 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class Sender:
    """Builds and signs a Stripe `payment_intent.succeeded` event with a new id per request."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.tag = secrets.token_hex(4)  # keeps ids unique across invocations on a kept database
        self._batches = 0
        self._lock = threading.Lock()

    def batch(self) -> str:
        """A prefix no other call returns: ids are `evt_<prefix><client>_<n>`."""
        with self._lock:
            self._batches += 1
            return f"{self.tag}b{self._batches}"

    def signed(self, event_id: str) -> tuple[bytes, dict[str, str]]:
        now = int(time.time())
        body = json.dumps(
            {
                "id": event_id,
                "object": "event",
                "api_version": "2024-06-20",
                "created": now,
                "type": "payment_intent.succeeded",
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "data": {
                    "object": {
                        "id": "pi_" + event_id[4:],
                        "object": "payment_intent",
                        "amount": 12000,
                        "amount_received": 12000,
                        "currency": "usd",
                        "customer": "cus_bench",
                        "receipt_email": "ada@example.com",
                        "status": "succeeded",
                        "metadata": {"lead_id": "lead_bench", "plan": "growth"},
                        "description": "x" * 300,
                    }
                },
            }
        )
        header = stripe.WebhookSignature.generate_signature_header(body, self.secret, now)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": header,
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        return body.encode(), headers


def client(
    sender: Sender, url: str, expect: int, prefix: str, count: int, start: threading.Barrier
) -> Run:
    """One client: its own keep-alive Session, `count` requests in a row, each signed on the
    fly; stops early at RUN_SECONDS after the start."""
    run = Run()
    with requests.Session() as session:
        start.wait()
        deadline = time.monotonic() + RUN_SECONDS
        for n in range(count):
            if time.monotonic() > deadline:
                run.errors["unsent_at_deadline"] += count - n
                break
            body, headers = sender.signed(f"evt_{prefix}_{n}")
            sent = time.perf_counter()
            try:
                response = session.post(url, data=body, headers=headers, timeout=REQUEST_TIMEOUT)
            except requests.RequestException as exc:
                run.errors[type(exc).__name__] += 1
                continue
            elapsed = time.perf_counter() - sent
            if response.status_code == expect:
                run.accepted += 1
                run.latencies.append(elapsed)
            else:
                run.errors[str(response.status_code)] += 1
    return run


def measure(sender: Sender, server: Server, expect: int, total: int) -> Run:
    """`total` requests from CLIENTS clients started together; the clock runs from their common
    start to the last answer."""
    start = threading.Barrier(CLIENTS + 1, timeout=30)
    batch = sender.batch()
    counts = [total // CLIENTS + (1 if i < total % CLIENTS else 0) for i in range(CLIENTS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [
            pool.submit(client, sender, server.url, expect, f"{batch}c{i}", counts[i], start)
            for i in range(CLIENTS)
        ]
        start.wait()
        began, cpu = time.perf_counter(), time.process_time()
        runs = [future.result() for future in futures]
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    merged = Run(seconds=seconds, client_cpu=cpu)
    for run in runs:
        merged.accepted += run.accepted
        merged.latencies.extend(run.latencies)
        merged.errors.update(run.errors)
    merged.latencies.sort()
    if not merged.accepted:
        raise RuntimeError(f"{server.name}: nothing accepted; {dict(merged.errors)}")
    return merged


def warm_up(sender: Sender, server: Server, expect: int) -> int:
    """Untimed requests so both workers have booted, connected and filled their caches; any
    unexpected answer stops the benchmark here. Returns the requests accepted."""
    run = measure(sender, server, expect, WARMUP)
    if run.errors:
        got, log = dict(run.errors), server.log_tail()
        raise RuntimeError(f"{server.name} warm-up: expected {expect}, got {got}\n{log}")
    return run.accepted


def stored_and_enqueued(database_url: str, redis_url: str) -> tuple[int, int]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                sa.select(sa.func.count()).where(inbound_events.c.source == "stripe")
            ).scalar_one()
    finally:
        engine.dispose()
    enqueued = Redis.from_url(redis_url).llen(READY_INBOUND.key)  # ids waiting for a drain job
    return int(stored), int(enqueued)


def ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        redis_server: EmbeddedRedis | None = None
        servers: list[Server] = []
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
            before, queued_before = stored_and_enqueued(database_url, redis_url)

            webhook_secret = "whsec_" + secrets.token_hex(24)
            sender = Sender(webhook_secret)
            env = {
                **os.environ,
                "REDIS_URL": redis_url,
                "DATABASE_URL": database_url,
                "APEX_SECRET_KEY": generate_key(),
                "STRIPE_WEBHOOK_SECRET": webhook_secret,
            }
            bare = Server("bare", "bench.bare_app:app", env, tmp / "bare.log")
            servers.append(bare)
            apex = Server("apex", "app:create_app()", env, tmp / "apex.log")
            servers.append(apex)
            for server in servers:
                server.wait_ready()
            warm_up(sender, bare, 204)
            accepted = warm_up(sender, apex, 202)

            bare_runs: list[Run] = []
            apex_runs: list[Run] = []
            for _ in range(REPEATS):
                bare_runs.append(measure(sender, bare, 204, N))
                apex_runs.append(measure(sender, apex, 202, N))
            accepted += sum(run.accepted for run in apex_runs)

            bare_rate = statistics.median(run.per_s for run in bare_runs)
            apex_rate = statistics.median(run.per_s for run in apex_runs)
            bare_errors: Counter[str] = sum((run.errors for run in bare_runs), Counter())
            apex_errors: Counter[str] = sum((run.errors for run in apex_runs), Counter())
            emit("ingest_throughput", requests=N, clients=CLIENTS, gunicorn_workers=WORKERS,
                 bare_per_s=round(bare_rate), apex_per_s=round(apex_rate),
                 ratio=round(apex_rate / bare_rate, 2), goal=0.6,
                 database=database_url.split(":")[0], bare_errors=dict(bare_errors),
                 apex_errors=dict(apex_errors))  # fmt: skip
            for name, runs in (("bare", bare_runs), ("apex", apex_runs)):
                emit(
                    f"ingest_latency_{name}",
                    p50_ms=ms([percentile(run.latencies, 50) for run in runs]),
                    p99_ms=ms([percentile(run.latencies, 99) for run in runs]),
                    client_cpu_pct=round(statistics.median(run.client_cpu_pct for run in runs)),
                )
            stored, enqueued = stored_and_enqueued(database_url, redis_url)
            emit("ingest_stored_and_enqueued", accepted=accepted, stored=stored - before,
                 enqueued=enqueued - queued_before)  # fmt: skip
        finally:
            for server in servers:
                server.stop()
            if redis_server is not None:
                redis_server.stop()


if __name__ == "__main__":
    main()
