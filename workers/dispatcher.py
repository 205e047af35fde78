"""Several deliveries in flight per worker process, with a cap per subscription so one endpoint
that hangs until the timeout cannot stall deliveries to healthy ones.

A job hands the dispatcher a batch of ids: it claims them in one transaction and starts each on
the thread pool, or queues it behind its endpoint's in-flight requests. A recorder thread stores
finished attempts in batches (group commit). Deliveries queued for an endpoint that is not
draining are given back to the database and scheduled again shortly.

Stopping (SIGTERM, see stop_all) takes no new work: deliveries handed over or queued are given
back, and attempts in flight end at their deadline, or STOP_WITHIN seconds after the stop
request if that comes first, and are recorded."""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
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
from apex.delivery.watchdog import WATCHDOG

log = logging.getLogger("apex.dispatcher")

DEFER = timedelta(seconds=2)  # when an endpoint's queue is full, try those again after this
QUEUE_WAIT = 0.25  # seconds a job waits for room in a draining endpoint's queue
PROGRESS = 0.5  # an endpoint that finished a request this recently counts as draining
RECORD_BATCH = 200
# Attempts still in flight this many seconds after a stop request are cut (recorded as
# interrupted): with recording and exit the process ends within Heroku's 30 s.
STOP_WITHIN = 20.0

_running: weakref.WeakSet[Dispatcher] = weakref.WeakSet()


def stop_all() -> None:
    """This process is stopping: every dispatcher stops taking work (see Dispatcher.stop).
    Returns at once; call it from a thread, not from a signal handler (it takes locks)."""
    for dispatcher in list(_running):
        dispatcher.stop()


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
        self._free = concurrency  # pool threads not running a lane
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
        _running.add(self)

    def submit(self, delivery_ids: list[str]) -> int:
        """Claim the due deliveries among `delivery_ids` and start or queue each; returns how
        many were claimed. Blocks only while every slot of the pool is busy, and not once
        stopping: what is not started by then is given back (scheduled again shortly)."""
        if self._stopping:
            self._on_defer(delivery_ids, DEFER.total_seconds())
            return 0
        deferred: list[str] = []
        claimed = claim(self._ctx, delivery_ids)
        for index, ready in enumerate(claimed):
            endpoint = ready.claimed.subscription_id
            with self._cond:
                if self._stopping:
                    deferred += [r.claimed.id for r in claimed[index:]]
                    break
                if self._in_flight[endpoint] >= self._per_endpoint:
                    if self._has_room(endpoint) and not self._stopping:
                        self._queued[endpoint].append(ready)
                    else:
                        deferred.append(ready.claimed.id)
                    continue
                self._cond.wait_for(lambda: self._free > 0 or self._stopping)
                if self._stopping:
                    deferred += [r.claimed.id for r in claimed[index:]]
                    break
                self._free -= 1
                self._in_flight[endpoint] += 1
            try:
                self._pool.submit(self._lane, ready)
            except BaseException:  # e.g. the job's timeout fired here: give both back
                with self._cond:
                    self._free += 1
                    self._in_flight[endpoint] -= 1
                    self._cond.notify_all()
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
            with self._cond:
                self._free += 1
                self._cond.notify_all()

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

    def stop(self) -> None:
        """Take no further work: give queued deliveries back (to whichever worker runs next),
        wake a submit waiting for a slot, and cut attempts still in flight STOP_WITHIN seconds
        from now (each also ends at its own deadline, the request timeout). Idempotent."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            queued = [r.claimed.id for q in self._queued.values() for r in q]
            self._queued.clear()
            self._cond.notify_all()
        WATCHDOG.cut(STOP_WITHIN)
        if queued:
            self._give_back(queued)

    def drain(self) -> None:
        """Stop (see stop), let the attempts in flight end (at most the request timeout plus a
        second, or STOP_WITHIN seconds after the stop), and record them."""
        self.stop()
        self._pool.shutdown(wait=True)
        self._done.put(None)
        self._recorder.join()
