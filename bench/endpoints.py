"""Endpoint isolation benchmark: `python -m bench.endpoints` (part of `make bench`).

What one misbehaving endpoint does to the latency of healthy ones, on the processes as deployed
(`python -m workers` and `python -m workers.scheduled`, with APEX_REQUEST_TIMEOUT=5). In each
scenario HEALTHY subscriptions point at the fast receiver (bench/receiver.py) and, except in
`none` (the baseline), one more at a receiver of tests/integration/hostile.py that misbehaves as
the scenario is named; all want lead.created. Events are published at RATE per second for
SECONDS seconds (each to every subscription, so the bad endpoint's deliveries pile up), and each
healthy delivery's publish -> arrival latency is measured.

Prints one JSON line per scenario: the healthy deliveries' p50 and p99, each the median over
REPEATS runs (the scenarios take turns within each round; each run's p99 is listed too, to show
the spread), their ratios to `none` from the same run (the goal: a p99 ratio of at most 1.5),
the healthy deliveries still missing WAIT seconds after the last publish (counted at that wait,
so the percentiles are then lower bounds), the attempts made at the bad endpoint, and the RQ
jobs the worker ran per run. A last line gives the run's RQ jobs in all and its duration.

Env: BENCH_REPEATS (3), BENCH_RATE (events/s, 20), BENCH_SECONDS (25); BENCH_REDIS_URL and
BENCH_DATABASE_URL as in bench.system.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

import sqlalchemy as sa

from apex.models import attempts, deliveries
from bench.report import REPEATS, emit, percentile, ratio
from bench.system import SCHEDULER, START_WITHIN, WORKER, JobCounts, System
from tests.integration.hostile import HostileReceiver

SCENARIOS = ("none", "hang", "drip_headers", "drip_body", "never_read")
RATE = int(os.environ.get("BENCH_RATE", "20"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "25"))
HEALTHY = 5
EVENT = "lead.created"
REQUEST_TIMEOUT = "5"  # APEX_REQUEST_TIMEOUT of the worker: how long a bad endpoint holds a slot
WAIT = 30.0  # seconds after the last publish a healthy delivery may still arrive in
GOAL = 1.5  # p99 of the healthy deliveries with a bad endpoint / without, at most


@dataclass(frozen=True)
class Run:
    """One scenario's run: healthy latencies (seconds, sorted) and what else was counted."""

    latencies: list[float]
    undelivered: int
    events_per_s: float
    bad_attempts: int
    jobs: JobCounts


def _serve_hostile(mode: str, url: Connection, stop: Event) -> None:
    # The lowest priority: never_read's receiver polls its unread sockets in a busy loop (more
    # than a core), CPU the system under test would otherwise lose to the benchmark's fixture.
    os.nice(19)
    with HostileReceiver.serving(mode) as receiver:
        url.send(receiver.url)
        stop.wait()


