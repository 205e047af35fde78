"""`python -m workers`: an RQ worker on the project's queues, with RQ's scheduler for retries.

It runs jobs in-process (SimpleWorker): deliveries go to a thread pool that outlives each job,
so one process keeps many requests in flight. SIGTERM (a dyno restart) is a warm shutdown: the
current job finishes, then every delivery in flight completes before the process exits.

Redis going away never ends the process. RQ's work loop rides out an outage while it waits for
a job, but quits on one that strikes anywhere else (mid-job, say: "found an unhandled exception,
quitting"); so this entry point supervises it: when the loop ends without a stop request, it
waits for Redis with capped backoff and starts a fresh worker. Jobs lost meanwhile are found by
the sweepers, since the database is the truth. A database outage pauses the worker instead
(see ApexWorker). Each outage is logged when it starts, every minute while it lasts, and when
it ends.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

import sqlalchemy as sa
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import StopRequested
from rq.scheduler import RQScheduler
from sqlalchemy.engine import Engine

from apex.db import reading, unreachable
from config import SettingsError, load_settings
from config.logging import configure_logging
from workers import context, dispatcher, jobs
from workers.context import SOCKET_TIMEOUT
from workers.outage import MAX_DELAY, Outage

log = logging.getLogger("apex.worker")

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)
DEQUEUE_TIMEOUT = 5  # seconds RQ's BLPOP waits for a job: shorter than the socket timeout
QUICK_QUIT = 30.0  # a work loop that ended sooner than this after its start restarts later
MAX_RESTART_DELAY = 30.0


class RetryScheduler(RQScheduler):
    """RQ's scheduler (it moves jobs enqueued with `enqueue_in`, our retries, to their queues
    when due; the worker runs it in a child process) with a loop that waits out Redis outages
    instead of ending the child until the worker's next maintenance pass."""

    def work(self) -> None:
        outage = Outage("Redis", logging.getLogger("apex.worker.scheduler"))
        self._install_signal_handlers()
        while not self._stop_requested:
            try:
                self.register_birth()  # idempotent; restores the entry if Redis lost it
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
            except REDIS_DOWN as exc:
                time.sleep(outage.failed(exc))
                continue
            outage.ok()
            time.sleep(self.interval)
        if outage.down:
            return  # its locks and entry expire on their own; each command would time out
        try:
            self.stop()
        except REDIS_DOWN:
            pass  # its locks and entry expire on their own


