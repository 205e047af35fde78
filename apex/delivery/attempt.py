"""One HTTP attempt: POST the signed body and describe what happened as an Outcome. Never raises
for anything the receiver or the network does; never lasts much beyond its deadline."""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import requests
from urllib3.util import Timeout

from apex.delivery.backoff import parse_retry_after
from apex.delivery.ssrf import post
from apex.delivery.watchdog import WATCHDOG, Watch, Watchdog
from apex.errors import DestinationRefusedError, DestinationUnresolvedError

MAX_RESPONSE_BYTES = 1024
USER_AGENT = "Apex-Webhooks/1.0"


@dataclass(frozen=True)
class Outcome:
    """`status_code` is None when no response arrived; `error` then names what went wrong."""

    status_code: int | None
    error: str | None
    response_body: str | None
    duration_ms: int
    retry_after: float | None


def _read_truncated(response: requests.Response) -> str:
    chunk = b""
    for part in response.iter_content(chunk_size=MAX_RESPONSE_BYTES):
        chunk = part[:MAX_RESPONSE_BYTES]
        break
    # PostgreSQL text cannot hold NUL; a receiver's bytes must never break recording.
    return chunk.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def attempt(
    session: requests.Session,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    connect_timeout: float,
    total_timeout: float,
    now: datetime,
    watchdog: Watchdog = WATCHDOG,
) -> Outcome:
    """POST once through `session` (built by ssrf.new_session); redirects are not followed.

    `total_timeout` is a wall-clock deadline for the whole attempt: DNS, connect, TLS, sending,
    the response headers and the first KiB of the body. When it passes, the watchdog shuts the
    socket down and the attempt ends as `timeout: <phase> …`; it never lasts much longer,
    whatever the receiver does. The lookup and the connect are each also bounded by
    `connect_timeout`. A stopping worker may cut the attempt sooner (`interrupted: …`)."""
    started = time.monotonic()
    all_headers = {"content-type": "application/json", "user-agent": USER_AGENT, **headers}
    # The watchdog ends the attempt at its deadline; the per-read timeout is only a backstop.
    timeout = Timeout(connect=min(connect_timeout, total_timeout), read=total_timeout + 1)
    with watchdog.watch(total_timeout) as watch:
        try:
            response = post(session, url, body, all_headers, timeout)
        except (DestinationRefusedError, DestinationUnresolvedError) as exc:
            return Outcome(None, f"{exc.code}: {exc.detail}"[:500], None, _ms(started), None)
        except requests.RequestException as exc:
            return Outcome(None, _failure(exc, watch, total_timeout), None, _ms(started), None)
        watch.enter("reading the response body")
        with response:
            try:
                text = _read_truncated(response)
            except requests.RequestException:
                text = ""  # the status arrived: the body is only kept for the log
    if watch.expired:
        return Outcome(None, _cut(watch, total_timeout), None, _ms(started), None)
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    return Outcome(response.status_code, None, text, _ms(started), retry_after)


def _failure(exc: requests.RequestException, watch: Watch, total_timeout: float) -> str:
    if watch.expired:
        return _cut(watch, total_timeout)
    if isinstance(exc, requests.Timeout) or isinstance(_innermost(exc), TimeoutError):
        return f"timeout: {watch.phase}"
    if isinstance(exc, requests.exceptions.ProxyError):
        inner = _innermost(exc)
        message = inner.args[0] if inner.args and isinstance(inner.args[0], str) else inner
        return f"egress_proxy_error: {message}"[:500]
    if isinstance(exc, requests.exceptions.SSLError):
        inner = _innermost(exc)
        detail = inner.verify_message if isinstance(inner, ssl.SSLCertVerificationError) else ""
        suffix = f" (certificate verify failed: {detail})" if detail else ""
        return f"connection_error: SSLError{suffix}"
    if isinstance(exc, requests.ConnectionError):
        return f"connection_error: {type(exc).__name__}"
    return f"request_error: {type(exc).__name__}"


def _cut(watch: Watch, total_timeout: float) -> str:
    if watch.cause == "shutdown":
        return f"interrupted: the worker stopped while {watch.phase}"
    return f"timeout: {watch.phase} after {total_timeout:g} s"


def _innermost(exc: BaseException) -> BaseException:
    """The error under requests' and urllib3's wrappers (MaxRetryError.reason, args[0])."""
    for _ in range(8):
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException) and exc.args:
            inner = exc.args[0]
        if not isinstance(inner, BaseException):
            break
        exc = inner
    return exc


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