@contextmanager
def hostile(mode: str) -> Iterator[str]:
    """A HostileReceiver in a process of its own at the lowest priority, so its threads take
    no CPU from the process that times the publishes nor from the system under test; yields
    the URL to subscribe. Raises RuntimeError if it does not come up."""
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    stop = spawn.Event()
    process = spawn.Process(target=_serve_hostile, args=(mode, theirs, stop), daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + START_WITHIN
        while not ours.poll(0.05):
            if not process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {mode} receiver did not come up")
        yield str(ours.recv())
    finally:
        stop.set()
        process.join(START_WITHIN)
        if process.is_alive():
            process.terminate()
            process.join()


def publish_steadily(system: System) -> tuple[dict[str, float], float]:
    """Publish RATE events a second for SECONDS seconds, each on its own schedule (a late one
    does not push the others back); returns when each was published, by id, and the rate
    achieved. Raises RuntimeError as soon as a process of the system has exited."""
    sent: dict[str, float] = {}
    started = time.monotonic()
    for i in range(RATE * SECONDS):
        pause = started + i / RATE - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        event_id, at = system.publish(EVENT)
        sent[event_id] = at
        if i % RATE == 0:
            system.check()
    return sent, len(sent) / (time.monotonic() - started)


def healthy_latencies(
    system: System, sent: dict[str, float], paths: list[str]
) -> tuple[list[float], int]:
    """Each healthy delivery's publish -> arrival seconds, sorted, waiting up to WAIT seconds for
    the last ones; one still missing counts as the time waited for it. Returns them and how
    many were missing."""
    deadline = time.monotonic() + WAIT
    wanted = [(f"{path}:{event_id}", at) for path in paths for event_id, at in sent.items()]
    while True:
        arrived = system.arrivals()
        now = time.time()
        if all(key in arrived for key, _ in wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    latencies = sorted(arrived.get(key, now) - at for key, at in wanted)
    return latencies, sum(key not in arrived for key, _ in wanted)


def attempts_at(system: System, subscription_id: str) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(attempts.join(deliveries, attempts.c.delivery_id == deliveries.c.id))
        .where(deliveries.c.subscription_id == subscription_id)
    )
    with system.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def run(system: System, mode: str) -> Run:
    """One run of scenario `mode` on a fresh database and Redis, with fresh processes."""
    system.reset()
    paths = [f"/ok/{n}" for n in range(1, HEALTHY + 1)]
    with ExitStack() as stack:
        for path in paths:
            system.subscribe(system.base + path, [EVENT])
        bad = None
        if mode != "none":
            bad = system.subscribe(stack.enter_context(hostile(mode)), [EVENT])
        stack.callback(system.stop)  # before the bad receiver stops: the worker's attempts end
        system.start(WORKER, SCHEDULER, APEX_REQUEST_TIMEOUT=REQUEST_TIMEOUT)
        sent, rate = publish_steadily(system)
        latencies, undelivered = healthy_latencies(system, sent, paths)
        system.check()
    if undelivered:
        print(f"bench: {mode}: {undelivered} healthy deliveries missing; the worker's log ends:"
              f"{system.tail(WORKER)}", file=sys.stderr, flush=True)  # fmt: skip
    return Run(
        latencies, undelivered, rate, attempts_at(system, bad) if bad else 0, system.jobs_run()
    )


def main() -> None:
    started = time.monotonic()
    runs: dict[str, list[Run]] = {mode: [] for mode in SCENARIOS}
    with tempfile.TemporaryDirectory() as tmp:
        system = System(Path(tmp))
        try:
            for _ in range(REPEATS):
                for mode in SCENARIOS:
                    runs[mode].append(run(system, mode))
        finally:
            system.close()

    def median(mode: str, p: float) -> float:
        return statistics.median(percentile(r.latencies, p) for r in runs[mode]) * 1000

    base50, base99 = median("none", 50), median("none", 99)
    for mode in SCENARIOS:
        p50, p99 = median(mode, 50), median(mode, 99)
        emit(
            "healthy_endpoint_latency",
            scenario=mode,
            healthy=HEALTHY,
            bad=int(mode != "none"),
            events=RATE * SECONDS,
            events_per_s=round(statistics.median(r.events_per_s for r in runs[mode]), 1),
            p50_ms=round(p50, 1),
            p99_ms=round(p99, 1),
            p99_ms_runs=[round(percentile(r.latencies, 99) * 1000, 1) for r in runs[mode]],
            p50_ratio_vs_none=ratio(p50, base50),
            p99_ratio_vs_none=ratio(p99, base99),
            goal=GOAL,
            undelivered=sum(r.undelivered for r in runs[mode]),
            bad_attempts=statistics.median(r.bad_attempts for r in runs[mode]),
            rq_jobs_per_run=statistics.median(r.jobs.finished + r.jobs.failed for r in runs[mode]),
            rq_jobs_failed=sum(r.jobs.failed for r in runs[mode]),
            repeats=REPEATS,
            request_timeout_s=float(REQUEST_TIMEOUT),
            database=system.database,
        )
    jobs = [r.jobs for mode_runs in runs.values() for r in mode_runs]
    emit(
        "endpoints_run",
        rq_jobs=sum(j.finished + j.failed for j in jobs),
        rq_jobs_failed=sum(j.failed for j in jobs),
        seconds=round(time.monotonic() - started),
    )


if __name__ == "__main__":
    main()
