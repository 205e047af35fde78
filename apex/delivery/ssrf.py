"""SSRF guard for outgoing deliveries: which addresses are public; a transport pinned to them,
bounded by each attempt's deadline, optionally tunnelled through an egress proxy."""

from __future__ import annotations

import base64
import ipaddress
import queue
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import ConnectTimeout, InvalidURL
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, ProxyError
from urllib3.response import BaseHTTPResponse
from urllib3.util import Timeout
from urllib3.util.connection import allowed_gai_family, create_connection

from apex.delivery import watchdog
from apex.errors import DestinationRefusedError, DestinationUnresolvedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Lookup = Callable[[str, int], Iterable[str]]
"""Resolves (host, port) to address strings; raises OSError (e.g. socket.gaierror) on failure."""

_DEFAULT_PORTS = {"http": 80, "https": 443}

_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean ...
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)

# First match wins, so narrower ranges come before the ranges that contain them.
_REFUSED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "unspecified ('this network')"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255 broadcast
    )
)

_REFUSED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), reason)
    for net, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")


def refusal_reason(ip: IPAddress) -> str | None:
    """Why `ip` is no destination for a webhook ("loopback", "private", ...); None if public.

    IPv6 forms that embed an IPv4 address (NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by
    the embedded address; IPv4-mapped, IPv4-compatible and Teredo addresses are refused
    outright; IPv6 outside global unicast 2000::/3 is refused as reserved.
    """
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(int(ip))  # "fe80::1%eth0": judge the address, not the zone
    if ip in _METADATA:
        return "cloud metadata"
    if isinstance(ip, ipaddress.IPv4Address):
        return next((reason for net, reason in _REFUSED_V4 if ip in net), None)
    for net6, reason in _REFUSED_V6:
        if ip in net6:
            return reason
    if ip in _NAT64:
        embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        inner = refusal_reason(embedded)
        return None if inner is None else f"NAT64 of {embedded}, {inner}"
    if ip in _SIX_TO_FOUR:
        embedded = cast(ipaddress.IPv4Address, ip.sixtofour)
        inner = refusal_reason(embedded)
        return None if inner is None else f"6to4 of {embedded}, {inner}"
    if ip not in _GLOBAL_UNICAST_V6:
        return "reserved"
    return None


def is_public_address(ip: IPAddress) -> bool:
    """True when a webhook may be delivered to `ip`: see refusal_reason for what is refused."""
    return refusal_reason(ip) is None


def system_lookup(host: str, port: int) -> list[str]:
    """Resolve with the system resolver (getaddrinfo), in its preference order.

    Uses the same address families urllib3 would. Raises OSError (socket.gaierror) or
    UnicodeError (an invalid IDNA label) when the name does not resolve.
    """
    infos = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def resolve_public(
    host: str, port: int, allow_private: bool, lookup: Lookup = system_lookup
) -> list[IPAddress]:
    """Resolve `host` and return its addresses, without duplicates, in resolver order.

    An IP literal ("127.0.0.1", "::1", "[::1]") is taken as is, without calling `lookup`.

    Raises DestinationRefusedError when the host does not resolve, resolves to nothing, or
    when ANY of its addresses is not public (see refusal_reason); `allow_private` (for
    development and tests) lifts the last rule only. A name with one bad address among good
    ones is refused: a later lookup, or another client, could pick the bad one.
    """
    host = host.strip("[]")
    try:
        answers: list[str] = [str(ipaddress.ip_address(host))]  # a literal needs no lookup
    except ValueError:
        try:
            answers = list(lookup(host, port))
        except (OSError, UnicodeError) as error:
            raise DestinationUnresolvedError(
                f"destination {host} does not resolve ({error})"
            ) from None
    return vet(host, answers, allow_private)


def vet(host: str, answers: list[str], allow_private: bool) -> list[IPAddress]:
    """The addresses `host` resolved to (`answers`, in resolver order), without duplicates,
    if they may be connected to; raises as resolve_public does otherwise."""
    host = host.strip("[]")
    addresses = list(dict.fromkeys(ipaddress.ip_address(a) for a in answers))
    if not addresses:
        raise DestinationUnresolvedError(f"destination {host} resolves to no address")
    if not allow_private:
        for address in addresses:
            reason = refusal_reason(address)
            if reason is None:
                continue
            if str(address) == host:
                raise DestinationRefusedError(f"destination {address} is {reason}, refused")
            # Name the rule, never the address: a refusal must not tell what an internal name
            # resolves to ("6to4 of 10.0.0.1, private" is said as "private").
            rule = reason.rsplit(", ", 1)[-1]
            article = "an" if rule[0] in "aeiouAEIOU" else "a"
            raise DestinationRefusedError(
                f"destination {host} resolves to {article} {rule} address, refused unless "
                "APEX_ALLOW_PRIVATE_DESTINATIONS=1"
            )
    return addresses


