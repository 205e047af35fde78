"""Delivery benchmark: `make bench` (or `python -m bench.delivery`).

Prints one JSON line per figure, each a median over REPEATS runs:
1. throughput: a plain requests.Session loop posting the same bodies to the same local receiver
   (baseline) vs one `python -m workers` process delivering (ratio; goal >= 0.5);
2. fan-out of one event to 1,000 subscriptions: time to store the deliveries and enqueue them;
3. publish -> receipt latency p50/p99 at light load;
4. the same latency for a healthy endpoint while another endpoint hangs (vs 3).
Uses an embedded Redis and a temporary SQLite file unless BENCH_REDIS_URL / BENCH_DATABASE_URL
are set (e.g. a PostgreSQL URL).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
from redis import Redis

from apex import subscriptions
from apex.db import make_engine
from apex.events import publish
from apex.models import attempts, deliveries, metadata
from apex.secretbox import SecretBox, generate_key
from config.settings import _database_url
from launcher.embedded_redis import EmbeddedRedis, free_port
from workers import jobs

REPEATS = 3
N = int(os.environ.get("BENCH_DELIVERIES", "2000"))
DATA = {
    "lead": {"id": "lead_bench", "email": "ada@example.com", "revenue": 12000, "pad": "x" * 300}
}


def emit(figure: str, **values: Any) -> None:
    print(json.dumps({"figure": figure, **values}), flush=True)


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.redis_server = None
        redis_url = os.environ.get("BENCH_REDIS_URL")
        if not redis_url:
            self.redis_server = EmbeddedRedis(tmp / "redis", persist=False).start()
            redis_url = self.redis_server.url
        self.redis_url = redis_url
        self.redis = Redis.from_url(redis_url)
        self.database_url = _database_url(
            os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{tmp / 'bench.db'}"
        )
        self.engine = make_engine(self.database_url)
        self.key = generate_key()
        self.box = SecretBox(self.key)
        self.port = free_port(18080)
        self.receiver = subprocess.Popen([sys.executable, "-m", "bench.receiver", str(self.port)])
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                requests.get(self.base + "/stats", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        self.worker: subprocess.Popen[bytes] | None = None

    def reset(self) -> None:
        metadata.drop_all(self.engine)
        metadata.create_all(self.engine)
        self.redis.flushdb()
        requests.delete(self.base + "/stats", timeout=5)

    def start_worker(self, **env: str) -> None:
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "workers"],
            env={
                **os.environ,
                "REDIS_URL": self.redis_url,
                "DATABASE_URL": self.database_url,
                "APEX_SECRET_KEY": self.key,
                "APEX_ALLOW_HTTP": "1",
                "APEX_ALLOW_PRIVATE_DESTINATIONS": "1",
                "APEX_LOG_LEVEL": "WARNING",
                **env,
            },
        )

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.send_signal(signal.SIGTERM)
            self.worker.wait(60)
            self.worker = None

    def subscribe(self, path: str, events: list[str]) -> str:
        sub, _ = subscriptions.create(self.engine, self.box, self.base + path, events)
        return sub.id

    def publish(self, event_type: str) -> tuple[str, float]:
        started = time.time()
        published = publish(self.engine, event_type, DATA)
        jobs.enqueue_deliveries(self.redis, published.pending)
        return published.id, started

    def delivered(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(deliveries.c.status == "delivered")
                ).scalar_one()
            )

    def arrivals(self) -> dict[str, float]:
        return dict(requests.get(self.base + "/stats", timeout=5).json())

    def close(self) -> None:
        self.stop_worker()
        self.receiver.terminate()
        self.receiver.wait()
        self.engine.dispose()
        if self.redis_server is not None:
            self.redis_server.stop()


def median_of(run: Callable[[], float]) -> float:
    return statistics.median(run() for _ in range(REPEATS))


def baseline_rate(bench: Bench) -> float:
    body = json.dumps({"id": "evt_x", "type": "lead.created", "data": DATA}).encode()
    session = requests.Session()
    url = bench.base + "/ok"
    started = time.perf_counter()
    for i in range(N):
        session.post(url, data=body, headers={"content-type": "application/json",
                                              "webhook-id": f"b{i}"})  # fmt: skip
    return N / (time.perf_counter() - started)


def worker_rate(bench: Bench) -> float:
    bench.reset()
    bench.subscribe("/ok", ["lead.created"])
    for _ in range(N):
        bench.publish("lead.created")
    bench.start_worker()
    deadline = time.monotonic() + 600
    while bench.delivered() < N and time.monotonic() < deadline:
        time.sleep(0.2)
    bench.stop_worker()
    with bench.engine.connect() as conn:
        first, last = conn.execute(
            sa.select(sa.func.min(attempts.c.attempted_at), sa.func.max(attempts.c.attempted_at))
        ).one()
    return (N - 1) / max((last - first).total_seconds(), 1e-6)


def fan_out_seconds(bench: Bench) -> float:
    bench.reset()
    for _ in range(1000):
        bench.subscribe("/ok", ["*"])
    started = time.perf_counter()
    bench.publish("lead.created")
    return time.perf_counter() - started


def latencies(bench: Bench, path: str, count: int = 100) -> list[float]:
    sent: dict[str, float] = {}
    for _ in range(count):
        event_id, at = bench.publish("lead.created")
        sent[event_id] = at
        time.sleep(0.05)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = {k.split(":", 1)[1]: v for k, v in bench.arrivals().items() if k.startswith(path)}
        if len(got) >= count:
            return sorted(got[e] - sent[e] for e in sent)
        time.sleep(0.2)
    raise RuntimeError("deliveries did not arrive")


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def light_load(bench: Bench, hanging: bool) -> tuple[float, float]:
    bench.reset()
    bench.subscribe("/ok", ["lead.created"])
    if hanging:
        bench.subscribe("/hang", ["lead.created"])
    bench.start_worker(APEX_REQUEST_TIMEOUT="10")
    time.sleep(1.0)
    values = latencies(bench, "/ok")
    bench.stop_worker()
    return percentile(values, 50) * 1000, percentile(values, 99) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            base = median_of(lambda: baseline_rate(bench))
            worker = median_of(lambda: worker_rate(bench))
            database = bench.database_url.split(":")[0]
            emit("throughput", deliveries=N, baseline_per_s=round(base), worker_per_s=round(worker),
                 ratio=round(worker / base, 2), goal=0.5, database=database)  # fmt: skip
            fan = median_of(lambda: fan_out_seconds(bench))
            emit("fan_out_1000", seconds=round(fan, 3))
            quiet = [light_load(bench, hanging=False) for _ in range(REPEATS)]
            p50 = statistics.median(q[0] for q in quiet)
            p99 = statistics.median(q[1] for q in quiet)
            emit("latency_light_load", p50_ms=round(p50, 1), p99_ms=round(p99, 1))
            loud = [light_load(bench, hanging=True) for _ in range(REPEATS)]
            h50 = statistics.median(q[0] for q in loud)
            h99 = statistics.median(q[1] for q in loud)
            emit("latency_with_hanging_endpoint", p50_ms=round(h50, 1), p99_ms=round(h99, 1),
                 p50_ratio_vs_quiet=round(h50 / p50, 2))  # fmt: skip
        finally:
            bench.close()


if __name__ == "__main__":
    main()
