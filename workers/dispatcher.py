"""Several deliveries in flight per worker process, with a cap per subscription so one endpoint
that hangs until the timeout cannot stall deliveries to healthy ones."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import sqlalchemy as sa

from apex.delivery.deliver import DeliveryContext, Result, deliver
from apex.models import deliveries

log = logging.getLogger("apex.dispatcher")

# How long a delivery waits when its endpoint already has its share of requests in flight.
DEFER_SECONDS = 1.0


class Dispatcher:
    """Runs deliver() on a thread pool. submit() blocks only while every slot is busy.

    `on_result` is called (from a pool thread) with each Result, and `on_defer` with the id of a
    delivery put off because its endpoint is at its limit; both schedule follow-up jobs.
    """

    def __init__(
        self,
        ctx: DeliveryContext,
        concurrency: int,
        per_endpoint: int,
        on_result: Callable[[Result], None],
        on_defer: Callable[[str, float], None],
    ) -> None:
        self._ctx = ctx
        self._slots = threading.BoundedSemaphore(concurrency)
        self._per_endpoint = per_endpoint
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="deliver")
        self._on_result = on_result
        self._on_defer = on_defer

    def submit(self, delivery_id: str) -> Future[None]:
        self._slots.acquire()
        try:
            return self._pool.submit(self._run, delivery_id)
        except BaseException:
            self._slots.release()
            raise

    def _endpoint_of(self, delivery_id: str) -> str | None:
        with self._ctx.engine.connect() as conn:
            value = conn.execute(
                sa.select(deliveries.c.subscription_id).where(deliveries.c.id == delivery_id)
            ).scalar_one_or_none()
        return None if value is None else str(value)

    def _run(self, delivery_id: str) -> None:
        try:
            endpoint = self._endpoint_of(delivery_id)
            if endpoint is None:
                return
            with self._lock:
                busy = self._in_flight[endpoint] >= self._per_endpoint
                if not busy:
                    self._in_flight[endpoint] += 1
            if busy:
                self._on_defer(delivery_id, DEFER_SECONDS)
                return
            try:
                result = deliver(self._ctx, delivery_id)
            finally:
                with self._lock:
                    self._in_flight[endpoint] -= 1
            self._on_result(result)
        except Exception:
            # The delivery row is the truth: its lease expires and the sweeper brings it back.
            log.exception("delivery %s crashed; the sweeper will retry it", delivery_id)
        finally:
            self._slots.release()

    def drain(self) -> None:
        """Wait for every delivery in flight to finish (at most the request timeout)."""
        self._pool.shutdown(wait=True)