class _LookupTimeoutError(Exception):
    """A lookup that did not answer in time (internal: PinnedAdapter turns it into a timeout)."""


class _Resolvers:
    """Daemon threads that run lookups, so a delivery can stop waiting for one: a blocked
    getaddrinfo cannot be interrupted, and it must hold up neither a delivery thread nor the
    process's exit. While every thread is stuck, further lookups wait in line and time out."""

    def __init__(self, threads: int) -> None:
        self._size = threads
        self._started = 0
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Future[list[str]], Lookup, str, int]] = (
            queue.SimpleQueue()
        )

    def resolve(self, lookup: Lookup, host: str, port: int, timeout: float) -> list[str]:
        """`lookup(host, port)`, raising _LookupTimeoutError after `timeout` seconds."""
        future: Future[list[str]] = Future()
        with self._lock:
            if self._started < self._size:
                self._started += 1
                threading.Thread(target=self._run, name="resolve", daemon=True).start()
        self._jobs.put((future, lookup, host, port))
        try:
            return future.result(timeout)
        except FutureTimeoutError:
            future.cancel()
            raise _LookupTimeoutError(f"resolving {host} took over {timeout:g} s") from None

    def _run(self) -> None:
        while True:
            future, lookup, host, port = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(list(lookup(host, port)))
            except BaseException as error:  # handed to the waiting caller, which re-raises it
                future.set_exception(error)


_RESOLVERS = _Resolvers(threads=16)


@dataclass(frozen=True)
class EgressProxy:
    """An HTTP proxy every delivery is tunnelled through with CONNECT (APEX_EGRESS_PROXY)."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)  # a Proxy-Authorization value

    @classmethod
    def from_url(cls, url: str) -> EgressProxy:
        """Parse http://[user:password@]host:port; raises ValueError for anything else."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme != "http" or not parts.hostname or port is None:
            raise ValueError(f"expected http://[user:password@]host:port, got {parts.scheme}://…")
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        return cls(parts.hostname, port, authorization)


def _watched_socket(
    conn: HTTPConnection, connect: Callable[[], socket.socket], egress: EgressProxy | None
) -> socket.socket:
    """Open `conn`'s socket within what is left of the attempt's deadline and hand it to the
    attempt's watch (see apex.delivery.watchdog); with `egress`, open it as a CONNECT tunnel
    through the proxy to `conn`'s host and port instead (the proxy resolves the name)."""
    watch = watchdog.current()
    if watch is not None:
        left = watch.remaining()
        if left <= 0:
            raise ConnectTimeoutError(conn, f"Connection to {conn.host} not started: deadline")
        watch.enter("connecting")
        conn.timeout = left if conn.timeout is None else min(float(conn.timeout), left)
    if egress is None:
        sock = connect()
        if watch is not None:
            watch.attach(sock)
            _backstop(sock, watch)
        return sock
    try:
        sock = create_connection(
            (egress.host, egress.port), conn.timeout, socket_options=conn.socket_options
        )
    except TimeoutError as error:
        raise ConnectTimeoutError(conn, f"Connection to egress proxy timed out: {error}") from None
    except OSError as error:
        raise ProxyError(f"egress proxy unreachable: {error}", error) from None
    if watch is not None:
        watch.attach(sock)
        watch.enter("opening the egress proxy tunnel")
    try:
        _tunnel(sock, conn.host, conn.port, egress)
    except BaseException:
        sock.close()
        raise
    if watch is not None:
        _backstop(sock, watch)
    return sock


def _backstop(sock: socket.socket, watch: watchdog.Watch) -> None:
    """Past the connect, a socket timeout (which for sendall bounds the whole call) must never
    beat the watchdog: the watch ends the attempt, the timeout is a backstop a second later."""
    sock.settimeout(watch.remaining() + 1)


