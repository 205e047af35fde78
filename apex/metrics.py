"""The Prometheus metrics that web and worker processes record, and the text a scrape returns.

Multiprocess mode: gunicorn runs several web processes and each worker is its own process, so a
scrape must add up what all of them recorded. prometheus_client does that through files in the
directory named by PROMETHEUS_MULTIPROC_DIR, which it reads when it is first imported: the
launcher (Procfile, `make run`) must set it, to the same empty directory for every process of
one machine, before any of them starts, and empty it when the whole set is restarted. Without
it each process counts on its own and a scrape sees only the process that answers it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.engine import Engine

from apex.db import reading
from apex.models import deliveries, subscriptions

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SUBSCRIPTION_STATUSES = ("active", "paused", "disabled")


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR. Read here rather than in config: prometheus_client reads it
    itself at import, before any settings exist, and the scrape must follow the same value."""
    return os.environ.get(MULTIPROC_ENV) or None


# prometheus_client writes a file there as soon as a metric below is created; a missing
# directory would stop the process at import.
if _directory := multiprocess_dir():
    os.makedirs(_directory, exist_ok=True)

INBOUND_REQUESTS = Counter(
    "apex_inbound_requests",
    "Incoming webhook requests, by source and outcome (accepted, duplicate, or the error code).",
    ["source", "outcome"],
)
DELIVERIES = Counter(
    "apex_deliveries",
    "Delivery attempts recorded, by outcome: delivered, retrying or failed (gave up).",
    ["outcome"],
)
DELIVERY_LATENCY = Histogram(
    "apex_delivery_latency_seconds",
    "From an event's publication to its successful delivery, retries included.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 6 * 3600, 24 * 3600),
)
ATTEMPT_DURATION = Histogram(
    "apex_delivery_attempt_duration_seconds",
    "How long one delivery attempt (the HTTP request to the subscriber) took.",
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
SWEEPER_RECOVERIES = Counter(
    "apex_sweeper_recoveries",
    "Work the sweeper found due but not queued and enqueued again, by kind (deliveries, inbound).",
    ["kind"],
)

CIRCUITS = Counter(
    "apex_endpoint_circuit_changes",
    "Endpoint circuits that closed (answering again) or opened or stayed open (a probe failed).",
    ["change"],
)

RETENTION_PRUNED = Counter(
    "apex_retention_pruned_rows",
    "Rows the retention job deleted, by table (attempts, deliveries, events, inbound_events).",
    ["table"],
)

# Result.status of a recorded attempt -> the outcome label.
_DELIVERY_OUTCOMES = {"delivered": "delivered", "pending": "retrying", "failed": "failed"}


def record_inbound(source: str, outcome: str) -> None:
    """Count one incoming webhook request. `source` must be a known source (or "unknown"), so
    a caller cannot grow the label set."""
    INBOUND_REQUESTS.labels(source, outcome).inc()


def record_delivery(
    status: str, attempt_seconds: float, published_at: datetime, finished_at: datetime
) -> None:
    """Count one recorded attempt by the delivery's new status and time it; a delivered one
    also observes the latency from its event's publication."""
    DELIVERIES.labels(_DELIVERY_OUTCOMES.get(status, status)).inc()
    ATTEMPT_DURATION.observe(max(attempt_seconds, 0.0))
    if status == "delivered":
        DELIVERY_LATENCY.observe(max((finished_at - published_at).total_seconds(), 0.0))


def record_circuits(closed: int, still_or_newly_open: int) -> None:
    if closed:
        CIRCUITS.labels("closed").inc(closed)
    if still_or_newly_open:
        CIRCUITS.labels("open").inc(still_or_newly_open)


def record_recoveries(kind: str, count: int) -> None:
    """Count what a sweep enqueued again."""
    if count:
        SWEEPER_RECOVERIES.labels(kind).inc(count)


def record_pruned(counts: Mapping[str, int]) -> None:
    """Count what a retention pass deleted, per table."""
    for table, count in counts.items():
        if count:
            RETENTION_PRUNED.labels(table).inc(count)


DELIVERY_STATUSES = ("pending", "in_flight", "delivered", "failed", "skipped", "cancelled")


def subscription_counts(engine: Engine) -> dict[str, int]:
    """Subscriptions that are not deleted, by status; every known status is present."""
    query = (
        sa.select(subscriptions.c.status, sa.func.count())
        .where(subscriptions.c.deleted_at.is_(None))
        .group_by(subscriptions.c.status)
    )
    counts = dict.fromkeys(SUBSCRIPTION_STATUSES, 0)
    with reading(engine) as conn:
        for status, count in conn.execute(query):
            counts[str(status)] = int(count)
    return counts


def circuit_counts(engine: Engine) -> dict[str, int]:
    """Subscriptions (not deleted) by the state of their endpoint's circuit."""
    query = (
        sa.select(subscriptions.c.circuit, sa.func.count())
        .where(subscriptions.c.deleted_at.is_(None))
        .group_by(subscriptions.c.circuit)
    )
    counts = {"closed": 0, "open": 0}
    with reading(engine) as conn:
        for state, count in conn.execute(query):
            counts[str(state)] = int(count)
    return counts


def delivery_counts(engine: Engine) -> dict[str, int]:
    """Deliveries by status, from the database: the truth across every worker host (the
    counters above only add up within one host's PROMETHEUS_MULTIPROC_DIR)."""
    query = sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status)
    counts = dict.fromkeys(DELIVERY_STATUSES, 0)
    with reading(engine) as conn:
        for status, count in conn.execute(query):
            counts[str(status)] = int(count)
    return counts


def gauge(name: str, documentation: str, label: str, values: Mapping[str, float]) -> Metric:
    """A gauge family computed at scrape time, one sample per label value."""
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value_label, value in sorted(values.items()):
        family.add_metric([value_label], value)
    return family


@dataclass(frozen=True)
class _Scrape:
    """What one scrape reads: the recorded metrics and the gauges computed for it."""

    recorded: CollectorRegistry
    computed: list[Metric]

    def collect(self) -> Iterator[Metric]:
        yield from self.recorded.collect()
        yield from self.computed


def exposition(computed: Iterable[Metric]) -> bytes:
    """The Prometheus text format of every recorded metric (all processes' in multiprocess
    mode) followed by the `computed` gauges."""
    path = multiprocess_dir()
    if path:
        recorded = CollectorRegistry()
        MultiProcessCollector(recorded, path=path)
    else:
        recorded = REGISTRY
    return generate_latest(_Scrape(recorded, list(computed)))
