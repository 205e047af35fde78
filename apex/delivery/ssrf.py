"""SSRF guard for outgoing deliveries: which addresses are public; a transport pinned to them."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from http.cookiejar import DefaultCookiePolicy
from typing import Any, cast
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import InvalidURL
from urllib3 import HTTPConnectionPool
from urllib3.util import Timeout
from urllib3.util.connection import allowed_gai_family

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


class PinnedAdapter(HTTPAdapter):
    """A requests transport that connects only to addresses it has just vetted.

    For every request it resolves the URL's host once with `lookup`, refuses it through
    resolve_public, and opens (or reuses) a connection to the first vetted address itself, so
    no second DNS lookup can rebind the name between the check and the connection. The URL
    keeps its hostname: the Host header, TLS SNI and certificate verification all use the
    hostname, never the IP.

    Pools are keyed by (scheme, vetted IP, port, TLS settings) and, for https, by the
    hostname as `server_hostname`/`assert_hostname`: a connection verified for host A on IP X
    is never handed to host B on the same IP, and a host that now resolves elsewhere gets a
    fresh pool instead of a stale pinned one. Plain-http pools are shared per IP, which is
    harmless because each request carries its own Host header to the same vetted address.

    Proxies are ignored (a proxy would resolve the name itself) and urllib3 never retries
    (a retried POST could deliver twice; the retry schedule is ours). Safe to share between
    threads: it keeps no per-request state.

    DestinationRefusedError propagates out of `Session.send` for refused destinations.
    """

    def __init__(
        self,
        allow_private: bool = False,
        lookup: Lookup = system_lookup,
        pool_connections: int = 100,
        pool_maxsize: int = 10,
    ) -> None:
        self.allow_private = allow_private
        self.lookup = lookup
        super().__init__(
            pool_connections=pool_connections, pool_maxsize=pool_maxsize, max_retries=0
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
        address = resolve_public(hostname, port, self.allow_private, self.lookup)[0]
        if scheme == "https":
            tls_name = hostname.rstrip(".")
            pool_kwargs["server_hostname"] = tls_name
            pool_kwargs["assert_hostname"] = tls_name
        return self.poolmanager.connection_from_host(
            host=str(address), port=port, scheme=scheme, pool_kwargs=pool_kwargs
        )

    def add_headers(self, request: requests.PreparedRequest, **kwargs: Any) -> None:
        # The pool's host is the IP; name the real host, as http.client would for the URL.
        parts = urlsplit(request.url or "")
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
            host = f"{host}:{parts.port}"
        request.headers["Host"] = host


def new_session(
    allow_private: bool = False,
    *,
    lookup: Lookup = system_lookup,
    pool_connections: int = 100,
    pool_maxsize: int = 10,
) -> requests.Session:
    """A requests.Session whose http and https traffic goes through a PinnedAdapter.

    Meant to be created once per worker process and shared by its threads (keep-alive pools).
    It ignores the environment (no proxies, .netrc credentials or CA bundle from env vars)
    and keeps no cookies, so one receiver can never influence a request to another.
    `pool_connections` is how many (host, IP) pools are kept; `pool_maxsize` the idle
    connections kept per pool.
    """
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = PinnedAdapter(
        allow_private, lookup, pool_connections=pool_connections, pool_maxsize=pool_maxsize
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

    `timeout` is anything requests accepts, including urllib3's Timeout(connect=5, total=15).
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
