"""GET /metrics: Prometheus text, with queue depths and subscription counts computed per scrape.

It needs an API key (x-api-key, Bearer, or Basic's password: Prometheus' `authorization` and
`basic_auth` scrape options both work) unless APEX_METRICS_PUBLIC=1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy.exc import SQLAlchemyError

from apex import metrics
from apex.api.auth import require_api_key
from apex.api.runtime import Runtime, runtime
from workers.inbound import READY_INBOUND
from workers.jobs import QUEUES, READY_DELIVERIES

log = logging.getLogger("apex.api.metrics")

bp = Blueprint("metrics", __name__)


@bp.before_request
def _protect() -> None:
    if not runtime().settings.metrics_public:
        require_api_key()


@bp.get("/metrics")
def scrape() -> Response:
    return Response(metrics.exposition(_computed(runtime())), content_type=CONTENT_TYPE_LATEST)


def _computed(rt: Runtime) -> Iterator[Metric]:
    """The gauges read now. One that cannot be read (Redis or the database down) is left out,
    so the recorded metrics still reach the scraper."""
    try:
        yield from _queue_gauges(rt.redis)
    except RedisError as exc:
        log.warning("metrics: queue depths left out, Redis unreachable (%s)", type(exc).__name__)
    try:
        counts = metrics.subscription_counts(rt.engine)
        by_status = metrics.delivery_counts(rt.engine)
        circuits = metrics.circuit_counts(rt.engine)
    except SQLAlchemyError as exc:
        log.warning("metrics: database gauges left out, database down (%s)", type(exc).__name__)
    else:
        yield metrics.gauge(
            "apex_subscriptions",
            "Subscriptions by status, deleted ones left out.",
            "status",
            counts,
        )
        yield metrics.gauge(
            "apex_delivery_rows",
            "Deliveries by status, from the database (all hosts).",
            "status",
            by_status,
        )
        yield metrics.gauge(
            "apex_endpoint_circuits",
            "Subscriptions by their endpoint's circuit: closed, or open (only probes are sent).",
            "state",
            circuits,
        )


def _queue_gauges(redis: Redis) -> list[Metric]:
    queues = [Queue(name, connection=redis) for name in QUEUES]
    depth = {q.name: q.count for q in queues}
    failed = {q.name: q.failed_job_registry.get_job_count(cleanup=False) for q in queues}
    return [
        metrics.gauge("apex_queue_depth", "Jobs waiting on each RQ queue.", "queue", depth),
        metrics.gauge(
            "apex_queue_failed_jobs", "Jobs in each RQ queue's failed registry.", "queue", failed
        ),
        metrics.gauge(
            "apex_ready_ids",
            "Ids on each ready list, waiting for a drain job (one job takes many).",
            "list",
            {ready.name: redis.llen(ready.key) for ready in (READY_DELIVERIES, READY_INBOUND)},
        ),
    ]
