"""Several deliveries in flight per worker process, within each endpoint's limits over all
workers, so one endpoint that hangs until the timeout cannot stall deliveries to healthy ones.

A job hands the dispatcher a batch of ids: it claims them in one transaction and starts each on
the process's event loop (apex.delivery.transport: aiohttp, the SSRF rules in its resolver, one
deadline per attempt) once it holds one of its endpoint's slots (apex.delivery.limits: the
concurrency and rate limits, shared in Redis by every worker). A delivery whose endpoint has
no free slot waits behind this process's requests to that endpoint, in the same slot, as long
as its lease allows; if none of this process's requests go there (other workers hold the
slots) and the endpoint answers, it waits up to SLOT_WAIT seconds for one of them to free a
slot. Otherwise it is given back to the database, and one wake-up job per endpoint (not one
job per delivery) claims that endpoint's due deliveries again shortly. A
recorder thread stores finished attempts in batches (group commit).

Stopping (SIGTERM, see stop_all) takes no new work: deliveries handed over or queued are given
back, and attempts in flight end at their deadline, or STOP_WITHIN seconds after the stop
request if that comes first, and are recorded."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
import weakref
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from datetime import timedelta

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from apex.delivery.attempt import Deadlines
from apex.delivery.deliver import (
    Attempted,
    DeliveryContext,
    Ready,
    Recorded,
    claim,
    record,
    release,
    renew,
    send,
)
from apex.delivery.limits import EndpointLimits, Slot, Wait
from apex.delivery.transport import Client, EventLoop

log = logging.getLogger("apex.dispatcher")

DEFER = 1.0  # seconds before an endpoint without a free slot is tried again
QUEUE_WAIT = 0.25  # seconds a job waits for room in a draining endpoint's queue
PROGRESS = 0.5  # an endpoint that finished a request this recently counts as draining
DRAINING_DEPTH = 25  # deliveries per lane that may wait for a draining endpoint
RATE_WAIT = 1.0  # a request its endpoint's rate delays longer than this is given back
SLOT_WAIT = 2.0  # seconds a delivery waits here for a slot other workers hold, no lane here
SLOT_POLL = 0.02  # seconds between its tries
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
    """`concurrency` is the most requests in flight in this process; `limits` holds the
    endpoints' slots (None: only this process's cap applies); `client` makes the HTTP client
    (called on the event loop). `on_recorded` receives each recorded batch and `on_defer`
    the endpoints whose deliveries were given back, each with the seconds after which to claim
    them again; both schedule follow-up jobs."""

    def __init__(
        self,
        ctx: DeliveryContext,
        concurrency: int,
        per_endpoint: int,
        limits: EndpointLimits | None,
        on_recorded: Callable[[Recorded], None],
        on_defer: Callable[[dict[str, float]], None],
        client: Callable[[], Client],
    ) -> None:
        self._ctx = ctx
        self._free = concurrency  # lanes that may still start
        self._per_endpoint = min(per_endpoint, concurrency)
        self._limits = limits
        # A delivery that waited this long for a slot renews its lease before it is sent.
        self._renew_after = ctx.lease.total_seconds() / 3
        self._in_flight: Counter[str] = Counter()  # lanes (each holding a slot) per endpoint
        self._queued: defaultdict[str, deque[Ready]] = defaultdict(deque)
        self._last_done: dict[str, float] = {}
        self._last_quick: dict[str, bool] = {}  # whether its last attempt was answered quickly
        self._open: set[str] = set()  # endpoints whose circuit a recorded attempt opened
        self._slot_waiters: set[str] = set()  # endpoints with an _await_slot running
        self._cond = threading.Condition()
        self._stopping = False
        self._loop = EventLoop()
        self._client = self._loop.run(_on_loop(client))
        self._deadlines = Deadlines()
        self._lanes: set[concurrent.futures.Future[None]] = set()
        self._done: queue.Queue[Attempted | None] = queue.Queue()
        self._recorder = threading.Thread(target=self._record_loop, name="record", daemon=True)
        self._recorder.start()
        self._on_recorded = on_recorded
        self._on_defer = on_defer
        _running.add(self)

    def limit(self, ready: Ready) -> int:
        """Requests in flight allowed to `ready`'s endpoint, over all workers."""
        return min(ready.claimed.concurrency or self._per_endpoint, self._per_endpoint)

    def _max_queued(self, ready: Ready, draining: bool) -> int:
        """How many of an endpoint's deliveries may wait here. Each should start before its
        lease runs out, and each one ahead of it may take up to an attempt (the timeout plus a
        second) and the rate's interval, per lane; an endpoint answering now (`draining`) may
        have DRAINING_DEPTH per lane, a claim's worth. Should one still wait past a third of its
        lease, it renews the lease before it is sent, or is skipped if another worker took it
        over (see _lane): a long queue costs time, never a second attempt."""
        rate = ready.claimed.rate_limit
        per_request = self._ctx.total_timeout + 1 + (1 / rate if rate else 0)
        rounds = max(0, int(self._ctx.lease.total_seconds() // per_request) - 1)
        return self.limit(ready) * (max(rounds, DRAINING_DEPTH) if draining else rounds)

    def wake_batch(self) -> int:
        """Deliveries of one endpoint worth claiming at a time: as many as may wait for a
        draining endpoint."""
        return self._per_endpoint * DRAINING_DEPTH

    def submit(self, delivery_ids: list[str], probe: bool = False) -> int:
        """Claim the due deliveries among `delivery_ids` and start or queue each; returns how
        many were claimed. Blocks only while every slot of the pool is busy, and not once
        stopping: what is not started by then is given back (claimed again shortly)."""
        if self._stopping:
            return 0  # not claimed: their jobs' successors or the sweeper find them
        deferred: list[tuple[Ready, float]] = []
        claimed = claim(self._ctx, delivery_ids, probe)
        for index, ready in enumerate(claimed):
            if self._stopping:
                deferred += [(r, DEFER) for r in claimed[index:]]
                break
            endpoint = ready.claimed.subscription_id
            with self._cond:
                lanes = self._in_flight[endpoint]
                waiting = endpoint in self._slot_waiters  # joins the queue a waiter serves
            free = lanes < self.limit(ready) and not waiting
            got = self._acquire(ready) if free else Wait(DEFER)
            if isinstance(got, Slot):
                if not self._start(ready, got):
                    deferred += [(r, DEFER) for r in claimed[index:]]
                    break
                continue
            with self._cond:
                if self._in_flight[endpoint] and self._has_room(ready):
                    self._queued[endpoint].append(ready)
                    continue
                waiter = None if self._in_flight[endpoint] else self._wait_here(ready)
            if waiter is not None:
                if waiter:
                    self._track(self._loop.submit(self._await_slot(endpoint)))
                continue
            deferred.append((ready, max(got.seconds, DEFER)))
        if deferred:
            self._give_back(deferred)
        return len(claimed)

    def _wait_here(self, ready: Ready) -> bool | None:
        """Queue `ready` to wait here for a slot of its endpoint that other workers hold, if
        no lane of this process serves that endpoint and it is answering: True if a waiter
        must start for it, False if one runs; None (not queued) to give it back instead.
        Call with the lock held."""
        endpoint = ready.claimed.subscription_id
        if self._stopping or endpoint in self._open:
            return None
        if not self._draining(endpoint):
            return None  # seen not answering: what waits for it goes back to the database
        most = self._max_queued(ready, draining=True)

        def room() -> bool:
            return len(self._queued[endpoint]) < most

        if not (
            room() or (endpoint in self._slot_waiters and self._cond.wait_for(room, QUEUE_WAIT))
        ):
            return None
        self._queued[endpoint].append(ready)
        if endpoint in self._slot_waiters:
            return False
        self._slot_waiters.add(endpoint)
        return True

    async def _await_slot(self, endpoint: str) -> None:
        """Start lanes for `endpoint`'s deliveries queued here, as other workers free its
        slots, until a lane of this process serves it at its limit or the queue is empty;
        what no slot came for within SLOT_WAIT seconds goes back to the database. Without
        this, a second worker given work for an endpoint whose slots the first holds would
        give it all back and claim it again a second later, over and over."""
        deadline = time.monotonic() + SLOT_WAIT
        try:
            while True:
                with self._cond:
                    queue = self._queued.get(endpoint)
                    if self._stopping or not queue:
                        return
                    head = queue[0]
                    if self._in_flight[endpoint] >= self.limit(head):
                        return  # our lanes serve the queue
                got = await asyncio.to_thread(self._acquire, head)
                if isinstance(got, Slot):
                    with self._cond:
                        # Still this endpoint's queue: a stop or an opened circuit may have
                        # handed it back meanwhile.
                        ours = self._queued.get(endpoint) is queue and not self._stopping
                        ready = queue.popleft() if ours and queue and self._free > 0 else None
                        if ready is not None:
                            self._free -= 1
                            self._lane_starts(endpoint)
                    if ready is not None:
                        self._track(self._loop.submit(self._lane(ready, got)))
                        continue
                    self._release(got)  # every lane of this process is busy
                    got = Wait(SLOT_POLL)
                with self._cond:
                    served = self._in_flight[endpoint] > 0
                if served:
                    return  # a lane of ours goes on with the queue
                if time.monotonic() >= deadline:
                    with self._cond:
                        rest = list(self._queued.pop(endpoint, ()))
                    await asyncio.to_thread(self._give_back, [(r, DEFER) for r in rest])
                    return
                await asyncio.sleep(min(got.seconds, SLOT_POLL))
        finally:
            with self._cond:
                self._slot_waiters.discard(endpoint)

    def _track(self, lane: concurrent.futures.Future[None]) -> None:
        with self._cond:
            self._lanes.add(lane)
        lane.add_done_callback(self._lane_done)

    def _acquire(self, ready: Ready) -> Slot | Wait:
        c = ready.claimed
        if self._limits is None:
            return Slot(c.subscription_id, "")
        try:
            return self._limits.acquire(c.subscription_id, self.limit(ready), c.rate_limit)
        except RedisError as exc:
            log.warning("endpoint %s: no slot (Redis: %s); given back", c.subscription_id, exc)
            return Wait(DEFER)

    def _start(self, ready: Ready, slot: Slot) -> bool:
        """Run `ready` in a lane holding `slot`; False (slot released) once stopping."""
        endpoint = ready.claimed.subscription_id
        with self._cond:
            self._cond.wait_for(lambda: self._free > 0 or self._stopping)
            if self._stopping:
                self._release(slot)
                return False
            self._free -= 1
            self._lane_starts(endpoint)
        try:
            self._track(self._loop.submit(self._lane(ready, slot)))
        except BaseException:  # e.g. the job's timeout fired here: give both back
            with self._cond:
                self._free += 1
                self._in_flight[endpoint] -= 1
                self._cond.notify_all()
            self._release(slot)
            raise
        return True

    def _has_room(self, ready: Ready) -> bool:
        """Whether the queue of `ready`'s endpoint has room, waiting a little for it only if
        the endpoint is answering (a hanging endpoint must not hold up the deliveries behind
        it). Call with the lock held."""
        endpoint = ready.claimed.subscription_id
        if endpoint in self._open:
            return False  # its circuit opened: what it has waits in the database
        draining = self._draining(endpoint)
        most = self._max_queued(ready, draining)

        def room() -> bool:
            return len(self._queued[endpoint]) < most

        return room() or (draining and self._cond.wait_for(room, QUEUE_WAIT))

    def _draining(self, endpoint: str) -> bool:
        """Whether `endpoint` answers, as far as this process has seen: it counts as draining
        until seen not answering (a first batch to a fast endpoint must not be given back for
        want of evidence). Seen not answering: requests of ours in flight and none finished
        for PROGRESS seconds since the first of them started (see _lane_starts), or, with none
        in flight, the last one having taken that long (a time out). An endpoint merely idle
        since its last quick answer still drains. Call with the lock held."""
        last = self._last_done.get(endpoint)
        if last is None or time.monotonic() - last < PROGRESS:
            return True
        return not self._in_flight[endpoint] and self._last_quick.get(endpoint, False)

    def _lane_starts(self, endpoint: str) -> None:
        """Count a lane starting for `endpoint`. The first after a quiet spell starts the clock
        of _draining anew, if the endpoint's last answer came quickly: its lanes have had no
        time to finish anything yet. Call with the lock held."""
        if not self._in_flight[endpoint] and self._last_quick.get(endpoint, False):
            self._last_done[endpoint] = time.monotonic()
        self._in_flight[endpoint] += 1

    def _give_back(self, deferred: list[tuple[Ready, float]]) -> None:
        """Hand deliveries back to the database, each endpoint's due again after its delay,
        and ask for one wake-up per endpoint."""
        by_endpoint: defaultdict[str, list[str]] = defaultdict(list)
        delays: dict[str, float] = {}
        for ready, delay in deferred:
            endpoint = ready.claimed.subscription_id
            by_endpoint[endpoint].append(ready.claimed.id)
            delays[endpoint] = max(delays.get(endpoint, 0.0), delay)
        for endpoint, ids in by_endpoint.items():
            release(self._ctx, ids, timedelta(seconds=delays[endpoint]))
        try:
            self._on_defer(delays)
        except RedisError as exc:
            log.warning("could not schedule %d wake-ups (%s); the sweeper will", len(delays), exc)

    async def _lane(self, ready: Ready, slot: Slot) -> None:
        """Send `ready`, then whatever is queued for its endpoint, in this slot (on the loop)."""
        endpoint = ready.claimed.subscription_id
        current: Ready | None = ready
        try:
            while current is not None:
                if time.monotonic() - current.claimed_at > self._renew_after:
                    # None: taken over meanwhile, skip it
                    current = await asyncio.to_thread(renew, self._ctx, current)
                quick = None
                if current is not None:
                    attempted = await send(self._ctx, current, self._client, self._deadlines)
                    self._done.put(attempted)
                    quick = attempted.outcome.duration_ms < PROGRESS * 1000
                current = await self._next(endpoint, slot, quick)
        finally:
            self._release(slot)
            with self._cond:
                self._free += 1
                self._cond.notify_all()

    def _lane_done(self, lane: concurrent.futures.Future[None]) -> None:
        with self._cond:
            self._lanes.discard(lane)
        if not lane.cancelled() and lane.exception() is not None:
            log.error("a delivery lane failed", exc_info=lane.exception())

    async def _next(self, endpoint: str, slot: Slot, quick: bool | None) -> Ready | None:
        """The next delivery queued for `endpoint` that this lane may send in its slot, or
        None, the lane ending (the queue handed back if the slot could not go on). `quick`:
        whether the attempt just made was answered within PROGRESS (None: none was made)."""
        with self._cond:
            self._last_done[endpoint] = time.monotonic()
            if quick is not None:
                self._last_quick[endpoint] = quick
            waiting = self._queued[endpoint]
            following = waiting.popleft() if waiting and not self._stopping else None
            if following is None:
                self._in_flight[endpoint] -= 1
            self._cond.notify_all()
        if following is None or await self._keep(slot, following):
            return following
        with self._cond:  # the slot is lost or the rate says wait: this lane ends
            rest = [following, *self._queued.pop(endpoint, ())]
            self._in_flight[endpoint] -= 1
            self._cond.notify_all()
        self._give_back([(r, DEFER) for r in rest])
        return None

    async def _keep(self, slot: Slot, ready: Ready) -> bool:
        """Renew `slot` for sending `ready`, waiting for the endpoint's rate up to RATE_WAIT."""
        if self._limits is None:
            return True
        waited = 0.0
        while not self._stopping:
            try:
                kept = self._limits.renew(slot, ready.claimed.rate_limit)
            except RedisError:
                return False
            if not isinstance(kept, Wait):
                return kept
            if waited + kept.seconds > RATE_WAIT:
                return False
            waited += kept.seconds
            await asyncio.sleep(kept.seconds)
        return False

    def _release(self, slot: Slot) -> None:
        if self._limits is not None:
            try:
                self._limits.release(slot)
            except RedisError:
                pass  # it expires with its TTL

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
            recorded = [record(self._ctx, batch)]
        except SQLAlchemyError:
            log.exception("recording %d attempts failed; recording them one by one", len(batch))
            recorded = []
            for attempted in batch:
                try:
                    recorded.append(record(self._ctx, [attempted]))
                except SQLAlchemyError:
                    log.exception("delivery %s: attempt not recorded", attempted.ready.claimed.id)
        for each in recorded:
            self._follow_circuits(each)
            try:
                self._on_recorded(each)
            except RedisError as exc:
                log.warning("could not schedule follow-ups (%s); the sweeper will", exc)

    def _follow_circuits(self, recorded: Recorded) -> None:
        """An endpoint whose circuit opened (or stays open) gets nothing more from this
        process's queues: what waits for it goes back to the database, where it waits for the
        probe. One whose circuit closed is queued for again."""
        with self._cond:
            self._open -= set(recorded.circuits.closed)
            opened = set(recorded.circuits.probes) - self._open
            self._open |= opened
            waiting = [r for endpoint in opened for r in self._queued.pop(endpoint, ())]
            self._cond.notify_all()
        if waiting:
            self._give_back([(r, DEFER) for r in waiting])

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
            queued = [r for q in self._queued.values() for r in q]
            self._queued.clear()
            self._cond.notify_all()
        self._loop.call(self._deadlines.cut, STOP_WITHIN)
        if queued:
            self._give_back([(r, DEFER) for r in queued])

    def drain(self) -> None:
        """Stop (see stop), let the attempts in flight end (at most the request timeout plus a
        second, or STOP_WITHIN seconds after the stop), and record them."""
        self.stop()
        with self._cond:
            lanes = list(self._lanes)
        concurrent.futures.wait(lanes, timeout=STOP_WITHIN + self._ctx.total_timeout + 2)
        self._loop.run(self._client.close(), timeout=5)
        self._loop.stop()
        self._done.put(None)
        self._recorder.join()


async def _on_loop(make: Callable[[], Client]) -> Client:
    return make()
