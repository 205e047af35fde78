"""Several deliveries in flight per worker process, with a cap per subscription so one endpoint
that hangs until the timeout cannot stall deliveries to healthy ones.

A job hands the dispatcher a batch of ids: it claims them in one transaction and starts each on
the thread pool, or queues it behind its endpoint's in-flight requests. A recorder thread stores
finished attempts in batches (group commit). Deliveries queued for an endpoint that is not
draining are given back to the database and scheduled again shortly."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from apex.delivery.deliver import (
    Attempted,
    DeliveryContext,
    Ready,
    Result,
    claim,
    record,
    release,
    renew,
    send,
)

log = logging.getLogger("apex.dispatcher")

DEFER = timedelta(seconds=2)  # when an endpoint's queue is full, try those again after this
QUEUE_WAIT = 0.25  # seconds a job waits for room in a draining endpoint's queue
PROGRESS = 0.5  # an endpoint that finished a request this recently counts as draining
RECORD_BATCH = 200


class Dispatcher:
    """`on_results` receives each recorded batch's Results and `on_defer` the ids given back
    (with their delay); both schedule follow-up jobs."""

    def __init__(
        self,
        ctx: DeliveryContext,
        concurrency: int,
        per_endpoint: int,
        on_results: Callable[[list[Result]], None],
        on_defer: Callable[[list[str], float], None],
    ) -> None:
        self._ctx = ctx
        self._slots = threading.BoundedSemaphore(concurrency)
        self._per_endpoint = min(per_endpoint, concurrency)
        # A queued delivery must start before its lease runs out: each one ahead of it in its
        # endpoint's queue may take up to the request timeout per `per_endpoint` lanes.
        rounds = int(ctx.lease.total_seconds() // ctx.total_timeout) - 1
        self._max_queued = self._per_endpoint * max(0, rounds)
        # A delivery that waited this long for a slot renews its lease before it is sent.
        self._renew_after = ctx.lease.total_seconds() / 3
        self._in_flight: Counter[str] = Counter()
        self._queued: defaultdict[str, deque[Ready]] = defaultdict(deque)
        self._last_done: dict[str, float] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="deliver")
        self._done: queue.Queue[Attempted | None] = queue.Queue()
        self._recorder = threading.Thread(target=self._record_loop, name="record", daemon=True)
        self._recorder.start()
        self._on_results = on_results
        self._on_defer = on_defer

    def submit(self, delivery_ids: list[str]) -> int:
        """Claim the due deliveries among `delivery_ids` and start or queue each; returns how
        many were claimed. Blocks only while every slot of the pool is busy."""
        deferred: list[str] = []
        claimed = claim(self._ctx, delivery_ids)
        for ready in claimed:
            endpoint = ready.claimed.subscription_id
            with self._cond:
                if self._in_flight[endpoint] < self._per_endpoint:
                    self._in_flight[endpoint] += 1
                else:
                    if self._has_room(endpoint):
                        self._queued[endpoint].append(ready)
                    else:
                        deferred.append(ready.claimed.id)
                    continue
            self._slots.acquire()
            try:
                self._pool.submit(self._lane, ready)
            except BaseException:  # e.g. the job's timeout fired here: give both back
                self._slots.release()
                with self._cond:
                    self._in_flight[endpoint] -= 1
                raise
        if deferred:
            self._give_back(deferred)
        return len(claimed)

    def _has_room(self, endpoint: str) -> bool:
        """Whether `endpoint`'s queue has room, waiting a little for it only if the endpoint is
        answering (a hanging endpoint must not hold up the deliveries behind it). Call with
        the lock held."""

        def room() -> bool:
            return len(self._queued[endpoint]) < self._max_queued

        draining = time.monotonic() - self._last_done.get(endpoint, -PROGRESS) < PROGRESS
        return room() or (draining and self._cond.wait_for(room, QUEUE_WAIT))

    def _give_back(self, delivery_ids: list[str]) -> None:
        release(self._ctx, delivery_ids, DEFER)
        self._on_defer(delivery_ids, DEFER.total_seconds())

    def _lane(self, ready: Ready | None) -> None:
        """Send `ready`, then whatever is queued for its endpoint, in this slot."""
        endpoint = ready.claimed.subscription_id if ready else ""
        try:
            while ready is not None:
                if time.monotonic() - ready.claimed_at > self._renew_after:
                    ready = renew(self._ctx, ready)  # None: taken over meanwhile, skip it
                if ready is not None:
                    self._done.put(send(self._ctx, ready))
                with self._cond:
                    self._last_done[endpoint] = time.monotonic()
                    waiting = self._queued[endpoint]
                    ready = waiting.popleft() if waiting and not self._stopping else None
                    if ready is None:
                        self._in_flight[endpoint] -= 1
                    self._cond.notify_all()
        finally:
            self._slots.release()

    def _record_loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._done.get()
            batch = [] if first is None else [first]
            stopping = first is None
            while len(batch) < RECORD_BATCH:
                try:
                    item = self._done.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            if batch:
                self._record(batch)

    def _record(self, batch: list[Attempted]) -> None:
        """Record a batch, or each attempt alone if the batch fails; then schedule retries.
        What cannot be recorded stays leased, so the sweeper sends it again when the lease
        ends: this thread must outlive any one failure."""
        try:
            results = record(self._ctx, batch)
        except SQLAlchemyError:
            log.exception("recording %d attempts failed; recording them one by one", len(batch))
            results = []
            for attempted in batch:
                try:
                    results += record(self._ctx, [attempted])
                except SQLAlchemyError:
                    log.exception("delivery %s: attempt not recorded", attempted.ready.claimed.id)
        try:
            self._on_results(results)
        except RedisError as exc:
            log.warning("could not schedule %d retries (%s); the sweeper will", len(results), exc)

    def alive(self) -> bool:
        return self._recorder.is_alive()

    def drain(self) -> None:
        """Finish the deliveries in flight (at most the request timeout), record them, and give
        queued ones back to be delivered by whichever worker runs next."""
        with self._cond:
            self._stopping = True
            queued = [r.claimed.id for q in self._queued.values() for r in q]
            self._queued.clear()
        if queued:
            self._give_back(queued)
        self._pool.shutdown(wait=True)
        self._done.put(None)
        self._recorder.join()
