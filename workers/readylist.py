"""Ready lists: the fast path from "committed" to "being worked on" for ids that are many and
small. Producers push ids onto a Redis list and enqueue one RQ drain job when none is running;
the drain job takes ids in batches, so RQ's per-job cost is paid per batch, not per id.

At most one chain of drain jobs runs per list: the draining flag holds the token (RQ job id) of
the drain in charge, which renews it while it works and, at the end of its slice, hands it to
the one job it enqueues to go on. Other drains (helpers asked for by a long list, or one started
because the flag looked abandoned) run one slice and end.

A drain that dies (its worker killed, or its job failing) stops renewing the flag; within
STALE_AFTER seconds the next push, or the next sweep (restart), starts another. A job that fails
hands the flag on to a successor before it ends.

The database stays the truth: ids lost with Redis are found again by the sweepers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, get_current_job

FLAG_TTL = 30  # a flag nobody renews nor takes over vanishes after this many seconds
HEARTBEAT = 1.0  # seconds between two renewals of the flag by the drain in charge
STALE_AFTER = 3  # a flag not renewed for this many seconds belongs to a dead drain
STALE_FLAG_TTL = FLAG_TTL - STALE_AFTER  # a flag's TTL below this: taken over by a push
RESTART_DELAY = 1.0  # seconds before the successor of a failed drain job runs
SLICE = 5.0  # seconds a drain job runs before yielding its worker to other queues
RESULT_TTL = 60
JOB_TIMEOUT = 600  # a drain job runs SLICE seconds, but may wait for busy delivery slots
TAKEN_TTL = 60  # seconds a popped batch is kept for a retried pop to find it

# LPOP that a retry cannot lose: the batch popped under a pop token is kept under that token
# for a while, and the same pop sent again (redis-py retries a command whose reply was lost
# on a dropped connection) answers that batch instead of popping another.
_POP = """
local taken = redis.call('LRANGE', KEYS[2], 0, -1)
if #taken > 0 then return taken end
local batch = redis.call('LPOP', KEYS[1], ARGV[1])
if batch then
  redis.call('RPUSH', KEYS[2], unpack(batch))
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return batch
"""


def _new_token() -> str:
    return uuid.uuid4().hex


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

    def _taken(self, pop: str) -> str:
        return f"apex:{self.name}:taken:{pop}"

    def push(self, redis: Redis, ids: Iterable[str], drain_job: Callable[[], int]) -> int:
        """Append ids (in order) and start a drain job unless one runs. Returns the count."""
        items = list(ids)
        if not items:
            return 0
        token = _new_token()  # the id of the drain job, should this push start one
        with redis.pipeline(transaction=False) as pipe:
            pipe.rpush(self.key, *items)
            pipe.set(self._draining, token, nx=True, ex=FLAG_TTL)
            pipe.ttl(self._draining)
            _, start, ttl = pipe.execute()
        # The drain in charge renews the flag every HEARTBEAT seconds. One not renewed for a
        # while belongs to a job that may be gone (its worker lost Redis or its database
        # mid-job): take the flag over and start another rather than leave the list waiting
        # for the flag to expire. The old job, should it still run, sees it is no longer in
        # charge and enqueues no successor. A flag that expired between SET and TTL (-2) is
        # taken over too; no expiry (-1) counts as stale.
        if not start and ttl < STALE_FLAG_TTL:
            start = redis.set(self._draining, token, ex=FLAG_TTL)
        if start:
            self._enqueue(redis, drain_job, token)
        return len(items)

    def restart(self, redis: Redis, drain_job: Callable[[], int]) -> int:
        """Start a drain if ids wait and none is in charge (its flag gone or stale); the
        sweeper's call, for a list no push comes to. Returns 1 if it started one."""
        if not redis.llen(self.key):
            return 0
        token = _new_token()
        started = redis.set(self._draining, token, nx=True, ex=FLAG_TTL)
        if not started and redis.ttl(self._draining) < STALE_FLAG_TTL:
            started = redis.set(self._draining, token, ex=FLAG_TTL)
        if started:
            self._enqueue(redis, drain_job, token)
        return 1 if started else 0

    def drain(
        self,
        redis: Redis,
        handle: Callable[[list[str]], int],
        drain_job: Callable[[], int],
        token: str | None = None,
    ) -> int:
        """Hand the list to `handle` a batch at a time for up to SLICE seconds, then, if this
        drain is in charge, enqueue `drain_job` to go on. Returns the sum of what `handle`
        returned. `token` names this drain; by default it is its RQ job's id, which is the
        flag's value when the job was enqueued to be in charge."""
        if token is None:
            job = get_current_job()
            token = job.id if job is not None else _new_token()
        stop = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(redis, token, stop), name="drain-heartbeat", daemon=True
        )
        heartbeat.start()
        try:
            return self._drain(redis, handle, drain_job, token)
        except Exception:
            self._hand_on(redis, drain_job, token)
            raise
        finally:
            stop.set()
            heartbeat.join()

    def _hand_on(self, redis: Redis, drain_job: Callable[[], int], token: str) -> None:
        """This drain failed (e.g. its database went away for a moment): if it was in charge,
        a successor goes on shortly, rather than the list waiting for the flag to go stale."""
        try:
            if self._holds(redis, token):
                successor = _new_token()
                redis.set(self._draining, successor, ex=FLAG_TTL)
                Queue(self.queue, connection=redis).enqueue_in(
                    timedelta(seconds=RESTART_DELAY),
                    drain_job,
                    job_id=successor,
                    result_ttl=RESULT_TTL,
                    job_timeout=JOB_TIMEOUT,
                )
        except RedisError:
            pass  # Redis is away too: the flag goes stale and the next push or sweep restarts

    def _drain(
        self,
        redis: Redis,
        handle: Callable[[list[str]], int],
        drain_job: Callable[[], int],
        token: str,
    ) -> int:
        done = 0
        deadline = time.monotonic() + SLICE
        queue = Queue(self.queue, connection=redis)
        pops = 0
        while time.monotonic() < deadline:
            pops += 1
            batch = self._pop(redis, f"{token}:{pops}")
            if not batch:
                if self._holds(redis, token):
                    redis.delete(self._draining)
                # A producer may have pushed after our pop and seen the flag still set.
                if redis.llen(self.key) and redis.set(self._draining, token, nx=True, ex=FLAG_TTL):
                    continue
                return done
            done += handle([item.decode() for item in batch])
            if redis.llen(self.key) > self.help_backlog and redis.set(
                self._helping, "1", nx=True, ex=5
            ):
                # A helper's token is not the flag's: it runs one slice and enqueues no other.
                queue.enqueue(drain_job, result_ttl=RESULT_TTL, job_timeout=JOB_TIMEOUT)
        # Go on in a new job (other queues get the worker meanwhile) unless another drain is
        # in charge. A flag that vanished (Redis lost it) is taken back.
        held = redis.get(self._draining)
        if held is None or held == token.encode():
            successor = _new_token()
            redis.set(self._draining, successor, ex=FLAG_TTL)
            self._enqueue(redis, drain_job, successor)
        return done

    def _pop(self, redis: Redis, pop: str) -> list[bytes]:
        """Up to `batch` ids from the list's head, popped under the token `pop`."""
        batch = self._take(redis, pop)
        if batch:
            redis.delete(self._taken(pop))  # the reply arrived: no retry will ask again
        return batch

    def _take(self, redis: Redis, pop: str) -> list[bytes]:
        """The command redis-py sends again if the connection drops before its reply: the
        first time it pops a batch, any other time it answers that batch."""
        batch = redis.eval(_POP, 2, self.key, self._taken(pop), self.batch, TAKEN_TTL)
        return cast(list[bytes], batch or [])

    def _holds(self, redis: Redis, token: str) -> bool:
        return bool(redis.get(self._draining) == token.encode())

    def _heartbeat(self, redis: Redis, token: str, stop: threading.Event) -> None:
        """Renew the flag while the drain in charge works, a batch taking however long: a long
        wait for delivery slots must not look like a dead drain and start another."""
        while True:
            try:
                if self._holds(redis, token):
                    redis.expire(self._draining, FLAG_TTL)
            except RedisError:
                pass  # the drain itself meets the outage; renewing resumes with Redis
            if stop.wait(HEARTBEAT):
                return

    def _enqueue(self, redis: Redis, drain_job: Callable[[], int], token: str) -> None:
        Queue(self.queue, connection=redis).enqueue(
            drain_job, job_id=token, result_ttl=RESULT_TTL, job_timeout=JOB_TIMEOUT
        )
