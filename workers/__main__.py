"""`python -m workers`: an RQ worker on the project's queues, with RQ's scheduler for retries.

It runs jobs in-process (SimpleWorker): deliveries go to a thread pool that outlives each job,
so one process keeps many requests in flight. SIGTERM (a dyno restart) is a warm shutdown: the
current job finishes, then every delivery in flight completes before the process exits.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rq import SimpleWorker

from config import SettingsError, load_settings
from config.logging import configure_logging
from workers import context, jobs

log = logging.getLogger("apex.worker")


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
    worker = SimpleWorker(
        list(jobs.QUEUES),
        connection=ctx.redis,
        worker_ttl=75,
        maintenance_interval=60,
        default_result_ttl=jobs.RESULT_TTL,
    )
    try:
        worker.work(burst=args.burst, with_scheduler=True, logging_level=settings.log_level)
    finally:
        jobs.shutdown()
        log.info("worker stopped; deliveries in flight finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
