"""workers.readylist on the real Redis: a draining flag left by a drain job that died does not
hold the list up until the flag expires; one chain of drain jobs at a time; a pop retried after
its reply was lost loses nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis import Redis
from redis.client import Pipeline
from rq import Queue, SimpleWorker, get_current_job

from tests.integration.conftest import wait_for
from workers import readylist
from workers.readylist import FLAG_TTL, STALE_FLAG_TTL, ReadyList

READY = ReadyList("faultcheck", "faultcheck", batch=10, help_backlog=100)
FLAG = "apex:faultcheck:draining"


def drain_jobs(redis: Redis) -> int:
    return Queue(READY.queue, connection=redis).count


def test_the_first_push_starts_a_drain_job(redis_conn: Redis) -> None:
    assert READY.push(redis_conn, ["a", "b"], time.time) == 2
    assert drain_jobs(redis_conn) == 1
    assert READY.push(redis_conn, ["c"], time.time) == 1
    assert drain_jobs(redis_conn) == 1  # one runs (or waits to): the flag says so


def test_a_push_starts_another_drain_when_the_flag_was_not_renewed_lately(
    redis_conn: Redis,
) -> None:
    # A drain job whose worker lost Redis mid-job left its flag behind, unrenewed.
    redis_conn.set(FLAG, "1", ex=STALE_FLAG_TTL - 1)
    READY.push(redis_conn, ["a"], time.time)
    assert drain_jobs(redis_conn) == 1
    assert redis_conn.ttl(FLAG) > STALE_FLAG_TTL  # renewed: the next push does not start one
    READY.push(redis_conn, ["b"], time.time)
    assert drain_jobs(redis_conn) == 1


def test_a_push_leaves_a_recently_renewed_flag_alone(redis_conn: Redis) -> None:
    redis_conn.set(FLAG, "1", ex=FLAG_TTL)
    READY.push(redis_conn, ["a"], time.time)
    assert drain_jobs(redis_conn) == 0
    assert redis_conn.lrange(READY.key, 0, -1) == [b"a"]


# --- one drain chain at a time ----------------------------------------------------------------


def count_ids(ids: list[str]) -> int:
    return len(ids)


def drain_job() -> int:
    """The drain job of READY, as RQ runs it (on the worker's connection)."""
    job = get_current_job()
    assert job is not None
    return READY.drain(job.connection, count_ids, drain_job)


def run_one_job(redis: Redis) -> None:
    SimpleWorker([READY.queue], connection=redis).work(burst=True, max_jobs=1)


def test_the_drain_in_charge_hands_the_flag_to_the_one_drain_it_enqueues(
    redis_conn: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readylist, "SLICE", 0.0)  # its slice is over at once: it must go on
    READY.push(redis_conn, ["a"], drain_job)
    [first] = Queue(READY.queue, connection=redis_conn).get_jobs()
    assert redis_conn.get(FLAG) == first.id.encode()
    run_one_job(redis_conn)
    [successor] = Queue(READY.queue, connection=redis_conn).get_jobs()
    assert redis_conn.get(FLAG) == successor.id.encode()
    assert redis_conn.ttl(FLAG) > STALE_FLAG_TTL


def test_a_drain_no_longer_in_charge_enqueues_no_successor(
    redis_conn: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A drain stalled long enough for a push to start another, which now holds the flag.
    monkeypatch.setattr(readylist, "SLICE", 0.0)
    READY.push(redis_conn, ["a"], drain_job)
    redis_conn.set(FLAG, "the-other-drain", ex=FLAG_TTL)
    run_one_job(redis_conn)
    assert drain_jobs(redis_conn) == 0
    assert redis_conn.get(FLAG) == b"the-other-drain"


def test_the_drain_in_charge_renews_its_flag_while_a_batch_takes_long(
    redis_conn: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readylist, "HEARTBEAT", 0.05)
    renewed = []

    def slow_handle(ids: list[str]) -> int:
        redis_conn.expire(FLAG, 2)  # as if the batch had waited for slots for 28 s
        renewed.append(wait_for(lambda: redis_conn.ttl(FLAG) > 2, timeout=5))
        return len(ids)

    READY.push(redis_conn, ["a"], drain_job)
    [job] = Queue(READY.queue, connection=redis_conn).get_jobs()
    READY.drain(redis_conn, slow_handle, drain_job, token=job.id)
    assert renewed == [True]


def test_a_push_starts_a_drain_when_the_flag_expires_between_its_set_and_its_ttl(
    redis_conn: Redis,
) -> None:
    redis_conn.set(FLAG, "a-drain-that-just-ended", ex=FLAG_TTL)
    READY.push(FlagExpiresMidPush.client(redis_conn), ["a"], time.time)
    assert drain_jobs(redis_conn) == 1
    [job] = Queue(READY.queue, connection=redis_conn).get_jobs()
    assert redis_conn.get(FLAG) == job.id.encode()


class FlagExpiresMidPush(Pipeline):
    """A pipeline in which the draining flag expires right after the push's SET NX."""

    @staticmethod
    def client(redis: Redis) -> Redis:
        """A client whose first pipeline (the push's) is one of these."""
        pipelines = [FlagExpiresMidPush]

        class Client(Redis):
            def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
                kind = pipelines.pop() if pipelines else Pipeline
                return kind(self.connection_pool, self.response_callbacks, transaction, shard_hint)

        return Client(connection_pool=redis.connection_pool)

    def ttl(self, name: Any) -> Any:
        self.delete(name)
        return super().ttl(name)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        results = super().execute(raise_on_error)
        del results[2]  # the injected DEL's reply
        return results


def test_a_pop_sent_again_after_its_reply_was_lost_answers_the_same_ids(
    redis_conn: Redis,
) -> None:
    redis_conn.rpush(READY.key, *[str(n) for n in range(25)])
    first = READY._take(redis_conn, "pop-1")
    again = READY._take(redis_conn, "pop-1")  # redis-py's retry of the same command
    assert first == again == [str(n).encode() for n in range(10)]
    assert redis_conn.llen(READY.key) == 15  # one batch taken, not two


# --- a drain that died --------------------------------------------------------------------------


def test_the_sweeper_restarts_a_drain_for_ids_no_push_comes_to(redis_conn: Redis) -> None:
    redis_conn.rpush(READY.key, "a", "b")  # left by a drain whose worker was killed
    redis_conn.set(FLAG, "the-dead-drain", ex=FLAG_TTL)
    assert READY.restart(redis_conn, drain_job) == 0  # renewed just now: it may be alive
    redis_conn.expire(FLAG, STALE_FLAG_TTL - 1)  # not renewed for STALE_AFTER seconds
    assert READY.restart(redis_conn, drain_job) == 1
    [job] = Queue(READY.queue, connection=redis_conn).get_jobs()
    assert redis_conn.get(FLAG) == job.id.encode()
    run_one_job(redis_conn)
    assert redis_conn.llen(READY.key) == 0
    assert READY.restart(redis_conn, drain_job) == 0  # nothing waits: nothing to start


def failing_handle(ids: list[str]) -> int:
    raise RuntimeError("the database went away")


def failing_drain_job() -> int:
    job = get_current_job()
    assert job is not None
    return READY.drain(job.connection, failing_handle, drain_job)


def test_a_drain_job_that_fails_hands_the_flag_to_a_successor_that_goes_on(
    redis_conn: Redis,
) -> None:
    READY.push(redis_conn, ["a", "b"], failing_drain_job)
    [failed] = Queue(READY.queue, connection=redis_conn).get_jobs()
    run_one_job(redis_conn)
    held = redis_conn.get(FLAG)
    assert held is not None and held != failed.id.encode()  # a successor is in charge
    assert redis_conn.ttl(FLAG) > STALE_FLAG_TTL
    scheduled = Queue(READY.queue, connection=redis_conn).scheduled_job_registry
    assert scheduled.get_job_ids() == [held.decode()]  # due in RESTART_DELAY seconds
    assert redis_conn.lrange(READY.key, 0, -1) == []  # its batch is the database's to find
