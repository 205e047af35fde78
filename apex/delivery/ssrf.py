"""SSRF guard for outgoing deliveries: which addresses a webhook may go to, and the vetting of
what a name resolves to (transport.VettedResolver applies it to every connection it opens)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import cast

from apex.errors import DestinationRefusedError, DestinationUnresolvedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Lookup = Callable[[str, int], Iterable[str]]
"""Resolves (host, port) to address strings; raises OSError (e.g. socket.gaierror) on failure."""

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
    """Resolve with the system resolver (getaddrinfo), in its preference order: IPv4 and IPv6
    addresses (IPv4 only where Python was built without IPv6). The Lookup that
    transport.VettedResolver runs on an executor thread unless another is given.

    Raises OSError (socket.gaierror) or UnicodeError (an invalid IDNA label) when the name
    does not resolve.
    """
    family = socket.AF_UNSPEC if socket.has_ipv6 else socket.AF_INET
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def resolve_public(
    host: str, port: int, allow_private: bool, lookup: Lookup = system_lookup
) -> list[IPAddress]:
    """Resolve `host` and return its addresses, without duplicates, in resolver order: the
    lookup and vet() in one call, as transport.VettedResolver makes them for each connection.

    An IP literal ("127.0.0.1", "::1", "[::1]") is taken as is, without calling `lookup`.

    Raises DestinationUnresolvedError when the host does not resolve or resolves to nothing,
    DestinationRefusedError when ANY of its addresses is not public (see refusal_reason);
    `allow_private` (for development and tests) lifts that rule. A name with one bad address
    among good ones is refused: a later lookup, or another client, could pick the bad one.
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
    if they may be connected to; raises as resolve_public does otherwise.

    transport.VettedResolver calls it on every answer before aiohttp may connect (the
    connection then goes to one of the returned addresses, never to a second lookup's), and
    attempt() on an IP literal, which aiohttp connects to without a lookup."""
    host = host.strip("[]")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = list(dict.fromkeys(ipaddress.ip_address(a) for a in answers))
    if not addresses:
        raise DestinationUnresolvedError(f"destination {host} resolves to no address")
    if not allow_private:
        for address in addresses:
            reason = refusal_reason(address)
            if reason is None:
                continue
            if address == literal:  # as written: "::ffff:127.0.0.1", not "::ffff:7f00:1"
                raise DestinationRefusedError(f"destination {host} is {reason}, refused")
            # Name the rule, never the address: a refusal must not tell what an internal name
            # resolves to ("6to4 of 10.0.0.1, private" is said as "private").
            rule = reason.rsplit(", ", 1)[-1]
            article = "an" if rule[0] in "aeiouAEIOU" else "a"
            raise DestinationRefusedError(
                f"destination {host} resolves to {article} {rule} address, refused unless "
                "APEX_ALLOW_PRIVATE_DESTINATIONS=1"
            )
    return addresses
