"""The client deadlines: gunicorn's threaded worker, with every read of a request (headers and
body) ending APEX_CLIENT_TIMEOUT seconds after the request's first byte, every response written
in full within APEX_CLIENT_TIMEOUT of its first byte, and every connection closed after
MAX_REQUESTS_PER_CONNECTION requests or once it is APEX_CLIENT_TIMEOUT old.

A client that trickles its request holds one thread of the worker for as long as it keeps
sending (gunicorn parses headers in a thread and the app reads the body in one), so without a
deadline a few slow clients hold every thread. With it, such a client gets `408` with our error
JSON and its connection closed, and its thread is free again at the deadline (plus a short linger
so the 408 is not lost to a TCP reset). Idle connections (nothing sent yet) are gunicorn's own
business: they wait in its poller, not in a thread, after a few seconds. A worker with no thread
free stops accepting, so the connections it would have queued go to a worker that has one.

A client that does not read its answers (pipelining requests, say, and never reading) would
likewise hold a thread in a write once the socket buffers are full. At the write deadline its
connection is reset (nothing it has not read is worth sending) and the thread is free. The cap
on requests and on a connection's age bounds how long one connection, answered a request at a
time, keeps a thread: its last response says `Connection: close`.

What happens at the read deadline depends on who is reading:
- gunicorn, parsing headers: the read ends as if the client had closed; the worker answers 408
  (only that: gunicorn's own 400 for the cut-off headers is not sent);
- the app, reading the body: the read raises ClientTimeoutError (a werkzeug 408, so Flask
  renders it), and `answer_late_requests` makes sure the answer is our 408 JSON;
- gunicorn, draining an unread body after the answer: a socket timeout; it closes the connection.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from gunicorn.workers.gthread import ThreadWorker
from werkzeug.exceptions import RequestTimeout

from config.settings import load_settings

log = logging.getLogger("apex.request")

LINGER = 0.5  # seconds to read what a cut-off client still sends, so our 408 reaches it
LINGER_BYTES = 64 * 1024
# Requests one connection may carry (kept alive or pipelined); the last says Connection: close.
MAX_REQUESTS_PER_CONNECTION = 100
RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets, dropping unsent

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ClientTimeoutError(RequestTimeout):
    """The client did not deliver its whole request within the deadline."""


class SendTimeoutError(OSError):
    """The client did not take a whole response within the deadline."""


def timeout_detail(timeout: float) -> str:
    return f"The request was not received in full within {timeout:g} s"


def timeout_body(timeout: float) -> bytes:
    body = {"code": "request_timeout", "detail": timeout_detail(timeout)}
    return json.dumps(body).encode() + b"\n"


# The stable codes of the errors gunicorn answers before the app sees a request.
_GUNICORN_CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_header_fields_too_large",
    501: "not_implemented",
}
_KNOWN_STATUSES = frozenset(int(status) for status in HTTPStatus)
# What every response of ours carries (apex.api.headers adds them to the app's responses).
_SECURITY_HEADERS = (
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"
)


def error_response(status: int) -> bytes:
    """A whole HTTP response for an error found before the app ran: our JSON shape, a request
    id, the security headers, and Connection: close."""
    code = _GUNICORN_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
    reason = HTTPStatus(status).phrase
    body = json.dumps({"code": code, "detail": f"{reason} (the request could not be read)"})
    data = body.encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n"
        f"X-Request-ID: req_{secrets.token_hex(8)}\r\n"
        f"{_SECURITY_HEADERS}"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + data


class _Written:
    """Stands in for the client socket while gunicorn writes its error page: keeps the bytes
    (only the status line is used) and passes everything else to the socket."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._data = bytearray()

    def gettimeout(self) -> float:
        return 0.0  # so gunicorn writes at once, to us

    def sendall(self, data: bytes) -> None:
        self._data += data

    def status(self) -> int:
        line = bytes(self._data).partition(b"\r\n")[0].decode("latin-1")
        status = (line.split(" ") + ["", ""])[1]
        if status.isdigit() and int(status) in _KNOWN_STATUSES:
            return int(status)
        return 400

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ReadClock:
    """A client socket whose reads, while a request is being served, all end by one deadline:
    `timeout` seconds after the first read of the request; and whose writes of each response all
    end `timeout` seconds after its first write. Everything else is the socket's own.
    """

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self.timeout = timeout
        self.opened = time.monotonic()
        self.served = 0  # requests handed to the app on this connection
        self.armed = False
        self.deadline: float | None = None
        self.send_deadline: float | None = None
        self.request: Any = None  # gunicorn's Request, once its headers are parsed
        self.answered = False  # the app's answer is written; reads now only drain
        self.expired = False
        self.send_expired = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def start(self) -> None:
        """A request may begin now; the clock runs from its first read."""
        self.armed, self.deadline, self.send_deadline, self.request = True, None, None, None
        self.answered = self.expired = self.send_expired = False

    def worn_out(self) -> bool:
        """Whether this connection has carried its last request: by number or by age."""
        too_old = time.monotonic() - self.opened >= self.timeout
        return self.served >= MAX_REQUESTS_PER_CONNECTION or too_old

    def stop(self) -> None:
        self.armed = False

    def recv(self, size: int, flags: int = 0) -> bytes:
        if not self.armed:
            return self._sock.recv(size, flags)
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + self.timeout
        remaining = self.deadline - now
        if remaining > 0 and not self.expired:
            prior = self._sock.gettimeout()  # gunicorn's drain sets its own, maybe shorter
            self._sock.settimeout(remaining if prior is None else min(prior, remaining))
            try:
                return self._sock.recv(size, flags)
            except TimeoutError:
                if prior is not None and prior < remaining:
                    raise
            finally:
                self._sock.settimeout(prior)
        return self._expire()

    def sendall(self, data: Any, flags: int = 0) -> None:
        if not self.armed or self._sock.gettimeout() == 0.0:
            self._sock.sendall(data, flags)  # unarmed, or gunicorn's own non-blocking write
            return
        now = time.monotonic()
        if self.send_deadline is None:
            self.send_deadline = now + self.timeout
        remaining = self.send_deadline - now
        if remaining <= 0:
            raise self._send_expire()
        prior = self._sock.gettimeout()
        self._sock.settimeout(remaining)  # bounds the whole sendall, however many sends it takes
        try:
            self._sock.sendall(data, flags)
        except TimeoutError:
            raise self._send_expire() from None
        finally:
            self._sock.settimeout(prior)

    def send(self, data: Any, flags: int = 0) -> int:
        """gunicorn's one send: `100 Continue`. An interim answer, timed on its own: the
        response's write deadline starts at the response, after the app has read the body."""
        started = self.send_deadline
        self.sendall(data, flags)
        self.send_deadline = started
        return len(data)

    def _send_expire(self) -> SendTimeoutError:
        self.send_expired = True
        return SendTimeoutError(f"response not taken in full within {self.timeout:g} s")

    def reset(self) -> None:
        """Make the coming close a reset: what the client did not read is dropped, not sent on
        for as long as it keeps its window shut. Reading is shut too, so gunicorn's lingering
        close (in its main loop) returns at once."""
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
            self._sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def _expire(self) -> bytes:
        self.expired = True
        if self.request is None:
            return b""  # the header parser stops as at a closed connection; the worker answers
        self.request.force_close()
        if self.answered:
            raise TimeoutError("request body not drained within the client deadline")
        raise ClientTimeoutError(timeout_detail(self.timeout))

    def shut(self) -> None:
        """End the connection in the calling thread: stop writing, read what is still in flight
        for a moment (so the peer's TCP does not get a reset ahead of our answer), then shut
        reading too, so gunicorn's own lingering close (in its main loop) returns at once."""
        sock = self._sock
        try:
            sock.shutdown(socket.SHUT_WR)
            ends = time.monotonic() + LINGER
            drained = 0
            while drained < LINGER_BYTES and (left := ends - time.monotonic()) > 0:
                sock.settimeout(left)
                data = sock.recv(8192)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass
        try:
            sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass


def answer_late_requests(app: WSGIApp) -> WSGIApp:
    """WSGI middleware: when the client ran out of time while the app read its body, the answer
    is our 408 JSON (with the app's request id), whatever the app made of the failed read."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        clock = environ.get("gunicorn.socket")
        if not isinstance(clock, ReadClock):
            return app(environ, start_response)
        held: list[list[tuple[str, str]]] = []

        def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if clock.expired:
                held.append(headers)
                return lambda _data: None
            return start_response(status, headers, exc_info)

        result = app(environ, hold)
        if not held:
            return result
        close = getattr(result, "close", None)
        if close is not None:
            close()
        body = timeout_body(clock.timeout)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        headers += [(k, v) for k, v in held[0] if k.lower() == "x-request-id"]
        start_response("408 Request Timeout", headers)
        return [body]

    return wrapped


class DeadlineWorker(ThreadWorker):
    """gunicorn's gthread worker with the read and write deadlines and the cap on requests on
    every plain-TCP connection (behind a platform's router, which ends TLS)."""

    client_timeout = 10.0
    wsgi: WSGIApp

    def init_process(self) -> None:
        self.client_timeout = load_settings().client_timeout  # the master checked them already
        self.in_pool = 0  # connections handed to the thread pool and not finished
        super().init_process()

    # A worker whose threads are all taken stops accepting, so a new connection waits for the
    # worker (of WEB_CONCURRENCY) that has a thread free, not in this one's queue behind slow
    # clients. These three run in gunicorn's main loop only.
    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self.in_pool < self.cfg.threads)

    def enqueue_req(self, conn: Any) -> None:
        self.in_pool += 1
        super().enqueue_req(conn)
        if self.in_pool >= self.cfg.threads:
            self.set_accept_enabled(False)

    def finish_request(self, conn: Any, fs: Any) -> None:
        self.in_pool -= 1
        super().finish_request(conn, fs)
        if self.alive and self.nr_conns < self.worker_connections:
            self.set_accept_enabled(True)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = answer_late_requests(self.wsgi)

    def handle(self, conn: Any) -> Any:
        if not self.cfg.is_ssl and not isinstance(conn.sock, ReadClock):
            conn.sock = ReadClock(conn.sock, self.client_timeout)
        clock = conn.sock if isinstance(conn.sock, ReadClock) else None
        if clock is None:
            return super().handle(conn)
        clock.start()
        try:
            result = super().handle(conn)
        finally:
            clock.stop()
        if clock.send_expired:
            clock.reset()
            return False
        if result is not False and not clock.expired:
            return result  # kept alive, or handed back to gunicorn's poller to wait for data
        if clock.expired and clock.request is None:
            log.info("request not received within %gs -> 408", clock.timeout)
            self._send_timeout(clock)
        # Closing lingers on the socket for what the client still sends: here, in this thread,
        # not in gunicorn's main loop, where a client trickling on would stall every connection.
        clock.shut()
        return False

    def handle_request(self, req: Any, conn: Any) -> Any:
        clock = conn.sock if isinstance(conn.sock, ReadClock) else None
        if clock is None:
            return super().handle_request(req, conn)
        clock.request = req
        clock.served += 1
        if clock.worn_out():
            req.force_close()  # this answer says Connection: close
        try:
            return super().handle_request(req, conn)
        except SendTimeoutError:
            log.info("response not taken within %gs -> connection reset", clock.timeout)
            return False
        finally:
            clock.answered = True

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        # Headers cut off by the read deadline may not parse; the answer is then our 408 alone.
        if isinstance(client, ReadClock) and client.expired and client.request is None:
            return
        # gunicorn judges the request (status, logging) and writes an HTML page; the client gets
        # that status in our JSON error shape, with the headers every response of ours carries.
        written = _Written(client)
        super().handle_error(req, written, addr, exc)
        status = written.status()
        try:
            client.settimeout(1.0)
            client.sendall(error_response(status))
        except OSError:
            pass

    @staticmethod
    def _send_timeout(clock: ReadClock) -> None:
        body = timeout_body(clock.timeout)
        head = (
            "HTTP/1.1 408 Request Timeout\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        try:
            clock.settimeout(1.0)
            clock.sendall(head.encode() + body)
        except OSError:
            pass
