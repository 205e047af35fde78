"""Delivery benchmark: `make bench` (or `python -m bench.delivery`).

Prints one JSON line per figure, each a median over REPEATS runs:
1. throughput: a plain requests.Session loop posting the same bodies to the same local receiver
   (baseline) vs one `python -m workers` process delivering (ratio; goal >= 0.5);
2. fan-out of one event to 1,000 subscriptions: time to store the deliveries and enqueue them;
3. publish -> receipt latency p50/p99 at light load.
What a misbehaving endpoint does to the others' latency is bench/endpoints.py's. Runs against
bench.system: an embedded Redis and a temporary SQLite file unless BENCH_REDIS_URL /
BENCH_DATABASE_URL are set (e.g. a PostgreSQL URL).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from apex.models import attempts, deliveries
from bench.system import DATA, WORKER, System

REPEATS = 3
N = int(os.environ.get("BENCH_DELIVERIES", "2000"))


def emit(figure: str, **values: Any) -> None:
    print(json.dumps({"figure": figure, **values}), flush=True)


def delivered(system: System) -> int:
    with system.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(deliveries.c.status == "delivered")
            ).scalar_one()
        )


def median_of(run: Callable[[], float]) -> float:
    return statistics.median(run() for _ in range(REPEATS))


def baseline_rate(system: System) -> float:
    body = json.dumps({"id": "evt_x", "type": "lead.created", "data": DATA}).encode()
    session = requests.Session()
    url = system.base + "/ok"
    started = time.perf_counter()
    for i in range(N):
        session.post(url, data=body, headers={"content-type": "application/json",
                                              "webhook-id": f"b{i}"})  # fmt: skip
    return N / (time.perf_counter() - started)


def worker_rate(system: System) -> float:
    system.reset()
    system.subscribe(system.base + "/ok", ["lead.created"])
    for _ in range(N):
        system.publish("lead.created")
    system.start(WORKER)
    try:
        deadline = time.monotonic() + 600
        while delivered(system) < N and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        system.stop()
    with system.engine.connect() as conn:
        first, last = conn.execute(
            sa.select(sa.func.min(attempts.c.attempted_at), sa.func.max(attempts.c.attempted_at))
        ).one()
    return (N - 1) / max((last - first).total_seconds(), 1e-6)


def fan_out_seconds(system: System) -> float:
    system.reset()
    for _ in range(1000):
        system.subscribe(system.base + "/ok", ["*"])
    started = time.perf_counter()
    system.publish("lead.created")
    return time.perf_counter() - started


def latencies(system: System, path: str, count: int = 100) -> list[float]:
    sent: dict[str, float] = {}
    for _ in range(count):
        event_id, at = system.publish("lead.created")
        sent[event_id] = at
        time.sleep(0.05)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = {k.split(":", 1)[1]: v for k, v in system.arrivals().items() if k.startswith(path)}
        if len(got) >= count:
            return sorted(got[e] - sent[e] for e in sent)
        time.sleep(0.2)
    raise RuntimeError("deliveries did not arrive")


def percentile(values: list[float], p: float) -> float:
    """The `p`th percentile of sorted `values` (nearest rank)."""
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def light_load(system: System) -> tuple[float, float]:
    system.reset()
    system.subscribe(system.base + "/ok", ["lead.created"])
    system.start(WORKER)
    try:
        time.sleep(1.0)
        values = latencies(system, "/ok")
    finally:
        system.stop()
    return percentile(values, 50) * 1000, percentile(values, 99) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        system = System(Path(tmp))
        try:
            base = median_of(lambda: baseline_rate(system))
            worker = median_of(lambda: worker_rate(system))
            emit("throughput", deliveries=N, baseline_per_s=round(base), worker_per_s=round(worker),
                 ratio=round(worker / base, 2), goal=0.5, database=system.database)  # fmt: skip
            fan = median_of(lambda: fan_out_seconds(system))
            emit("fan_out_1000", seconds=round(fan, 3))
            quiet = [light_load(system) for _ in range(REPEATS)]
            p50 = statistics.median(q[0] for q in quiet)
            p99 = statistics.median(q[1] for q in quiet)
            emit("latency_light_load", p50_ms=round(p50, 1), p99_ms=round(p99, 1))
        finally:
            system.close()


if __name__ == "__main__":
    main()
