"""Ready lists: the fast path from "committed" to "being worked on" for ids that are many and
small. Producers push ids onto a Redis list and enqueue one RQ drain job when none is running;
the drain job takes ids in batches, so RQ's per-job cost is paid per batch, not per id.

The database stays the truth: ids lost with Redis are found again by the sweepers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

from redis import Redis
from rq import Queue

FLAG_TTL = 30  # a drain job that died lets another start after this many seconds
STALE_FLAG_TTL = FLAG_TTL - 15  # a flag not renewed for 15 s lets a push start another drain
SLICE = 5.0  # seconds a drain job runs before yielding its worker to other queues
RESULT_TTL = 60
JOB_TIMEOUT = 600  # a drain job runs SLICE seconds, but may wait for busy delivery slots


@dataclass(frozen=True)
class ReadyList:
    name: str  # e.g. "deliveries": keys apex:<name>:ready, …:draining, …:helping
    queue: str  # the RQ queue its drain jobs go to
    batch: int  # ids handed to the handler at a time
    help_backlog: int  # a longer list asks another worker process to drain too

    @property
    def key(self) -> str:
        return f"apex:{self.name}:ready"

    @property
    def _draining(self) -> str:
        return f"apex:{self.name}:draining"

    @property
    def _helping(self) -> str:
        return f"apex:{self.name}:helping"

    def push(self, redis: Redis, ids: Iterable[str], drain_job: Callable[[], int]) -> int:
        """Append ids (in order) and start a drain job unless one runs. Returns the count."""
        items = list(ids)
        if not items:
            return 0
        with redis.pipeline(transaction=False) as pipe:
            pipe.rpush(self.key, *items)
            pipe.set(self._draining, "1", nx=True, ex=FLAG_TTL)
            pipe.ttl(self._draining)
            _, start, ttl = pipe.execute()
        # A running drain job renews the flag every batch. One not renewed for a while belongs
        # to a job that may be gone (its worker lost Redis or its database mid-job): start
        # another rather than leave the list waiting for the flag to expire. A second drain
        # job is harmless.
        if not start and ttl < STALE_FLAG_TTL:
            start = redis.expire(self._draining, FLAG_TTL)
        if start:
            Queue(self.queue, connection=redis).enqueue(
                drain_job, result_ttl=RESULT_TTL, job_timeout=JOB_TIMEOUT
            )
        return len(items)

    def drain(
        self, redis: Redis, handle: Callable[[list[str]], int], drain_job: Callable[[], int]
    ) -> int:
        """Hand the list to `handle` a batch at a time for up to SLICE seconds, then re-enqueue
        `drain_job` if more is waiting. Returns the sum of what `handle` returned."""
        done = 0
        deadline = time.monotonic() + SLICE
        queue = Queue(self.queue, connection=redis)
        while time.monotonic() < deadline:
            redis.expire(self._draining, FLAG_TTL)
            batch = redis.lpop(self.key, self.batch)
            if not batch:
                redis.delete(self._draining)
                # A producer may have pushed after our pop and seen the flag still set.
                if redis.llen(self.key) and redis.set(self._draining, "1", nx=True, ex=FLAG_TTL):
                    continue
                return done
            done += handle([item.decode() for item in cast(list[bytes], batch)])
            if redis.llen(self.key) > self.help_backlog and redis.set(
                self._helping, "1", nx=True, ex=5
            ):
                queue.enqueue(drain_job, result_ttl=RESULT_TTL, job_timeout=JOB_TIMEOUT)
        queue.enqueue(drain_job, result_ttl=RESULT_TTL, job_timeout=JOB_TIMEOUT)
        return done