def _tunnel(sock: socket.socket, host: str, port: int, egress: EgressProxy) -> None:
    """Ask the proxy for a tunnel to host:port; raises ProxyError unless it answers 2xx."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if egress.authorization:
        lines.append(f"Proxy-Authorization: {egress.authorization}")
    reply = b""
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        while b"\r\n\r\n" not in reply:
            if len(reply) > _MAX_PROXY_REPLY:
                raise ProxyError("egress proxy: reply headers too long", OSError())
            chunk = sock.recv(4096)
            if not chunk:
                raise ProxyError(f"egress proxy closed the tunnel to {target}", OSError())
            reply += chunk
    except TimeoutError as error:
        raise ProxyError(f"egress proxy did not answer CONNECT {target}", error) from None
    except OSError as error:
        raise ProxyError(f"egress proxy failed CONNECT {target}: {error}", error) from None
    head, _, rest = reply.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    words = status.split(" ", 2)
    if len(words) < 2 or not words[1].isdecimal() or not 200 <= int(words[1]) < 300 or rest:
        raise ProxyError(f"egress proxy refused CONNECT {target}: {status[:200]}", OSError())


_MAX_PROXY_REPLY = 16 * 1024


class _Connection(HTTPConnection):
    """urllib3's plain connection, bounded by the attempt's deadline (see _watched_socket)."""

    def __init__(self, *args: Any, egress: EgressProxy | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.egress = egress

    def _new_conn(self) -> socket.socket:
        sock = _watched_socket(self, super()._new_conn, self.egress)
        _entering("sending the request")  # http.client connects on its first send
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _reused(self)
        super().request(*args, **kwargs)

    def getresponse(self) -> BaseHTTPResponse:  # type: ignore[override]
        _entering("waiting for the response headers")
        return super().getresponse()


class _TLSConnection(HTTPSConnection):
    """urllib3's TLS connection, bounded by the attempt's deadline (see _watched_socket)."""

    def __init__(self, *args: Any, egress: EgressProxy | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.egress = egress

    def _new_conn(self) -> socket.socket:
        sock = _watched_socket(self, super()._new_conn, self.egress)
        _entering("TLS handshake")
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _reused(self)
        super().request(*args, **kwargs)

    def getresponse(self) -> BaseHTTPResponse:  # type: ignore[override]
        _entering("waiting for the response headers")
        return super().getresponse()


def _reused(conn: HTTPConnection) -> None:
    """A kept-alive connection opened by an earlier attempt: watch it for this one."""
    watch = watchdog.current()
    if watch is not None:
        if conn.sock is not None:
            watch.attach(conn.sock)
            conn.timeout = watch.remaining() + 1  # the socket's while sending (see _backstop)
        watch.enter("sending the request")


def _entering(phase: str) -> None:
    watch = watchdog.current()
    if watch is not None:
        watch.enter(phase)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class _PoolManager(PoolManager):
    """A PoolManager whose connections are watched, and tunnelled through `egress` if set."""

    def __init__(self, *args: Any, egress: EgressProxy | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.egress = egress
        self.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}

    def _new_pool(
        self,
        scheme: str,
        host: str,
        port: int,
        request_context: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.conn_kw["egress"] = self.egress
        return pool


class PinnedAdapter(HTTPAdapter):
    """A requests transport that connects only to addresses it has just vetted.

    For every request it resolves the URL's host once with `lookup` (bounded by `dns_timeout`
    and by what is left of the attempt's deadline), refuses it through resolve_public, and
    opens (or reuses) a connection to the first vetted address itself, so no second DNS lookup
    can rebind the name between the check and the connection. The URL keeps its hostname: the
    Host header, TLS SNI and certificate verification all use the hostname, never the IP.

    Pools are keyed by (scheme, vetted IP, port, TLS settings) and, for https, by the
    hostname as `server_hostname`/`assert_hostname`: a connection verified for host A on IP X
    is never handed to host B on the same IP, and a host that now resolves elsewhere gets a
    fresh pool instead of a stale pinned one. Plain-http pools are shared per IP, which is
    harmless because each request carries its own Host header to the same vetted address.

    With `egress` (an HTTP CONNECT proxy, e.g. smokescreen) names are not resolved here: every
    connection is a tunnel to hostname:port opened by the proxy, which resolves the name and
    applies its own address rules; TLS is still verified end to end for the hostname. IP
    literals in URLs are still refused here by refusal_reason (unless `allow_private`).

    Proxies from the environment are ignored and urllib3 never retries (a retried POST could
    deliver twice; the retry schedule is ours). Connections run under the attempt's watch when
    there is one (apex.delivery.watchdog): their sockets are shut down at its deadline. Safe to
    share between threads: it keeps no per-request state.

    DestinationRefusedError propagates out of `Session.send` for refused destinations, a
    lookup over its time as requests.ConnectTimeout.
    """

    def __init__(
        self,
        allow_private: bool = False,
        lookup: Lookup = system_lookup,
        pool_connections: int = 100,
        pool_maxsize: int = 10,
        *,
        dns_timeout: float = 5.0,
        egress: EgressProxy | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.lookup = lookup
        self.dns_timeout = dns_timeout
        self.egress = egress
        super().__init__(
            pool_connections=pool_connections, pool_maxsize=pool_maxsize, max_retries=0
        )

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = _PoolManager(
            num_pools=connections, maxsize=maxsize, block=block, egress=self.egress, **pool_kwargs
        )

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=None
        )

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str,
        proxies: dict[str, str] | None = None,
        cert: str | tuple[str, str] | None = None,
    ) -> HTTPConnectionPool:
        try:
            host_params, pool_kwargs = self.build_connection_pool_key_attributes(
                request, verify, cert
            )
        except ValueError as error:
            raise InvalidURL(error, request=request) from None
        scheme: str = host_params["scheme"]
        hostname: str | None = host_params["host"]
        if not hostname or scheme not in _DEFAULT_PORTS:
            raise InvalidURL(f"not an absolute http(s) URL: {request.url}", request=request)
        port: int = host_params["port"] or _DEFAULT_PORTS[scheme]
        if self.egress is None:
            target = str(self._resolve(request, hostname, port))
        else:
            if _is_literal(hostname):  # the proxy vets names; an IP literal is vetted here
                resolve_public(hostname, port, self.allow_private)
            target = hostname
        if scheme == "https":
            tls_name = hostname.rstrip(".")
            pool_kwargs["server_hostname"] = tls_name
            pool_kwargs["assert_hostname"] = tls_name
        return self.poolmanager.connection_from_host(
            host=target, port=port, scheme=scheme, pool_kwargs=pool_kwargs
        )

    def _resolve(self, request: requests.PreparedRequest, hostname: str, port: int) -> IPAddress:
        watch = watchdog.current()
        limit = self.dns_timeout
        if watch is not None:
            watch.enter("resolving")
            limit = min(limit, watch.remaining())

        def lookup(host: str, port: int) -> list[str]:
            return _RESOLVERS.resolve(self.lookup, host, port, limit)

        try:
            return resolve_public(hostname, port, self.allow_private, lookup)[0]
        except _LookupTimeoutError as error:
            raise ConnectTimeout(str(error), request=request) from None

    def add_headers(self, request: requests.PreparedRequest, **kwargs: Any) -> None:
        # The pool's host is the IP; name the real host, as http.client would for the URL.
        parts = urlsplit(request.url or "")
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
            host = f"{host}:{parts.port}"
        request.headers["Host"] = host


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def new_session(
    allow_private: bool = False,
    *,
    lookup: Lookup = system_lookup,
    pool_connections: int = 100,
    pool_maxsize: int = 10,
    ca_bundle: str | None = None,
    egress_proxy: str | None = None,
    dns_timeout: float = 5.0,
) -> requests.Session:
    """A requests.Session whose http and https traffic goes through a PinnedAdapter.

    Meant to be created once per worker process and shared by its threads (keep-alive pools).
    It ignores the environment (no proxies, .netrc credentials or CA bundle from env vars:
    settings pass `ca_bundle`, a PEM file or an OpenSSL hashed folder replacing the default
    roots, and `egress_proxy`, http://[user:password@]host:port) and keeps no cookies, so one
    receiver can never influence a request to another. `pool_connections` is how many
    (host, IP) pools are kept; `pool_maxsize` the idle connections kept per pool.
    """
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    if ca_bundle:
        session.verify = ca_bundle
    egress = EgressProxy.from_url(egress_proxy) if egress_proxy else None
    adapter = PinnedAdapter(
        allow_private,
        lookup,
        pool_connections=pool_connections,
        pool_maxsize=pool_maxsize,
        dns_timeout=dns_timeout,
        egress=egress,
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def post(
    session: requests.Session,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float | tuple[float, float] | Timeout,
) -> requests.Response:
    """POST `body` to `url` through the session's PinnedAdapter; redirects are never followed.

    The response is streamed: its body is not downloaded until read, so a receiver cannot make
    us swallow a huge or endless body. Read what you keep (e.g. the first KiB with
    `iter_content`) inside `with response:`; a body read to its end returns the connection to
    the pool for reuse, anything else closes it. A 3xx is returned like any other status.

    `timeout` is anything requests accepts, including urllib3's Timeout(connect=5, total=15);
    it bounds the connect and each read, not the request: run post() inside a Watchdog.watch
    (as attempt() does) for a wall-clock deadline over all of it.
    Session defaults apply (headers, `verify`, `cert`); cookies and hooks do not.

    Raises DestinationRefusedError for a refused or unresolvable destination,
    requests.RequestException for transport failures (connect error, TLS, timeout), and
    TypeError when the session was not built by new_session (no PinnedAdapter for the URL).
    """
    adapter = session.get_adapter(url)
    if not isinstance(adapter, PinnedAdapter):
        raise TypeError(f"session has no PinnedAdapter for {urlsplit(url).scheme!r} URLs")
    request = session.prepare_request(
        requests.Request("POST", url, data=body, headers=dict(headers))
    )
    # Straight to the adapter rather than Session.send, which reads a 3xx body in full to
    # prepare the redirect we never follow. requests types `timeout` as seconds or a pair, but
    # its adapter takes a urllib3 Timeout as is.
    return adapter.send(
        request,
        stream=True,
        timeout=cast(Any, timeout),
        verify=session.verify,
        cert=session.cert,
    )
