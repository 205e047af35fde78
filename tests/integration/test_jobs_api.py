"""GET /api/jobs/<id> through the Flask test client, on jobs run by a real SimpleWorker on the
real Redis: status, times, result, a one-line error without its traceback, and progress."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, SimpleWorker, get_current_job
from rq.job import Job

from apex.api import jobs as jobs_api
from workers.jobs import MAINTENANCE

SECRET_URL = "postgresql://apex:hunter2@db.internal:5432/apex"


# --- job functions, run by the worker -------------------------------------------------------


def count_to(total: int) -> dict[str, int]:
    """Records its progress in the job's meta as recover() does."""
    job = get_current_job()
    assert job is not None
    for done in range(1, total + 1):
        job.meta["progress"] = {"done": done, "total": total}
        job.save_meta()
    return {"requeued": total}


def fail_with_a_secret() -> None:
    raise ValueError(f"could not connect to {SECRET_URL}\nsecond line of the message")


def return_an_object() -> object:
    return object()


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def queue(redis_conn: Redis) -> Queue:
    return Queue(MAINTENANCE, connection=redis_conn)


def work(queue: Queue) -> None:
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def get(client: FlaskClient, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    response = client.get(f"/api/jobs/{job_id}", headers=auth)
    assert response.status_code == 200, response.json
    assert response.json is not None
    return dict(response.json)


# --- tests ----------------------------------------------------------------------------------


def test_needs_a_key(client: FlaskClient, queue: Queue) -> None:
    job = queue.enqueue(count_to, 1)

    response = client.get(f"/api/jobs/{job.id}")

    assert response.status_code == 401
    assert response.json is not None and response.json["code"] == "unauthorized"


def test_unknown_job_is_not_found(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/api/jobs/no-such-job", headers=auth)

    assert response.status_code == 404
    assert response.json == {"code": "not_found", "detail": "No job no-such-job"}


def test_a_queued_job(client: FlaskClient, auth: dict[str, str], queue: Queue) -> None:
    job = queue.enqueue(count_to, 3)

    body = get(client, auth, job.id)

    assert body["id"] == job.id
    assert body["queue"] == MAINTENANCE
    assert body["function"] == f"{__name__}.count_to"
    assert body["status"] == "queued"
    assert body["enqueuedAt"].endswith("Z")
    assert body["startedAt"] is None and body["endedAt"] is None
    assert body["result"] is None and body["error"] is None and body["progress"] is None


def test_a_finished_job_with_its_result_and_progress(
    client: FlaskClient, auth: dict[str, str], queue: Queue
) -> None:
    job = queue.enqueue(count_to, 3)
    work(queue)

    body = get(client, auth, job.id)

    assert body["status"] == "finished"
    assert body["result"] == {"requeued": 3}
    assert body["progress"] == {"done": 3, "total": 3}
    assert body["error"] is None
    assert body["startedAt"] <= body["endedAt"]


def test_progress_while_running(client: FlaskClient, auth: dict[str, str], queue: Queue) -> None:
    job = queue.enqueue(count_to, 10)
    # What a running job has saved so far.
    job.meta["progress"] = {"done": 4, "total": 10}
    job.save_meta()

    assert get(client, auth, job.id)["progress"] == {"done": 4, "total": 10}


@pytest.mark.parametrize(
    "progress",
    [{"done": "4", "total": 10}, {"done": 4}, [4, 10], "4/10"],
    ids=["string-count", "no-total", "list", "text"],
)
def test_progress_of_another_shape_is_left_out(
    client: FlaskClient, auth: dict[str, str], queue: Queue, progress: object
) -> None:
    job = queue.enqueue(count_to, 1)
    job.meta["progress"] = progress
    job.save_meta()

    assert get(client, auth, job.id)["progress"] is None


def test_a_failed_job_shows_one_line_without_secrets(
    client: FlaskClient, auth: dict[str, str], queue: Queue
) -> None:
    job = queue.enqueue(fail_with_a_secret)
    work(queue)

    body = get(client, auth, job.id)

    assert body["status"] == "failed"
    assert body["result"] is None
    assert body["error"] == (
        "ValueError: could not connect to postgresql://***@db.internal:5432/apex"
    )
    assert "hunter2" not in str(body) and "Traceback" not in str(body)


def test_a_result_that_is_not_json_is_named_only(
    client: FlaskClient, auth: dict[str, str], queue: Queue
) -> None:
    job = queue.enqueue(return_an_object)
    work(queue)

    assert get(client, auth, job.id)["result"] == "<object>"


def test_a_deleted_job_is_not_found(
    client: FlaskClient, auth: dict[str, str], queue: Queue
) -> None:
    job = queue.enqueue(count_to, 1)
    Job.fetch(job.id, connection=queue.connection).delete()

    assert client.get(f"/api/jobs/{job.id}", headers=auth).status_code == 404


def test_is_in_the_openapi_document(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").json

    assert spec is not None
    assert "get" in spec["paths"]["/api/jobs/{job_id}"]


@pytest.mark.parametrize(
    ("traceback_text", "expected"),
    [
        (
            'Traceback (most recent call last):\n  File "x.py", line 1, in f\n    boom()\n'
            "RuntimeError: boom\n",
            "RuntimeError: boom",
        ),
        (
            'Traceback (most recent call last):\n  File "a.py", line 3, in g\n    f(1)\n'
            "KeyError: 1\n\nDuring handling of the above exception, another exception occurred:\n\n"
            'Traceback (most recent call last):\n  File "b.py", line 9, in h\n    x()\n'
            "    ^^^\nsqlalchemy.exc.OperationalError: (psycopg.OperationalError) "
            "connection to redis://:s3cret@cache:6379/0 failed\n[SQL: SELECT 1]\n",
            "sqlalchemy.exc.OperationalError: (psycopg.OperationalError) "
            "connection to redis://***@cache:6379/0 failed",
        ),
        ("RuntimeError: no frames at all", "RuntimeError: no frames at all"),
        ("Traceback:\n  " + "x" * 10 + "\nValueError: " + "y" * 400, "ValueError: " + "y" * 287),
    ],
    ids=["plain", "chained-with-url-credentials", "no-frames", "long"],
)
def test_error_summary(traceback_text: str, expected: str) -> None:
    summary = jobs_api.error_summary(traceback_text)

    assert summary.rstrip("…") == expected
    assert len(summary) <= jobs_api.MAX_ERROR
