"""Delivery benchmark: `make bench` (or `python -m bench.delivery`).

Deliveries per second of one worker process as deployed (`python -m workers` with
`python -m workers.scheduled` running, default settings, one subscription), over HTTPS to
bench/receiver.py (a private CA made for the run, trusted through APEX_CA_BUNDLE), each against
baselines measured in the same run. Events are published as the API does it, directly
(apex.events.publish + workers.jobs.enqueue_deliveries, the web left out: bench/ingest.py
measures the web), DELIVERIES of them before the worker starts; the rate is the deliveries
over the time from the first attempt to the last.

Prints one JSON line per figure, each a median over REPEATS runs:
1. receiver_ceiling: the receiver's CPU per request while one aiohttp process sends to it at 64
   in flight, and the rate it could answer with its cores busy (RECEIVER_PROCESSES processes,
   at most one per core), vs that client's rate: it must be above (ratio >= 1), so the
   receiver is not what limits the figures below. Two client processes would not show more on
   two cores: client and receiver share them;
2. delivery_instant: the worker vs a requests.Session loop over TLS (goal >= 3x) and vs one
   aiohttp process with 64 in flight (the ceiling; goal >= 0.4x), with the worker's and the
   receiver's CPU ms per delivery; worker_first_80pct_per_s is the pace over the first 80% of
   the deliveries, before the tail of those given back for lack of queue room (see README);
3. delivery_slow: a receiver answering after 50 ms, APEX_ENDPOINT_CONCURRENCY=64, vs the
   requests loop (goal >= 40x);
4. delivery_two_workers: two worker processes vs one (figure 2's), instant receiver;
5. fan_out_1000: one event to 1,000 subscriptions, the time to store and enqueue them;
6. latency_light_load: publish -> receipt p50/p99, 20 events a second (goal p99 < 50 ms).
Env: BENCH_REPEATS (3), BENCH_DELIVERIES (3000); BENCH_REDIS_URL / BENCH_DATABASE_URL as in
bench.system.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from apex.models import attempts, deliveries
from bench import clients
from bench.report import REPEATS, emit, median_of, percentile, ratio
from bench.system import RECEIVER_PROCESSES, SCHEDULER, WORKER, System

N = int(os.environ.get("BENCH_DELIVERIES", "3000"))
LOOP_N = 1500  # requests of the requests loop to the instant receiver
SLOW_LOOP_N = 60  # … and to the 50 ms one (about 3 s)
IN_FLIGHT = 64
LIGHT_EVENTS = 100
LIGHT_PAUSE = 0.05  # seconds between two events at light load
DRAIN_WITHIN = 600.0
HEAD = 0.8


@dataclass(frozen=True)
class Drained:
    """One run of the worker(s) sending N deliveries."""

    per_s: float
    head_per_s: float  # over the first HEAD of the deliveries: the pace before any tail
    worker_cpu_ms: float  # per delivery, all worker processes
    receiver_cpu_ms: float  # per delivery


@dataclass(frozen=True)
class Ceiling:
    """One aiohttp process at IN_FLIGHT against the instant receiver, and what the receiver
    spent meanwhile."""

    per_s: float
    receiver_cpu_ms: float  # per request
    receiver_busy: float  # cores the receiver kept busy

    @property
    def receiver_ceiling(self) -> float:
        """Requests/s the receiver could answer with every core it may use busy."""
        cores = min(RECEIVER_PROCESSES, os.cpu_count() or 1)
        return cores * 1000 / max(self.receiver_cpu_ms, 1e-9)

    @staticmethod
    def median(runs: list[Ceiling]) -> Ceiling:
        return Ceiling(
            statistics.median(r.per_s for r in runs),
            statistics.median(r.receiver_cpu_ms for r in runs),
            statistics.median(r.receiver_busy for r in runs),
        )


def burst(system: System, url: str) -> Ceiling:
    cpu, began = system.receiver_cpu_seconds(), time.perf_counter()
    per_s = clients.aiohttp_burst(url, N, IN_FLIGHT, system.ca_file)
    cpu, seconds = system.receiver_cpu_seconds() - cpu, time.perf_counter() - began
    return Ceiling(per_s, cpu / N * 1000, cpu / seconds)


def delivered(system: System) -> int:
    query = sa.select(sa.func.count()).where(deliveries.c.status == "delivered")
    with system.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def drain(system: System, path: str, workers: int = 1, **env: str) -> Drained:
    """N events published for one subscription at `path`, then the worker(s) and the
    scheduler started: the rate from the first attempt to the last, and the CPU spent."""
    system.reset()
    system.subscribe(system.secure_base + path, ["lead.created"])
    for _ in range(N):
        system.publish("lead.created")
    system.start(*[WORKER] * workers, SCHEDULER, **env)
    try:
        cpu, receiver_cpu = system.cpu_seconds(WORKER), system.receiver_cpu_seconds()
        deadline = time.monotonic() + DRAIN_WITHIN
        while delivered(system) < N:
            system.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{delivered(system)} of {N} delivered" + system.tail(WORKER))
            time.sleep(0.2)
        cpu = system.cpu_seconds(WORKER) - cpu
        receiver_cpu = system.receiver_cpu_seconds() - receiver_cpu
    finally:
        system.stop()
    with system.engine.connect() as conn:
        times = list(conn.scalars(sa.select(attempts.c.attempted_at).order_by("attempted_at")))
    if len(times) != N:
        raise RuntimeError(f"{len(times)} attempts for {N} deliveries")
    head = int(N * HEAD)
    return Drained(
        (N - 1) / max((times[-1] - times[0]).total_seconds(), 1e-6),
        (head - 1) / max((times[head - 1] - times[0]).total_seconds(), 1e-6),
        cpu / N * 1000,
        receiver_cpu / N * 1000,
    )


def medians(runs: list[Drained]) -> Drained:
    return Drained(
        statistics.median(r.per_s for r in runs),
        statistics.median(r.head_per_s for r in runs),
        statistics.median(r.worker_cpu_ms for r in runs),
        statistics.median(r.receiver_cpu_ms for r in runs),
    )


def fan_out_seconds(system: System) -> float:
    system.reset()
    for _ in range(1000):
        system.subscribe(system.secure_base + "/ok", ["*"])
    started = time.perf_counter()
    system.publish("lead.created")
    return time.perf_counter() - started


def light_load(system: System) -> list[float]:
    """Publish -> receipt seconds of LIGHT_EVENTS events, one every LIGHT_PAUSE, sorted."""
    system.reset()
    system.subscribe(system.secure_base + "/ok", ["lead.created"])
    system.start(WORKER, SCHEDULER)
    try:
        time.sleep(1.0)
        sent: dict[str, float] = {}
        for _ in range(LIGHT_EVENTS):
            event_id, at = system.publish("lead.created")
            sent[event_id] = at
            time.sleep(LIGHT_PAUSE)
        deadline = time.monotonic() + 60
        while True:
            got = {k.split(":", 1)[1]: v for k, v in system.arrivals().items()}
            if len(got) >= LIGHT_EVENTS:
                return sorted(got[e] - sent[e] for e in sent)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(got)} of {LIGHT_EVENTS} deliveries arrived")
            time.sleep(0.2)
    finally:
        system.stop()


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        system = System(Path(tmp))
        try:
            ok, slow, ca = system.secure_base + "/ok", system.secure_base + "/slow", system.ca_file
            ceiling = Ceiling.median([burst(system, ok) for _ in range(REPEATS)])
            emit("receiver_ceiling", aiohttp_per_s=round(ceiling.per_s),
                 receiver_cpu_ms_per_request=round(ceiling.receiver_cpu_ms, 3),
                 receiver_busy_cores=round(ceiling.receiver_busy, 2),
                 receiver_ceiling_per_s=round(ceiling.receiver_ceiling),
                 ratio=ratio(ceiling.receiver_ceiling, ceiling.per_s), goal=1.0,
                 receiver_processes=len(system.receivers), cores=os.cpu_count(),
                 tls=True)  # fmt: skip
            ceiling_rate = ceiling.per_s

            loop = median_of(lambda: clients.requests_loop(ok, LOOP_N, ca))
            one = medians([drain(system, "/ok") for _ in range(REPEATS)])
            emit("delivery_instant", deliveries=N, worker_per_s=round(one.per_s),
                 worker_first_80pct_per_s=round(one.head_per_s),
                 requests_loop_per_s=round(loop), aiohttp_ceiling_per_s=round(ceiling_rate),
                 ratio_vs_loop=ratio(one.per_s, loop), goal_vs_loop=3.0,
                 ratio_vs_ceiling=ratio(one.per_s, ceiling_rate), goal_vs_ceiling=0.4,
                 worker_cpu_ms_per_delivery=round(one.worker_cpu_ms, 3),
                 receiver_cpu_ms_per_delivery=round(one.receiver_cpu_ms, 3),
                 database=system.database, tls=True)  # fmt: skip

            slow_loop = median_of(lambda: clients.requests_loop(slow, SLOW_LOOP_N, ca))
            slow_env = {"APEX_ENDPOINT_CONCURRENCY": str(IN_FLIGHT)}
            late = medians([drain(system, "/slow", **slow_env) for _ in range(REPEATS)])
            emit("delivery_slow", delay_ms=50, deliveries=N, endpoint_concurrency=IN_FLIGHT,
                 worker_per_s=round(late.per_s), worker_first_80pct_per_s=round(late.head_per_s),
                 requests_loop_per_s=round(slow_loop, 1),
                 ratio_vs_loop=ratio(late.per_s, slow_loop), goal_vs_loop=40.0,
                 ideal_per_s=round(IN_FLIGHT / 0.05),
                 worker_cpu_ms_per_delivery=round(late.worker_cpu_ms, 3),
                 database=system.database, tls=True)  # fmt: skip

            two = medians([drain(system, "/ok", workers=2) for _ in range(REPEATS)])
            emit("delivery_two_workers", deliveries=N, one_worker_per_s=round(one.per_s),
                 two_workers_per_s=round(two.per_s), ratio=ratio(two.per_s, one.per_s),
                 one_worker_first_80pct_per_s=round(one.head_per_s),
                 two_workers_first_80pct_per_s=round(two.head_per_s),
                 worker_cpu_ms_per_delivery=round(two.worker_cpu_ms, 3),
                 cores=os.cpu_count(), database=system.database)  # fmt: skip

            fan = median_of(lambda: fan_out_seconds(system))
            emit("fan_out_1000", seconds=round(fan, 3), database=system.database)

            quiet = [light_load(system) for _ in range(REPEATS)]
            p50 = statistics.median(percentile(q, 50) for q in quiet) * 1000
            p99 = statistics.median(percentile(q, 99) for q in quiet) * 1000
            emit("latency_light_load", events=LIGHT_EVENTS, events_per_s=round(1 / LIGHT_PAUSE),
                 p50_ms=round(p50, 1), p99_ms=round(p99, 1), goal_p99_ms=50,
                 database=system.database, tls=True)  # fmt: skip
        finally:
            system.close()
    emit("delivery_run", seconds=round(time.monotonic() - started), repeats=REPEATS,
         loadavg=os.getloadavg()[0])  # fmt: skip


if __name__ == "__main__":
    main()
