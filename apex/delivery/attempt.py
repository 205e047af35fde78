"""One HTTP attempt: POST the signed body and describe what happened as an Outcome. Never raises
for anything the receiver or the network does; never lasts beyond its deadline."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

import aiohttp

from apex.delivery.backoff import parse_retry_after
from apex.delivery.ssrf import vet
from apex.delivery.transport import ATTEMPT, Body, Client, Phase, RefusedDestination
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


@dataclass(eq=False)
class _Running:
    phase: Phase
    cause: str
    timeout: asyncio.Timeout | None = None


@dataclass
class Deadlines:
    """The deadlines of the attempts running on one event loop. A stopping worker calls cut()
    (on the loop) to bring them, and those of attempts started later, forward."""

    cap: float | None = None  # loop time no attempt may run past (set by cut)
    _running: set[_Running] = field(default_factory=set)

    def cut(self, within: float) -> None:
        cap = asyncio.get_running_loop().time() + within
        if self.cap is None or cap < self.cap:
            self.cap = cap
        for running in self._running:
            when = running.timeout.when() if running.timeout else None
            if running.timeout is not None and (when is None or when > cap):
                running.timeout.reschedule(cap)
                running.cause = "shutdown"


async def attempt(
    client: Client,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    connect_timeout: float,
    total_timeout: float,
    now: datetime,
    deadlines: Deadlines | None = None,
) -> Outcome:
    """POST once through `client`; redirects are not followed.

    `total_timeout` is a wall-clock deadline for the whole attempt: DNS, connect, TLS, sending,
    the response headers and the first KiB of the body. When it passes the connection is
    closed and the attempt ends as `timeout: <phase> after N s`, whatever the receiver does.
    The lookup and the connect are each also bounded by `connect_timeout`. A stopping worker
    may cut it sooner (`interrupted: …`, see Deadlines)."""
    started = time.monotonic()
    parts = urlsplit(url)
    phase = Phase(parts.scheme == "https")
    refused = _literal_refusal(parts.hostname or "", client)
    if refused is not None:
        return Outcome(None, f"{refused.code}: {refused.detail}"[:500], None, _ms(started), None)
    deadlines = deadlines if deadlines is not None else Deadlines()
    loop = asyncio.get_running_loop()
    deadline, cause = loop.time() + total_timeout, "timeout"
    if deadlines.cap is not None and deadlines.cap < deadline:
        deadline, cause = deadlines.cap, "shutdown"
    running = _Running(phase, cause)
    deadlines._running.add(running)
    current = ATTEMPT.set(phase)
    all_headers = {"content-type": "application/json", "user-agent": USER_AGENT, **headers}
    try:
        async with asyncio.timeout_at(deadline) as running.timeout:
            async with client.session.post(
                url,
                data=Body(body, phase),
                headers=all_headers,
                allow_redirects=False,
                proxy=client.proxy,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
                trace_request_ctx=phase,
            ) as response:
                phase.enter("reading the response body")
                text = await _first_kib(response)
                status, retry_header = response.status, response.headers.get("Retry-After")
    except TimeoutError:
        phase.frozen = True
        phase.abort()
        if running.timeout is not None and running.timeout.expired():
            return Outcome(None, _cut(running, total_timeout), None, _ms(started), None)
        return Outcome(None, f"timeout: {phase.name}", None, _ms(started), None)
    except aiohttp.ClientError as exc:
        return Outcome(None, _failure(exc, client.proxy)[:500], None, _ms(started), None)
    finally:
        ATTEMPT.reset(current)
        deadlines._running.discard(running)
    retry_after = parse_retry_after(retry_header, now)
    return Outcome(status, None, text, _ms(started), retry_after)


def _literal_refusal(
    host: str, client: Client
) -> DestinationRefusedError | DestinationUnresolvedError | None:
    """An IP literal is connected to as written (no lookup): vet it here. Through an egress
    proxy, which connects for us, it is the proxy's to refuse as well."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    try:
        vet(host, [host], client.allow_private)
    except (DestinationRefusedError, DestinationUnresolvedError) as refusal:
        return refusal
    return None


async def _first_kib(response: aiohttp.ClientResponse) -> str:
    """The first KiB of the body (all of it if shorter), as text for the log."""
    chunk = b""
    while len(chunk) < MAX_RESPONSE_BYTES:
        part = await response.content.read(MAX_RESPONSE_BYTES - len(chunk))
        if not part:
            break
        chunk += part
    # PostgreSQL text cannot hold NUL; a receiver's bytes must never break recording.
    return chunk.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _failure(exc: aiohttp.ClientError, proxy: str | None) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError) and isinstance(
        exc.os_error, RefusedDestination
    ):
        refusal = exc.os_error.refusal
        if proxy is not None:  # through a proxy, only the proxy's name is resolved here
            return f"egress_proxy_error: egress proxy unreachable: {refusal.detail}"
        return f"{refusal.code}: {refusal.detail}"
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        target = f"{exc.request_info.url.host}:{exc.request_info.url.port}"
        return (
            f"egress_proxy_error: egress proxy refused CONNECT {target}: {exc.status} {exc.message}"
        )
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return f"egress_proxy_error: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        inner = exc.certificate_error
        detail = inner.verify_message if isinstance(inner, ssl.SSLCertVerificationError) else ""
        suffix = f" (certificate verify failed: {detail})" if detail else ""
        return f"connection_error: SSLError{suffix}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "connection_error: SSLError"
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return f"connection_error: {type(exc).__name__}"
    return f"request_error: {type(exc).__name__}"


def _cut(running: _Running, total_timeout: float) -> str:
    if running.cause == "shutdown":
        return f"interrupted: the worker stopped while {running.phase.name}"
    return f"timeout: {running.phase.name} after {total_timeout:g} s"


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
