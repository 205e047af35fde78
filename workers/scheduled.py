"""`python -m workers.scheduled`: the scheduler process (rq-scheduler) and its periodic jobs.

Periodic schedules live in Redis, which can lose its data (a restart without persistence, a
FLUSHALL). So on every pass the scheduler re-registers any periodic job that has gone missing,
under a fixed id; the jobs themselves are idempotent.

Redis going away never ends the process: rq-scheduler's own loop has no error handling (and
its cleanup on the way out needs Redis too), so this one replaces it. Redis commands ride out a
blip with redis-py's retries; a longer outage waits with capped backoff, logging when Redis goes
away, every minute while it stays away, and when it is back.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq_scheduler import Scheduler

from config import Settings, SettingsError, load_settings
from config.logging import configure_logging
from workers import inbound, jobs, retention
from workers.context import redis_client
from workers.outage import Outage

log = logging.getLogger("apex.scheduler")


def periodic(settings: Settings) -> list[tuple[str, Callable[..., Any], int]]:
    """(fixed job id, function, interval in seconds) of every periodic job."""
    return [
        ("apex-periodic-sweep", jobs.sweep, settings.sweep_interval),
        ("apex-periodic-sweep-inbound", inbound.sweep_inbound, settings.sweep_interval),
        ("apex-periodic-connectors", inbound.flush_connectors, settings.connector_sync_interval),
        ("apex-periodic-retention", retention.prune, retention.INTERVAL),
    ]


def ensure_periodic(scheduler: Scheduler, settings: Settings) -> list[str]:
    """Register the periodic jobs that are not scheduled; returns the ids it (re)registered."""
    registered = []
    for job_id, func, interval in periodic(settings):
        if job_id in scheduler:
            continue
        scheduler.schedule(
            scheduled_time=datetime.now(UTC),
            func=func,
            interval=interval,
            repeat=None,
            id=job_id,
            queue_name=jobs.MAINTENANCE,
            result_ttl=interval * 2,
        )
        registered.append(job_id)
    return registered


REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


class SelfHealingScheduler(Scheduler):
    """rq-scheduler that restores its periodic jobs before each pass and keeps running while
    Redis is unreachable."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.outage = Outage("Redis", log)
        self.stop_requested = threading.Event()

    def enqueue_jobs(self) -> Any:
        restored = ensure_periodic(self, self.settings)
        if restored:
            log.info("scheduler: registered periodic jobs %s", ", ".join(restored))
        return super().enqueue_jobs()

    def heartbeat(self) -> None:
        # The key is gone if Redis lost its data: register again, so the scheduler stays listed.
        if not self.connection.expire(self.key, int(self._interval) + 10):
            self.connection.hset(self.key, "birth", datetime.now(UTC).timestamp())
            self.connection.expire(self.key, int(self._interval) + 10)

    def _install_signal_handlers(self) -> None:
        def stop(_signum: int, _frame: FrameType | None) -> None:
            self.stop_requested.set()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

    def run(self, burst: bool = False) -> None:
        """Move due jobs to their queues every `interval` seconds until SIGTERM/SIGINT (or
        after one pass with `burst`). Redis errors are waited out; others propagate."""
        self._install_signal_handlers()
        born = False
        while not self.stop_requested.is_set():
            started = datetime.now(UTC)
            try:
                if not born:
                    self.register_birth()
                    born = True
                self.remove_lock()  # still held if the previous pass broke off
                self.heartbeat()
                if self.acquire_lock():
                    self.enqueue_jobs()
                    self.remove_lock()
                else:
                    log.info("scheduler: another scheduler holds the lock; skipping this pass")
            except REDIS_DOWN as exc:
                self.stop_requested.wait(self.outage.failed(exc))
                continue
            self.outage.ok()
            if burst:
                break
            elapsed = (datetime.now(UTC) - started).total_seconds()
            self.stop_requested.wait(max(self._interval - elapsed, 0))
        self._unregister()

    def _unregister(self) -> None:
        if self.outage.down:  # each command would wait out its timeout before failing
            log.warning("scheduler: Redis unreachable at exit; its lock and key expire")
            return
        try:
            self.remove_lock()
            self.register_death()
        except REDIS_DOWN:
            log.warning("scheduler: Redis unreachable at exit; its lock and key expire")


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"scheduler: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    scheduler = SelfHealingScheduler(
        settings,
        queue_name=jobs.MAINTENANCE,
        connection=redis_client(settings.redis_url, process="scheduler"),
        interval=min(5, settings.sweep_interval),
    )
    log.info("scheduler started")
    scheduler.run()
    log.info("scheduler stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
