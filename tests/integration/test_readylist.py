"""workers.readylist on the real Redis: a draining flag left by a drain job that died does not
hold the list up until the flag expires."""

from __future__ import annotations

import time

from redis import Redis
from rq import Queue

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
