"""Hand-made bad requests: each is a 4xx with a stable code (and the field on 422), never a 500,
and invalid data is refused rather than stored or delivered. Through the Flask test client on
SQLite and PostgreSQL, and through a real gunicorn for what only a real server sees (chunked
bodies, malformed framing)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from config import Settings
from tests.conftest import API_KEY
from tests.factories import subscription_body
from tests.integration.webserver import gunicorn

pytestmark = pytest.mark.postgres

MIB = 1024 * 1024


def post_raw(client: FlaskClient, path: str, body: str, auth: dict[str, str]) -> Any:
    return client.post(path, data=body, content_type="application/json", headers=auth)


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["code"] == code
    if field is not None:
        assert field in [e["field"] for e in response.json["errors"]], response.json


def create_webhook(client: FlaskClient, auth: dict[str, str]) -> str:
    created = client.post("/api/webhooks", json=subscription_body(), headers=auth)
    assert created.status_code == 201, created.json
    return str(created.json["id"])


def test_a_job_id_rq_would_refuse_is_404(client: FlaskClient, auth: dict[str, str]) -> None:
    for job_id in ("a.b", "a:b", "x" * 200):
        assert_error(client.get(f"/api/jobs/{job_id}", headers=auth), 404, "not_found")


def test_a_goal_target_above_int64_is_422_on_target(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    body = {"name": "big", "metric": "revenue", "target": 2**63}
    assert_error(
        client.post("/api/goals", json=body, headers=auth), 422, "validation_failed", "target"
    )
    body["target"] = 2**63 - 1
    assert client.post("/api/goals", json=body, headers=auth).status_code == 201


@pytest.mark.parametrize(
    "since",
    [
        "1e20",
        "-1e12",
        "-1",
        '"0001-01-01T00:00:00+01:00"',
        '"9999-12-31T23:59:59-01:00"',
        '"2025-02-30T00:00:00Z"',
        '"2025-01-01T00:00:00"',
        "true",
    ],
)
def test_an_out_of_range_since_is_422_on_since(
    client: FlaskClient, auth: dict[str, str], since: str
) -> None:
    sub_id = create_webhook(client, auth)
    response = post_raw(client, f"/api/webhooks/{sub_id}/recover", f'{{"since": {since}}}', auth)
    assert_error(response, 422, "validation_failed", "since")


@pytest.mark.parametrize("since", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_non_finite_since_is_400(client: FlaskClient, auth: dict[str, str], since: str) -> None:
    sub_id = create_webhook(client, auth)
    response = post_raw(client, f"/api/webhooks/{sub_id}/recover", f'{{"since": {since}}}', auth)
    assert_error(response, 400, "bad_request")


def test_edge_timestamps_in_range_are_accepted(client: FlaskClient, auth: dict[str, str]) -> None:
    sub_id = create_webhook(client, auth)
    for since in ("0", "253402300799", '"0001-01-01T00:00:00-01:00"', '"9999-12-31T23:59:59Z"'):
        response = post_raw(
            client, f"/api/webhooks/{sub_id}/recover", f'{{"since": {since}}}', auth
        )
        assert response.status_code == 202, (since, response.json)


@pytest.mark.parametrize(
    "value",
    [
        "1e20",
        "NaN",
        "-1e12",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "1700000000",
    ],
)
def test_an_out_of_range_attribution_period_is_422_on_from(
    client: FlaskClient, auth: dict[str, str], value: str
) -> None:
    response = client.get("/api/attribution", query_string={"from": value}, headers=auth)
    assert_error(response, 422, "validation_failed", "from")


def test_attribution_from_year_17_is_answered_with_a_four_digit_year(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = client.get(
        "/api/attribution", query_string={"from": "0017-05-06T13:41:48-15:51"}, headers=auth
    )
    assert response.status_code == 200
    assert response.json["from"] == "0017-05-07T05:32:48Z"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ('{"type": "lead.created", "data": ' + "[" * 1000 + "]" * 1000 + "}", "nested"),
        ('{"type": "lead.created", "data": {"a": ' + "9" * 4301 + "}}", "number"),
        ('{"type": "lead.created", "data": {"a": ' + "9" * 1001 + "}}", "number"),
        ('{"type": "lead.created", "data": {"a": 0.' + "1" * 1001 + "}}", "number"),
        ('{"type": "lead.created", "data": {"a": NaN}}', "NaN"),
        ('{"type": "lead.created", "data": {"a": [Infinity]}}', "Infinity"),
        ('{"type": "lead.created", "data": {"a": -Infinity}}', "Infinity"),
        ('{"type": "lead.created", "data": {"a": 1e400}}', "out of range"),
        ('{"type": "lead.created", "data": {"a": 1}', "Malformed JSON"),
    ],
)
def test_json_beyond_the_limits_is_400_before_parsing(
    client: FlaskClient, auth: dict[str, str], body: str, detail: str
) -> None:
    response = post_raw(client, "/api/events", body, auth)
    assert_error(response, 400, "bad_request")
    assert detail in response.json["detail"]


def test_json_within_the_limits_is_accepted(client: FlaskClient, auth: dict[str, str]) -> None:
    nested = "[" * 30 + "]" * 30  # with the object and data, 32 levels
    body = '{"type": "lead.created", "data": {"deep": ' + nested + ', "n": ' + "9" * 1000 + "}}"
    response = post_raw(client, "/api/events", body, auth)
    assert response.status_code == 202, response.json


def test_brackets_and_digits_inside_strings_do_not_count(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    text = "[{" * 500 + "9" * 5000 + '\\"'
    response = client.post(
        "/api/events", json={"type": "lead.created", "data": {"text": text}}, headers=auth
    )
    assert response.status_code == 202, response.json


@pytest.mark.parametrize("data", ['"text"', "42", "[1, 2]", "true", "null"])
def test_event_data_must_be_an_object(client: FlaskClient, auth: dict[str, str], data: str) -> None:
    response = post_raw(client, "/api/events", f'{{"type": "lead.created", "data": {data}}}', auth)
    assert_error(response, 422, "validation_failed", "data")


def test_a_management_body_over_1_mib_is_413(client: FlaskClient, auth: dict[str, str]) -> None:
    body = '{"type": "lead.created", "data": {"a": "' + "x" * MIB + '"}}'
    assert_error(post_raw(client, "/api/events", body, auth), 413, "payload_too_large")


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a\r\nX-Injected: 1",
        "https://example.com/a\nb",
        "https://example.com/a\tb",
        "https://example.com/a b",
        " https://example.com/a",
        "https://example.com/a\x00b",
        "https://example.com/\u202egnp.exe",
        "https://example.com/\u200fa",
        "https://example.com/\u2066a",
        "https://exa\u200bmple.com/",
        "https://example.com/\u00a0",
        "https://example.com/\u2028",
        "https://example.com/caf\u00e9",
        "https://example.com/a#",
    ],
)
def test_subscription_urls_with_unsafe_characters_are_422_on_url(
    client: FlaskClient, auth: dict[str, str], url: str
) -> None:
    response = client.post("/api/webhooks", json=subscription_body(url=url), headers=auth)
    assert_error(response, 422, "validation_failed", "url")
    sub_id = create_webhook(client, auth)
    patched = client.patch(f"/api/webhooks/{sub_id}", json={"url": url}, headers=auth)
    assert_error(patched, 422, "validation_failed", "url")
    assert [w["url"] for w in client.get("/api/webhooks", headers=auth).json] == [
        subscription_body()["url"]
    ]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/webhooks", subscription_body(description="a\x00b"), "description"),
        ("/api/goals", {"name": "a\x00", "metric": "leads", "target": 1}, "name"),
        ("/api/goals", {"name": "n", "metric": "leads", "target": 1, "source": "\x00"}, "source"),
    ],
)
def test_nul_in_a_stored_string_is_422_on_its_field(
    client: FlaskClient, auth: dict[str, str], path: str, body: dict[str, Any], field: str
) -> None:
    assert_error(client.post(path, json=body, headers=auth), 422, "validation_failed", field)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/events", '{"type": "lead.created", "data": {"x": "\\ud800"}}'),
        (
            "/api/webhooks",
            '{"url": "https://example.com/h", "events": ["*"], "description": "\\udfff"}',
        ),
        ("/api/goals", '{"name": "\\ud83d", "metric": "leads", "target": 1}'),
    ],
    ids=["event-data", "description", "goal-name"],
)
def test_half_a_surrogate_pair_is_400_not_500(
    client: FlaskClient, auth: dict[str, str], path: str, body: str
) -> None:
    assert_error(post_raw(client, path, body, auth), 400, "bad_request")


def test_a_body_naming_a_key_twice_is_400(client: FlaskClient, auth: dict[str, str]) -> None:
    body = '{"url": "https://a.example/h", "events": ["*"], "url": "https://b.example/h"}'
    assert_error(post_raw(client, "/api/webhooks", body, auth), 400, "bad_request")
    assert client.get("/api/webhooks", headers=auth).json == []


def test_a_whole_surrogate_pair_is_a_character(client: FlaskClient, auth: dict[str, str]) -> None:
    body = '{"type": "lead.created", "data": {"x": "\\ud83d\\ude00"}}'
    assert post_raw(client, "/api/events", body, auth).status_code == 202


def test_nul_in_a_path_is_404_and_in_a_query_is_422(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    assert_error(client.get("/api/webhooks/wh_%00", headers=auth), 404, "not_found")
    assert_error(client.get("/api/goals/goal_%00x", headers=auth), 404, "not_found")
    leads = client.get("/api/leads", query_string={"email": "a\x00@b"}, headers=auth)
    assert_error(leads, 422, "validation_failed", "email")
    inbound = client.get("/api/inbound", query_string={"cursor": "\x00"}, headers=auth)
    assert_error(inbound, 422, "validation_failed", "cursor")


def test_a_patch_without_changes_is_422(client: FlaskClient, auth: dict[str, str]) -> None:
    sub_id = create_webhook(client, auth)
    assert_error(client.patch(f"/api/webhooks/{sub_id}", headers=auth), 422, "validation_failed")
    empty = client.patch(f"/api/webhooks/{sub_id}", json={}, headers=auth)
    assert_error(empty, 422, "validation_failed", "_body")


def test_options_on_a_subscription_lists_its_own_methods(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    sub_id = create_webhook(client, auth)
    allow = client.options(f"/api/webhooks/{sub_id}", headers=auth).headers["Allow"]
    assert allow == "DELETE, GET, HEAD, OPTIONS, PATCH"
    door = client.options("/api/webhooks/stripe", headers=auth).headers["Allow"]
    assert "POST" in door.split(", ")


# --- through a real gunicorn ----------------------------------------------------------------


def raw_exchange(base: str, request: bytes) -> bytes:
    """Send `request` as is on a new connection; the server's whole answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def chunked_post(path: str, body: bytes, *, key: str | None, framing: bytes | None = None) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n"
    ).encode()
    if key:
        head += f"x-api-key: {key}\r\n".encode()
    chunks = framing if framing is not None else b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    return head + b"\r\n" + chunks


