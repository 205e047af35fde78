"""`python -m workers.scheduled`: the scheduler process (rq-scheduler) and its periodic jobs.

Periodic schedules live in Redis, which can lose its data (a restart without persistence, a
FLUSHALL). So on every pass the scheduler re-registers any periodic job that has gone missing,
under a fixed id; the jobs themselves are idempotent.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq_scheduler import Scheduler

from config import Settings, SettingsError, load_settings
from config.logging import configure_logging
from workers import inbound, jobs

log = logging.getLogger("apex.scheduler")


def periodic(settings: Settings) -> list[tuple[str, Callable[..., Any], int]]:
    """(fixed job id, function, interval in seconds) of every periodic job."""
    return [
        ("apex-periodic-sweep", jobs.sweep, settings.sweep_interval),
        ("apex-periodic-sweep-inbound", inbound.sweep_inbound, settings.sweep_interval),
        ("apex-periodic-connectors", inbound.flush_connectors, settings.connector_sync_interval),
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


class SelfHealingScheduler(Scheduler):
    """rq-scheduler that restores its periodic jobs before each pass."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings

    def enqueue_jobs(self) -> Any:
        restored = ensure_periodic(self, self.settings)
        if restored:
            log.info("scheduler: registered periodic jobs %s", ", ".join(restored))
        return super().enqueue_jobs()


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
        connection=Redis.from_url(settings.redis_url),
        interval=min(5, settings.sweep_interval),
    )
    log.info("scheduler started")
    scheduler.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
