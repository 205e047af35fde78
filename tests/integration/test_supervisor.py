"""The worker's supervisor (workers.__main__) on the real Redis: a stop requested while it
restarts RQ's work loop stops the next worker before it takes a job, and a work loop that keeps
quitting at once is restarted with a growing delay, never in a tight loop."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import sqlalchemy as sa
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue
from rq.job import JobStatus

from workers import context
from workers.__main__ import ApexWorker, supervise
from workers.outage import Outage

log = logging.getLogger("test.supervisor")


@pytest.fixture(autouse=True)
def own_signal_handlers() -> Iterator[None]:
    """The worker installs SIGTERM/SIGINT handlers in this process: put pytest's back."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    filters = list(logging.getLogger("rq.worker").filters)
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    logging.getLogger("rq.worker").filters = filters


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'apex.db'}")
    yield engine
    engine.dispose()


def test_a_stop_requested_before_rq_installs_its_handlers_stops_the_next_worker(
    redis_conn: Redis, engine: sa.Engine
) -> None:
    queue = Queue("supervised", connection=redis_conn)
    job = queue.enqueue(time.time)
    stop = threading.Event()
    stop.set()  # SIGTERM reached the supervisor's handler while it restarted the loop
    worker = ApexWorker(
        [queue],
        connection=redis_conn,
        outage=Outage("Redis", log),
        database=Outage("database", log),
        engine=engine,
        stop_requested=stop,
    )
    worker.work(max_jobs=1)  # without the stop, it would take the job and end
    assert job.get_status() == JobStatus.QUEUED


class RecordingStop(threading.Event):
    """A stop event whose waits return at once and are recorded (a clock the test controls)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def test_a_loop_that_keeps_failing_while_redis_answers_ping_restarts_with_a_growing_delay(
    redis_conn: Redis, engine: sa.Engine
) -> None:
    stop = RecordingStop()
    runs = []

    class RefusedAtStart(ApexWorker):
        """Redis answers PING but refuses the worker (a new connection at maxclients)."""

        def work(self, *args: Any, **kwargs: Any) -> bool:
            runs.append(1)
            if len(runs) == 4:
                stop.set()  # the test's SIGTERM
            raise RedisConnectionError("max number of clients reached")

    ctx = cast(context.WorkerContext, SimpleNamespace(redis=redis_conn, engine=engine))
    supervise(ctx, burst=False, logging_level="INFO", stop=stop, worker_class=RefusedAtStart)
    assert len(runs) == 4
    assert stop.waits == [1.0, 2.0, 4.0]  # a delay before every restart, doubling


def test_the_worker_keeps_a_bounded_socket_timeout_longer_than_its_blpop(
    redis_url: str, engine: sa.Engine
) -> None:
    redis = context.redis_client(redis_url)
    worker = ApexWorker(
        ["supervised"],
        connection=redis,
        outage=Outage("Redis", log),
        database=Outage("database", log),
        engine=engine,
        stop_requested=threading.Event(),
    )
    # RQ raises a client's socket timeout to what its own BLPOP needs (70 s by default).
    assert redis.connection_pool.connection_kwargs["socket_timeout"] == context.SOCKET_TIMEOUT
    assert worker.dequeue_timeout < context.SOCKET_TIMEOUT <= 30
    redis.close()
