"""Inbound benchmark: `python -m bench.ingest` (part of `make bench`).

The system as deployed: gunicorn -c config/gunicorn.py "app:create_app()" (WEB_CONCURRENCY and
WEB_THREADS at their defaults) with `python -m workers` and `python -m workers.scheduled`
running, and one subscription to every event type at the fast HTTPS receiver, so each inbound
event is verified, stored and enqueued (202), then processed by the worker (the pipeline, and
the webhooks it publishes delivered). CLIENTS concurrent clients post signed Stripe
`payment_intent.succeeded` events, each with a new id signed on the fly with stripe's own
library, for SUSTAIN seconds per run. The baseline is bench/bare_app.py (a Flask route answering
204) under the same gunicorn config, sent the same signed bodies (REQUESTS per run) in the same
run.

Prints one JSON line per figure, each a median over REPEATS runs:
1. ingest_throughput: accepted/s with the worker running vs bare Flask (goal >= 0.6 on SQLite,
   >= 0.8 on PostgreSQL), and the end-to-end rate: events accepted and processed within the
   same SUSTAIN seconds, per second, with the backlog left at the end;
2. ingest_cpu: CPU ms per inbound event of the web (gunicorn, all its processes) and of the
   worker (processing it and delivering what it publishes);
3. ingest_latency_bare / ingest_latency_apex: p50/p99 of the requests, and the clients' CPU as
   a share of one core (near 100, the clients set the pace).
Env: BENCH_REPEATS (3), BENCH_SUSTAIN (seconds, 30), BENCH_INGEST_REQUESTS (baseline requests
per run, 3000); BENCH_REDIS_URL / BENCH_DATABASE_URL as in bench.system.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import tempfile
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests
import sqlalchemy as sa
import stripe

from apex.models import inbound_events
from bench.report import REPEATS, emit, percentile, ratio
from bench.system import BARE, SCHEDULER, WEB, WORKER, System

CLIENTS = 8
N = int(os.environ.get("BENCH_INGEST_REQUESTS", "3000"))
SUSTAIN = float(os.environ.get("BENCH_SUSTAIN", "30"))
WARMUP = CLIENTS * 20  # untimed requests per server before the first run
RUN_SECONDS = 120.0  # a counted run stops sending after this long, whatever is left
SETTLE_WITHIN = 20.0  # seconds the worker may take to clear a run's backlog before the next
REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read
PATH = "/api/webhooks/stripe"
GOALS = {"sqlite": 0.6, "postgresql": 0.8}
CUSTOMERS = 1000


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


@dataclass(frozen=True)
class Sustained:
    """One SUSTAIN-second run against the deployed system."""

    run: Run
    processed: int  # events the worker finished within the run
    backlog: int  # accepted, not yet processed, at the end
    web_cpu_ms: float  # per accepted event
    worker_cpu_ms: float  # per processed event

    @property
    def processed_per_s(self) -> float:
        return self.processed / max(self.run.seconds, 1e-9)


class Sender:
    """Builds and signs a Stripe `payment_intent.succeeded` event with a new id per request,
    from one of CUSTOMERS customers (picked by the id), so the leads' histories stay the size
    a real stream gives them instead of one lead piling up every payment."""

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
        customer = zlib.crc32(event_id.encode()) % CUSTOMERS
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
                        "customer": f"cus_bench{customer}",
                        "receipt_email": f"buyer{customer}@example.com",
                        "status": "succeeded",
                        "metadata": {"plan": "growth"},
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
    sender: Sender,
    url: str,
    expect: int,
    prefix: str,
    count: int | None,
    until: float,
    start: threading.Barrier,
) -> Run:
    """One client: its own keep-alive Session, `count` requests in a row (None: as many as fit),
    each signed on the fly, until `until` seconds after the start."""
    run = Run()
    with requests.Session() as session:
        start.wait()
        deadline = time.monotonic() + until
        n = 0
        while count is None or n < count:
            if time.monotonic() > deadline:
                if count is not None:
                    run.errors["unsent_at_deadline"] += count - n
                break
            body, headers = sender.signed(f"evt_{prefix}_{n}")
            n += 1
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


def measure(
    sender: Sender, url: str, expect: int, total: int | None, seconds: float = RUN_SECONDS
) -> Run:
    """`total` requests (None: for `seconds`) from CLIENTS clients started together; the clock
    runs from their common start to the last answer."""
    start = threading.Barrier(CLIENTS + 1, timeout=30)
    batch = sender.batch()
    counts: list[int | None] = [None] * CLIENTS
    if total is not None:
        counts = [total // CLIENTS + (1 if i < total % CLIENTS else 0) for i in range(CLIENTS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [
            pool.submit(client, sender, url, expect, f"{batch}c{i}", counts[i], seconds, start)
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
        raise RuntimeError(f"{url}: nothing accepted; {dict(merged.errors)}")
    return merged


def warm_up(sender: Sender, system: System, module: str, expect: int) -> None:
    """Untimed requests so both web workers have booted, connected and filled their caches; any
    unexpected answer stops the benchmark here."""
    run = measure(sender, system.web_base + PATH, expect, WARMUP)
    if run.errors:
        got = dict(run.errors)
        raise RuntimeError(f"{module} warm-up: expected {expect}, got {got}{system.tail(module)}")


def counts(system: System) -> tuple[int, int]:
    """Stripe events stored, and those the worker is done with (processed, ignored, failed)."""
    done = sa.func.sum(sa.case((inbound_events.c.status != "queued", 1), else_=0))
    query = sa.select(sa.func.count(), done).where(inbound_events.c.source == "stripe")
    with system.engine.connect() as conn:
        stored, finished = conn.execute(query).one()
    return int(stored), int(finished or 0)


def settle(system: System) -> None:
    """Wait (up to SETTLE_WITHIN) until the worker has processed every stored event."""
    deadline = time.monotonic() + SETTLE_WITHIN
    while time.monotonic() < deadline:
        stored, finished = counts(system)
        if finished >= stored:
            return
        system.check()
        time.sleep(0.5)


def sustained(sender: Sender, system: System) -> Sustained:
    settle(system)
    _, finished = counts(system)
    web, worker = system.cpu_seconds(WEB), system.cpu_seconds(WORKER)
    run = measure(sender, system.web_base + PATH, 202, None, SUSTAIN)
    web, worker = system.cpu_seconds(WEB) - web, system.cpu_seconds(WORKER) - worker
    stored, now_finished = counts(system)
    processed = now_finished - finished
    return Sustained(
        run,
        processed,
        stored - now_finished,
        web / max(run.accepted, 1) * 1000,
        worker / max(processed, 1) * 1000,
    )


def statuses(system: System) -> dict[str, int]:
    query = sa.select(inbound_events.c.status, sa.func.count()).group_by(inbound_events.c.status)
    with system.engine.connect() as conn:
        return {status: int(n) for status, n in conn.execute(query)}


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        system = System(Path(tmp))
        try:
            system.reset()
            system.subscribe(system.secure_base + "/ok", ["*"])
            webhook_secret = "whsec_" + secrets.token_hex(24)
            sender = Sender(webhook_secret)
            env = {"STRIPE_WEBHOOK_SECRET": webhook_secret}

            system.start(BARE, **env)
            warm_up(sender, system, BARE, 204)
            bare_runs = [measure(sender, system.web_base + PATH, 204, N) for _ in range(REPEATS)]
            system.stop()

            system.start(WEB, WORKER, SCHEDULER, **env)
            warm_up(sender, system, WEB, 202)
            apex = [sustained(sender, system) for _ in range(REPEATS)]
            settle(system)
            statuses_seen = statuses(system)
            system.stop()
        finally:
            system.close()

    def median(values: list[float]) -> float:
        return statistics.median(values)

    bare_rate = median([r.per_s for r in bare_runs])
    accepted = median([s.run.per_s for s in apex])
    processed = median([s.processed_per_s for s in apex])
    end_to_end = median([min(s.run.per_s, s.processed_per_s) for s in apex])
    emit("ingest_throughput", database=system.database, clients=CLIENTS,
         sustain_s=SUSTAIN, bare_per_s=round(bare_rate), accepted_per_s=round(accepted),
         ratio=ratio(accepted, bare_rate), goal=GOALS.get(system.database),
         processed_per_s=round(processed), end_to_end_per_s=round(end_to_end),
         end_to_end_ratio=ratio(end_to_end, bare_rate),
         backlog_at_end=[s.backlog for s in apex],
         bare_errors=dict(sum((r.errors for r in bare_runs), Counter())),
         apex_errors=dict(sum((s.run.errors for s in apex), Counter())))  # fmt: skip
    emit("ingest_cpu", database=system.database,
         web_cpu_ms_per_event=round(median([s.web_cpu_ms for s in apex]), 2),
         worker_cpu_ms_per_event=round(median([s.worker_cpu_ms for s in apex]), 2),
         statuses=statuses_seen)  # fmt: skip
    for name, runs in (("bare", bare_runs), ("apex", [s.run for s in apex])):
        emit(
            f"ingest_latency_{name}",
            p50_ms=round(median([percentile(r.latencies, 50) for r in runs]) * 1000, 2),
            p99_ms=round(median([percentile(r.latencies, 99) for r in runs]) * 1000, 2),
            client_cpu_pct=round(median([r.client_cpu_pct for r in runs])),
        )
    emit("ingest_run", seconds=round(time.monotonic() - started), repeats=REPEATS,
         loadavg=os.getloadavg()[0])  # fmt: skip


if __name__ == "__main__":
    main()
