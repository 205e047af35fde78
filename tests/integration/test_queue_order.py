"""The order a worker serves its queues in: the sweeps first, however deep the delivery backlog."""

from __future__ import annotations

from redis import Redis
from rq import Queue, SimpleWorker, get_current_job

from workers.jobs import DELIVERIES, INBOUND, MAINTENANCE, QUEUES


def note_queue() -> None:
    job = get_current_job()
    assert job is not None
    job.connection.rpush("test:served", job.origin)


def test_a_sweep_runs_before_a_backlog_of_deliveries_and_inbound_events(
    redis_conn: Redis,
) -> None:
    for _ in range(50):
        Queue(DELIVERIES, connection=redis_conn).enqueue(note_queue)
        Queue(INBOUND, connection=redis_conn).enqueue(note_queue)
    Queue(MAINTENANCE, connection=redis_conn).enqueue(note_queue)  # a sweep, enqueued last

    queues = [Queue(name, connection=redis_conn) for name in QUEUES]
    SimpleWorker(queues, connection=redis_conn).work(burst=True)

    served = [name.decode() for name in redis_conn.lrange("test:served", 0, -1)]
    assert len(served) == 101
    assert served[0] == MAINTENANCE
