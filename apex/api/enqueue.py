"""Enqueue from a request: the rows are committed first, so Redis being down delays, never loses."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from apex.api.runtime import runtime
from workers import jobs

log = logging.getLogger("apex.api")


def enqueue_deliveries(delivery_ids: list[str]) -> None:
    """Enqueue committed deliveries; if Redis is unreachable, sweep() enqueues them later."""
    try:
        jobs.enqueue_deliveries(runtime().redis, delivery_ids)
    except RedisError as exc:
        log.warning(
            "could not enqueue %d deliveries (%s); the sweeper will", len(delivery_ids), exc
        )