def test_on_gunicorn_chunked_and_malformed_bodies_are_4xx_without_a_traceback(
    settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "gunicorn.log"
    malformed = b"ZZZ\r\nabc\r\n0\r\n\r\n"
    with gunicorn(settings, log, STRIPE_WEBHOOK_SECRET="whsec_test") as base:
        answers = {
            "malformed, with a key": chunked_post(
                "/api/webhooks", b"", key=API_KEY, framing=malformed
            ),
            "malformed, inbound door": chunked_post(
                "/api/webhooks/stripe", b"", key=None, framing=malformed
            ),
            "over 1 MiB, chunked": chunked_post(
                "/api/events", b'{"type": "lead.created", "data": {"a": "' + b"x" * MIB + b'"}}',
                key=API_KEY,
            ),
            "nested 1000 deep, chunked": chunked_post(
                "/api/events", b'{"type": "lead.created", "data": ' + b"[" * 1000 + b"]" * 1000
                + b"}", key=API_KEY,
            ),
        }  # fmt: skip
        statuses = {
            name: raw_exchange(base, req).split(b" ", 2)[1] for name, req in answers.items()
        }
        ok = requests.post(
            f"{base}/api/events",
            data=iter([b'{"type": "lead.created", ', b'"data": {"a": 1}}']),  # chunked
            headers={"x-api-key": API_KEY, "Content-Type": "application/json"},
            timeout=10,
        )
    assert statuses == {
        "malformed, with a key": b"400",
        "malformed, inbound door": b"400",
        "over 1 MiB, chunked": b"413",
        "nested 1000 deep, chunked": b"400",
    }
    assert ok.status_code == 202, ok.text
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    assert " -> 500 " not in text


def test_on_gunicorn_requests_it_cannot_read_get_our_error_shape_and_headers(
    settings: Settings, tmp_path: Path
) -> None:
    get = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    cases = {
        "nul in a header": (get + b"X-A: a\x00b\r\n\r\n", b"400"),
        "both framings": (
            b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"400",
        ),
        "two lengths": (get + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", b"400"),
        "negative length": (get + b"Content-Length: -1\r\n\r\n", b"400"),
        "request line over 4 KiB": (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n", b"414"),
        "unknown coding": (get + b"Transfer-Encoding: xchunked\r\n\r\n", b"501"),
    }
    with gunicorn(settings, tmp_path / "gunicorn.log") as base:
        answers = {name: raw_exchange(base, request) for name, (request, _) in cases.items()}
    for name, (_, status) in cases.items():
        head, _, body = answers[name].partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
        assert lines[0].split(" ")[1].encode() == status, (name, lines[0])
        assert headers["content-type"] == "application/json", name
        assert json.loads(body)["code"] and "detail" in json.loads(body), name
        assert (
            headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
        )
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-request-id"].startswith("req_")
        assert answers[name].count(b"HTTP/1.1 ") == 1, name  # one answer, nothing after it