class ApexWorker(SimpleWorker):
    """SimpleWorker that knows whether it was asked to stop, reports Redis outages through
    `outage`, and whose teardown does not fail while Redis is down.

    A job that failed because the database was unreachable pauses the worker: it takes no
    further job until the database answers again (each would fail the same way), checking
    with capped backoff while it keeps its registration in Redis alive."""

    max_connection_wait_time = MAX_DELAY  # RQ's own wait between dequeue retries (its cap)
    # RQ waits for a job with BLPOP for `dequeue_timeout` seconds and raises the client's
    # socket timeout to `connection_timeout` (by default 60 s and 70 s). Ours keep BLPOP well
    # inside the client's bounded socket timeout (workers.context), so a Redis that stops
    # answering fails a command within SOCKET_TIMEOUT instead of hanging the worker.
    dequeue_timeout = DEQUEUE_TIMEOUT
    connection_timeout = SOCKET_TIMEOUT

    def __init__(
        self,
        *args: Any,
        outage: Outage,
        database: Outage,
        engine: Engine,
        stop_requested: threading.Event,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.outage = outage
        self.database = database
        self.engine = engine
        self.stop_requested = stop_requested
        self.push_exc_handler(self._note_database_outage)

    def _note_database_outage(
        self, _job: Any, _type: type[BaseException], exc: BaseException, _tb: Any
    ) -> bool:
        if unreachable(exc):
            self.database.failed(exc)
        return True  # on to RQ's next handler

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        # A stop requested before RQ's handlers were in place (while the supervisor restarted
        # the loop) reached only the supervisor's: RQ's loop checks its own flag.
        if self.stop_requested.is_set():
            self._stop_requested = True

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> Any:
        while self.database.down and not self.stop_requested.is_set():
            try:
                with reading(self.engine) as conn:
                    conn.execute(sa.text("SELECT 1"))
            except sa.exc.SQLAlchemyError as exc:
                if not unreachable(exc):
                    raise
                self.heartbeat()
                self.stop_requested.wait(self.database.failed(exc))
                continue
            self.database.ok()
        if self.stop_requested.is_set():
            raise StopRequested()  # take no further job (RQ's loop ends on this)
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested.set()
        # The current job may wait for a delivery slot: let it hand the rest back at once, and
        # bound the attempts in flight (a thread: the handler must take no locks itself).
        threading.Thread(target=dispatcher.stop_all, name="stop", daemon=True).start()
        super().request_stop(signum, frame)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        super().heartbeat(timeout, pipeline)
        if pipeline is None:  # the commands ran: Redis answers
            self.outage.ok()

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        # RQ's own, with RetryScheduler in place of RQScheduler.
        self.scheduler = RetryScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if not burst:
            self.scheduler.start()
            return
        try:
            self.scheduler.register_birth()
            self.scheduler.enqueue_scheduled_jobs()
        finally:
            self.scheduler.release_locks()
            self.scheduler.register_death()

    def teardown(self) -> None:
        if self.outage.down:
            # Unregistering needs Redis, and against one that does not answer each command
            # waits out its socket timeout: skip it (the worker's key expires by itself,
            # worker_ttl) and stop what would go on retrying.
            if self.scheduler is not None:
                self.stop_scheduler()
            if self.pubsub_thread is not None:
                self.pubsub_thread.stop()
            return
        try:
            super().teardown()
        except REDIS_DOWN:
            # Unregistering needs Redis; the worker's key expires by itself (worker_ttl). The
            # pubsub thread would retry forever: stop it.
            if self.pubsub_thread is not None:
                self.pubsub_thread.stop()


class RedisOutageLines(logging.Filter):
    """Turns RQ's line-per-retry reports of an unreachable Redis into the outage's state changes
    (down, still down every minute, back)."""

    def __init__(self, outage: Outage) -> None:
        super().__init__()
        self.outage = outage

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None and isinstance(record.args, tuple):
            exc = next((a for a in record.args if isinstance(a, BaseException)), None)
        if isinstance(exc, REDIS_DOWN):
            self.outage.failed(exc)
            return False
        return True


def wait_for_redis(redis: Redis, outage: Outage, stop: threading.Event) -> None:
    """Return once Redis answers PING or `stop` is set, retrying with capped backoff."""
    while not stop.is_set():
        try:
            redis.ping()
        except REDIS_DOWN as exc:
            stop.wait(outage.failed(exc))
            continue
        outage.ok()
        return


def supervise(
    ctx: context.WorkerContext,
    burst: bool,
    logging_level: str,
    stop: threading.Event | None = None,
    worker_class: type[ApexWorker] = ApexWorker,
) -> None:
    """Run RQ's work loop until asked to stop (or, with `burst`, until the queues are empty),
    starting a fresh worker whenever the loop quits on its own. A loop that quits soon after its
    start is restarted after a delay that doubles each time (1 s up to MAX_RESTART_DELAY s),
    whatever the cause, so a failure that recurs at once never makes the supervisor spin."""
    outage = Outage("Redis", log)
    database = Outage("database", log)
    logging.getLogger("rq.worker").addFilter(RedisOutageLines(outage))
    stop = stop if stop is not None else threading.Event()
    # Until a worker installs RQ's handlers (it does so only once registered with Redis), and
    # between two work loops, a stop request sets `stop`; the worker checks it once its own
    # handlers are in place (ApexWorker).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    restart_delay = 0.0
    while not stop.is_set():
        started = time.monotonic()
        worker: ApexWorker | None = None
        try:
            worker = worker_class(  # RQ's constructor names its connection: it needs Redis
                list(jobs.QUEUES),
                connection=ctx.redis,
                worker_ttl=75,
                maintenance_interval=60,
                default_result_ttl=jobs.RESULT_TTL,
                outage=outage,
                database=database,
                engine=ctx.engine,
                stop_requested=stop,
            )
            worker.work(burst=burst, with_scheduler=True, logging_level=logging_level)
        except REDIS_DOWN as exc:  # raised before RQ's loop: registering, starting its scheduler
            outage.failed(exc)
            if worker is not None:
                worker.teardown()
        if stop.is_set() or (burst and not outage.down):
            return
        # Between two work loops, a stop request must not reach the old worker's handlers.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda _signum, _frame: stop.set())
        quick = time.monotonic() - started < QUICK_QUIT
        restart_delay = min(max(restart_delay * 2, 1.0), MAX_RESTART_DELAY) if quick else 0.0
        if outage.down:
            log.warning("work loop ended without a stop request; restarting once Redis answers")
            wait_for_redis(ctx.redis, outage, stop)
            # PING answering does not mean the worker can start (Redis may refuse its pubsub
            # connection at maxclients, say): a loop that keeps quitting still waits.
            if restart_delay and not stop.is_set():
                log.warning("Redis answers; restarting the work loop in %.0f s", restart_delay)
        else:  # some other failure, which RQ logged
            log.warning(
                "work loop ended without a stop request; restarting in %.0f s", restart_delay
            )
        stop.wait(restart_delay)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    ctx = context.configure(settings)
    try:
        supervise(ctx, args.burst, settings.log_level)
    finally:
        jobs.shutdown()
        log.info("worker stopped; deliveries in flight finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
