"""rq-dashboard at /rq through the Flask test client on the real Redis: API-key auth with a
Basic challenge, the project's queues listed, requeue from the same site only, deletes off."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus

from apex.api.dashboard import init_dashboard
from apex.apikeys import create_key
from tests.conftest import API_KEY
from workers.jobs import DELIVERIES, QUEUES

SAME_SITE = "http://localhost"  # the test client's host
EVIL = "https://evil.example"


def fail_on_purpose() -> None:
    raise RuntimeError("failing on purpose")


def basic(password: str, username: str = "operator") -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def failed_job(redis_conn: Redis) -> Iterator[Job]:
    """A job that ran on a real worker and failed, so it sits in the failed registry."""
    queue = Queue(DELIVERIES, connection=redis_conn)
    job = queue.enqueue(fail_on_purpose)
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert job.get_status() == JobStatus.FAILED
    yield job


def status_of(job: Job) -> JobStatus:
    return job.get_status(refresh=True)


# --- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("not-the-key"),
        {"Authorization": "Basic !!!not-base64"},
        {"x-api-key": "not-the-key"},
    ],
    ids=["no-credentials", "wrong-basic-password", "malformed-basic", "wrong-x-api-key"],
)
def test_refuses_without_a_valid_key_and_asks_for_basic(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    response = client.get("/rq/", headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Apex"'
    assert response.json is not None and response.json["code"] == "unauthorized"


@pytest.mark.parametrize(
    "path", ["/rq", "/rq/0/data/queues.json", "/rq/static/js/jquery-3.5.1.min.js"]
)
def test_guards_every_path_under_rq(client: FlaskClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Apex"'


@pytest.mark.parametrize(
    "headers",
    [basic(API_KEY), basic(API_KEY, username=""), {"x-api-key": API_KEY}],
    ids=["basic", "basic-without-username", "x-api-key"],
)
def test_opens_with_the_key(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.get("/rq/", headers=headers)

    assert response.status_code == 200
    assert b"RQ dashboard" in response.data


def test_serves_its_static_files_with_the_key(client: FlaskClient) -> None:
    with client.get("/rq/static/js/jquery-3.5.1.min.js", headers=basic(API_KEY)) as response:
        assert response.status_code == 200
        assert response.mimetype == "text/javascript"


def test_accepts_a_stored_api_key(app: Flask, client: FlaskClient) -> None:
    _, plaintext = create_key(app.extensions["apex"].engine, "operator")

    assert client.get("/rq/", headers=basic(plaintext)).status_code == 200


# --- what it shows --------------------------------------------------------------------------


def test_lists_every_queue_of_the_project_even_empty(client: FlaskClient) -> None:
    response = client.get("/rq/0/data/queues.json", headers=basic(API_KEY))

    assert response.status_code == 200
    assert response.json is not None
    assert {queue["name"] for queue in response.json["queues"]} == set(QUEUES)


def test_shows_failed_jobs_with_their_error(client: FlaskClient, failed_job: Job) -> None:
    listing = client.get(
        f"/rq/0/data/jobs/{DELIVERIES}/failed/8/asc/1.json", headers=basic(API_KEY)
    )
    detail = client.get(f"/rq/0/data/job/{failed_job.id}.json", headers=basic(API_KEY))

    assert listing.json is not None and detail.json is not None
    assert [job["id"] for job in listing.json["jobs"]] == [failed_job.id]
    assert detail.json["status"] == "failed"
    assert "failing on purpose" in detail.json["exc_info"]


@pytest.mark.parametrize("page", ["/rq/0/view/queues", "/rq/0/view/workers", "/rq/0/view/jobs"])
def test_renders_its_pages(client: FlaskClient, page: str) -> None:
    response = client.get(page, headers=basic(API_KEY), follow_redirects=True)

    assert response.status_code == 200
    assert response.request.path.startswith("/rq/")


# --- requeue, same site only ----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{"Origin": SAME_SITE}, {"Referer": f"{SAME_SITE}/rq/0/view/jobs"}],
    ids=["origin", "referer"],
)
def test_requeues_a_failed_job_from_the_same_site(
    client: FlaskClient, failed_job: Job, redis_conn: Redis, headers: dict[str, str]
) -> None:
    response = client.post(
        f"/rq/job/{failed_job.id}/requeue", headers={**basic(API_KEY), **headers}
    )

    assert response.status_code == 200
    assert response.json == {"status": "OK"}
    assert status_of(failed_job) == JobStatus.QUEUED
    assert failed_job.id in Queue(DELIVERIES, connection=redis_conn).job_ids


def test_a_client_sending_x_api_key_needs_no_origin(client: FlaskClient, failed_job: Job) -> None:
    # No cross-site page can set this header, so such a request cannot be forged.
    response = client.post(f"/rq/job/{failed_job.id}/requeue", headers={"x-api-key": API_KEY})

    assert response.status_code == 200
    assert status_of(failed_job) == JobStatus.QUEUED


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": EVIL, "Referer": f"{SAME_SITE}/rq/"},
        {"Origin": "null"},
        {"Referer": f"{EVIL}/page"},
        {"Origin": "http://localhost.evil.example"},
        {},
    ],
    ids=["evil-origin", "evil-origin-same-referer", "opaque-origin", "evil-referer", "lookalike",
         "neither-with-basic"],
)  # fmt: skip
def test_refuses_a_cross_site_requeue(
    client: FlaskClient, failed_job: Job, headers: dict[str, str]
) -> None:
    response = client.post(
        f"/rq/job/{failed_job.id}/requeue", headers={**basic(API_KEY), **headers}
    )

    assert response.status_code == 403
    assert status_of(failed_job) == JobStatus.FAILED


def test_refuses_a_cross_site_post_even_with_x_api_key(
    client: FlaskClient, failed_job: Job
) -> None:
    response = client.post(
        f"/rq/job/{failed_job.id}/requeue", headers={"x-api-key": API_KEY, "Origin": EVIL}
    )

    assert response.status_code == 403
    assert status_of(failed_job) == JobStatus.FAILED


@pytest.mark.parametrize(
    "headers", [{"Referer": f"{EVIL}/"}, {}], ids=["evil-referer", "no-referer"]
)
def test_refuses_the_requeue_all_get_from_another_site(
    client: FlaskClient, failed_job: Job, headers: dict[str, str]
) -> None:
    # An <img src> on any page would send this GET with the browser's cached credentials.
    response = client.get(f"/rq/requeue/{DELIVERIES}", headers={**basic(API_KEY), **headers})

    assert response.status_code == 403
    assert status_of(failed_job) == JobStatus.FAILED


def test_requeue_all_works_from_its_own_page(client: FlaskClient, failed_job: Job) -> None:
    response = client.post(
        f"/rq/requeue/{DELIVERIES}", headers={**basic(API_KEY), "Origin": SAME_SITE}
    )

    assert response.status_code == 200
    assert response.json == {"status": "OK", "count": 1}
    assert status_of(failed_job) == JobStatus.QUEUED


def test_reading_needs_no_origin(client: FlaskClient, failed_job: Job) -> None:
    # Plain GETs change nothing, so a bookmark or a typed URL works.
    response = client.get(f"/rq/0/data/job/{failed_job.id}.json", headers=basic(API_KEY))

    assert response.status_code == 200


# --- deletes are off ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/rq/job/{job_id}/delete", f"/rq/queue/{DELIVERIES}/failed/empty"],
    ids=["delete-job", "empty-failed-registry"],
)
def test_deletes_are_disabled(
    client: FlaskClient, failed_job: Job, redis_conn: Redis, path: str
) -> None:
    response = client.post(
        path.format(job_id=failed_job.id), headers={**basic(API_KEY), "Origin": SAME_SITE}
    )

    assert response.json == {"status": "DISABLED"}
    assert Job.exists(failed_job.id, connection=redis_conn)
    assert status_of(failed_job) == JobStatus.FAILED


def test_offers_no_delete_buttons(client: FlaskClient, failed_job: Job) -> None:
    page = client.get(f"/rq/0/view/jobs/{DELIVERIES}/failed/8/asc/1", headers=basic(API_KEY))

    assert page.status_code == 200
    assert b'id="empty-btn"' not in page.data
    assert b'data-role="delete-job-btn"' not in page.data
    assert b'id="requeue-all-btn"' in page.data


def test_mounting_twice_changes_nothing(app: Flask, client: FlaskClient) -> None:
    init_dashboard(app)

    assert client.get("/rq/", headers=basic(API_KEY)).status_code == 200
