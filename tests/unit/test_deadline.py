"""The deadlines' clock and 408 middleware, over a real socket pair (no gunicorn)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from config.deadline import (
    MAX_REQUESTS_PER_CONNECTION,
    ClientTimeoutError,
    ReadClock,
    SendTimeoutError,
    answer_late_requests,
)

TIMEOUT = 0.3


class Request:
    """What ReadClock needs of gunicorn's Request: force_close()."""

    def __init__(self) -> None:
        self.closing = False

    def force_close(self) -> None:
        self.closing = True


@pytest.fixture
def pair() -> Iterator[tuple[ReadClock, socket.socket]]:
    server, client = socket.socketpair()
    clock = ReadClock(server, TIMEOUT)
    yield clock, client
    server.close()
    client.close()


def test_reads_in_time_pass_through(pair: tuple[ReadClock, socket.socket]) -> None:
    clock, client = pair
    clock.start()
    client.sendall(b"GET / HTTP/1.1\r\n")

    assert clock.recv(100) == b"GET / HTTP/1.1\r\n"
    assert not clock.expired
    assert clock.gettimeout() is None  # the socket is left as gunicorn set it


def test_while_headers_are_read_the_deadline_reads_as_a_closed_connection(
    pair: tuple[ReadClock, socket.socket],
) -> None:
    clock, client = pair
    clock.start()
    client.sendall(b"G")
    assert clock.recv(100) == b"G"

    assert clock.recv(100) == b""  # nothing more came before the deadline
    assert clock.expired
    assert clock.recv(100) == b""  # and stays so, without waiting again


def test_while_the_app_reads_the_body_the_deadline_is_a_408_and_closes_after_the_answer(
    pair: tuple[ReadClock, socket.socket],
) -> None:
    clock, _client = pair
    clock.start()
    clock.request = request = Request()

    with pytest.raises(ClientTimeoutError) as raised:
        clock.recv(100)

    assert raised.value.code == 408
    assert request.closing
    assert clock.expired


def test_while_gunicorn_drains_a_body_the_deadline_is_a_socket_timeout(
    pair: tuple[ReadClock, socket.socket],
) -> None:
    clock, _client = pair
    clock.start()
    clock.request = Request()
    clock.answered = True

    with pytest.raises(TimeoutError) as raised:
        clock.recv(100)

    assert not isinstance(raised.value, ClientTimeoutError)


def test_a_callers_shorter_timeout_is_its_own_not_the_deadline(
    pair: tuple[ReadClock, socket.socket],
) -> None:
    clock, _client = pair
    clock.start()
    clock.settimeout(0.05)  # shorter, as gunicorn's body drain does

    with pytest.raises(TimeoutError):
        clock.recv(100)

    assert not clock.expired
    assert clock.gettimeout() == 0.05


def test_an_unarmed_clock_reads_like_the_socket(pair: tuple[ReadClock, socket.socket]) -> None:
    clock, client = pair
    client.sendall(b"x")
    client.close()

    assert clock.recv(100) == b"x"
    assert clock.recv(100) == b""
    assert not clock.expired


def test_writes_the_client_takes_pass_through(pair: tuple[ReadClock, socket.socket]) -> None:
    clock, client = pair
    clock.start()

    clock.sendall(b"HTTP/1.1 200 OK\r\n")
    clock.sendall(b"\r\n")

    assert client.recv(100) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert not clock.send_expired
    assert clock.gettimeout() is None


def test_a_response_the_client_does_not_take_ends_at_the_deadline(
    pair: tuple[ReadClock, socket.socket],
) -> None:
    clock, _client = pair  # the client never reads
    clock.start()

    with pytest.raises(SendTimeoutError):
        clock.sendall(b"x" * (32 * 1024 * 1024))  # far more than the socket buffers hold

    assert clock.send_expired
    assert clock.gettimeout() is None
    with pytest.raises(SendTimeoutError):
        clock.sendall(b"x")  # the deadline is the response's, not each write's


def test_a_100_continue_does_not_start_the_responses_write_deadline(
    pair: tuple[ReadClock, socket.socket],
) -> None:
    clock, client = pair
    clock.start()

    assert clock.send(b"HTTP/1.1 100 Continue\r\n\r\n") == 25
    time.sleep(TIMEOUT * 1.5)  # the app reads the body meanwhile
    clock.sendall(b"HTTP/1.1 200 OK\r\n\r\n")

    assert client.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
    assert not clock.send_expired


def test_each_request_gets_its_own_write_deadline(pair: tuple[ReadClock, socket.socket]) -> None:
    clock, client = pair
    clock.start()
    clock.sendall(b"first")
    time.sleep(TIMEOUT * 1.5)
    clock.start()  # the next request on the connection

    clock.sendall(b"second")

    assert client.recv(100) == b"firstsecond"


def test_a_connection_is_worn_out_by_its_requests_or_its_age(
    pair: tuple[ReadClock, socket.socket],
) -> None:
    clock, _client = pair
    assert not clock.worn_out()

    clock.served = MAX_REQUESTS_PER_CONNECTION
    assert clock.worn_out()

    clock.served = 1
    time.sleep(TIMEOUT)
    assert clock.worn_out()


def app_answering(status: str, reads_body: bool) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if reads_body:
            try:
                environ["gunicorn.socket"].recv(100)
            except ClientTimeoutError:
                pass  # the app renders it its own way; the middleware makes it ours
        start_response(status, [("Content-Type", "text/plain"), ("X-Request-ID", "req_1")])
        return [b"the app's answer"]

    return app


def call(
    app: Callable[..., Iterable[bytes]], clock: ReadClock
) -> tuple[str, dict[str, str], bytes]:
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        got["status"], got["headers"] = status, dict(headers)

    body = b"".join(answer_late_requests(app)({"gunicorn.socket": clock}, start_response))
    return got["status"], got["headers"], body


def test_an_app_answer_after_the_deadline_is_replaced_by_our_408(
    pair: tuple[ReadClock, socket.socket],
) -> None:
    clock, _client = pair
    clock.start()
    clock.request = Request()

    status, headers, body = call(app_answering("400 BAD REQUEST", reads_body=True), clock)

    assert status == "408 Request Timeout"
    assert json.loads(body)["code"] == "request_timeout"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Request-ID"] == "req_1"


def test_an_app_answer_in_time_is_left_alone(pair: tuple[ReadClock, socket.socket]) -> None:
    clock, client = pair
    clock.start()
    client.sendall(b"x")

    status, _headers, body = call(app_answering("202 ACCEPTED", reads_body=True), clock)

    assert (status, body) == ("202 ACCEPTED", b"the app's answer")
