"""The HTTP client deliveries go through: aiohttp on one asyncio event loop per worker process.

- Destinations: a name is resolved by VettedResolver, which refuses it unless every address it
  resolves to is public (ssrf.vet; `allow_private` lifts that for development and tests), and
  the connection goes to a vetted address with TLS still verified for the name. IP literals,
  which aiohttp does not resolve, are vetted by the caller (see apex.delivery.attempt).
- The lookup has its own bound (`dns_timeout`, through `lookup` on an executor thread: the
  system resolver cannot be interrupted); the connect has `connect_timeout`; the whole attempt
  has one wall-clock deadline set by the caller.
- Every phase an attempt goes through is traced (Phase), so a timeout says where it struck.
- Certificates are verified with `ca_bundle` (a PEM file or an OpenSSL hashed folder) or
  certifi's roots; environment variables (proxies, netrc) are ignored, no cookies are kept.
- With `egress_proxy` (http://[user:password@]host:port) every delivery goes through that
  proxy: an https:// one as a CONNECT tunnel to the URL's host and port, TLS verified end to
  end; the proxy resolves the names, and must refuse internal ones. The proxy's own name is
  resolved here and not vetted: it is ours, typically on a private network."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import certifi
from aiohttp.abc import AbstractResolver, AbstractStreamWriter, ResolveResult
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from apex.delivery.ssrf import Lookup, system_lookup, vet
from apex.errors import DestinationRefusedError, DestinationUnresolvedError

T = TypeVar("T")


class RefusedDestination(OSError):
    """A destination the resolver refused; aiohttp wraps it (ClientConnectorDNSError), the
    attempt unwraps `refusal`."""

    def __init__(self, refusal: DestinationRefusedError | DestinationUnresolvedError) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal


class VettedResolver(AbstractResolver):
    """Resolves with `lookup` and vets the answers (ssrf.vet), except for `proxy_host`."""

    def __init__(
        self,
        allow_private: bool,
        lookup: Lookup,
        dns_timeout: float,
        proxy_host: str | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._lookup = lookup
        self._dns_timeout = dns_timeout
        self._proxy_host = proxy_host

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        answers = await asyncio.wait_for(
            loop.run_in_executor(None, _lookup_or_refusal, self._lookup, host, port),
            self._dns_timeout,
        )
        try:
            if isinstance(answers, Exception):
                raise answers
            addresses = vet(host, answers, self._allow_private or host == self._proxy_host)
        except (DestinationRefusedError, DestinationUnresolvedError) as refusal:
            raise RefusedDestination(refusal) from None
        return [
            {
                "hostname": host,
                "host": str(address),
                "port": port,
                "family": socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None


def _lookup_or_refusal(lookup: Lookup, host: str, port: int) -> list[str] | Exception:
    try:
        return list(lookup(host, port))
    except (OSError, UnicodeError) as error:
        return DestinationUnresolvedError(f"destination {host} does not resolve ({error})")


class Phase:
    """What an attempt is doing now, as its error names it (kept as it was once cut), and the
    connection it uses (to abort when it is cut)."""

    def __init__(self, https: bool) -> None:
        self.name = "starting"
        self._connecting = "connecting or in the TLS handshake" if https else "connecting"
        self.frozen = False
        self.transport: asyncio.BaseTransport | None = None

    def abort(self) -> None:
        """Drop the connection at once (even if aiohttp closed it already: a close waits for
        the write buffer to drain, which a receiver that never reads never lets happen, and
        the socket would stay open)."""
        if isinstance(self.transport, asyncio.WriteTransport):
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                try:  # reset, dropping what the kernel still queues for a receiver not reading
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass  # closed meanwhile
            self.transport.abort()

    def enter(self, name: str) -> None:
        if not self.frozen:
            self.name = name

    def connecting(self) -> None:
        self.enter(self._connecting)


class Body(aiohttp.BytesPayload):
    """The request body; once it is written (handed to the transport: at most 64 KiB of it
    still buffered), the attempt waits for the response headers."""

    def __init__(self, value: bytes, phase: Phase) -> None:
        super().__init__(value, content_type="application/json")
        self._phase = phase

    async def write(self, writer: AbstractStreamWriter) -> None:
        await super().write(writer)
        self._phase.enter("waiting for the response headers")

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        await super().write_with_length(writer, content_length)
        self._phase.enter("waiting for the response headers")


# The Phase of the attempt running in this task: the connector tells it its connection.
ATTEMPT: ContextVar[Phase | None] = ContextVar("apex_attempt", default=None)


class _Connector(aiohttp.TCPConnector):
    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        phase = ATTEMPT.get()
        if phase is not None:
            phase.transport = connection.transport
        return connection


def _tracing() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()

    def on(name: str) -> Callable[..., Coroutine[Any, Any, None]]:
        async def enter(_s: Any, context: SimpleNamespace, _p: Any) -> None:
            phase = context.trace_request_ctx
            if isinstance(phase, Phase):
                phase.connecting() if name == "connecting" else phase.enter(name)

        return enter

    trace.on_dns_resolvehost_start.append(on("resolving"))
    trace.on_connection_create_start.append(on("connecting"))
    trace.on_connection_create_end.append(on("sending the request"))
    trace.on_connection_reuseconn.append(on("sending the request"))
    trace.on_request_headers_sent.append(on("sending the request"))
    return trace


@dataclass(frozen=True)
class Client:
    """An aiohttp session with the rules above; create and use it on its loop."""

    session: aiohttp.ClientSession
    proxy: str | None
    allow_private: bool

    @classmethod
    def create(
        cls,
        allow_private: bool = False,
        *,
        lookup: Lookup = system_lookup,
        ca_bundle: str | None = None,
        egress_proxy: str | None = None,
        dns_timeout: float = 5.0,
    ) -> Client:
        # With a proxy, aiohttp resolves nothing but the proxy's name (as in its URL).
        proxy_host = urlsplit(egress_proxy).hostname if egress_proxy else None
        connector = _Connector(
            limit=0,  # the dispatcher limits requests; the pool only keeps connections
            ssl=_tls_context(ca_bundle),
            resolver=VettedResolver(allow_private, lookup, dns_timeout, proxy_host),
            ttl_dns_cache=10,
            enable_cleanup_closed=True,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            trace_configs=[_tracing()],
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
        )
        return cls(session, egress_proxy, allow_private)

    async def close(self) -> None:
        await self.session.close()


def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    if ca_bundle and os.path.isdir(ca_bundle):
        return ssl.create_default_context(capath=ca_bundle)
    return ssl.create_default_context(cafile=ca_bundle or certifi.where())


class EventLoop:
    """An asyncio event loop on its own thread, for the threads of the worker to hand
    coroutines to."""

    def __init__(self, name: str = "delivery-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coroutine` on the loop and wait for its result (never from the loop itself)."""
        return self.submit(coroutine).result(timeout)

    def call(self, function: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(function, *args)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()
