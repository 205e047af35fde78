"""The retention job: every few minutes, delete what APEX_RETENTION_DAYS and
APEX_FAILED_RETENTION_DAYS no longer keep (see apex.retention)."""

from __future__ import annotations

import logging

from apex import metrics, retention
from apex.db import utcnow
from workers import context

log = logging.getLogger("apex.jobs")

INTERVAL = 600  # seconds between passes
# A pass stops after this long and the next goes on, well inside RQ's default job timeout
# (180 s): a backlog (the first pass after an upgrade) never gets a pass killed mid-batch.
BUDGET = 120.0
PAUSE = 0.1  # seconds between two batches, so the workers' writes get their turn


def prune() -> dict[str, int]:
    """One retention pass; returns the rows deleted per table. Safe on several hosts at once."""
    ctx = context.current()
    policy = retention.Policy.of_days(
        ctx.settings.retention_days, ctx.settings.failed_retention_days
    )
    pruned, finished = retention.prune(ctx.engine, utcnow(), policy, pause=PAUSE, budget=BUDGET)
    metrics.record_pruned(pruned.counts())
    if pruned.total or not finished:
        log.info(
            "retention: pruned %d attempts, %d deliveries, %d events, %d inbound events%s",
            pruned.attempts,
            pruned.deliveries,
            pruned.events,
            pruned.inbound_events,
            "" if finished else " (more left for the next pass)",
        )
    return pruned.counts()
