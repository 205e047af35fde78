"""Where a webhook may go: a URL's host read as the resolver reads it, and the scheme, port and
address rules. Pure; checked when a subscription's URL is written and again before every attempt,
so a setting switched off applies to subscriptions that already exist."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import idna

from apex.delivery.ssrf import IPAddress, refusal_reason

DEFAULT_PORTS = {"https": 443, "http": 80}
# Ports a webhook may use without APEX_ALLOWED_PORTS: HTTPS, HTTP (when http:// is allowed) and
# the unprivileged range. The privileged rest (22 ssh, 25 smtp, 53 dns, ...) are internal services.
UNPRIVILEGED = (1024, 65535)
MAX_LABEL = 63
# Names that are this machine whatever DNS says (RFC 6761; Debian's /etc/hosts for IPv6).
_THIS_MACHINE = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})
_LABEL_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
PRIVATE_SETTING = "APEX_ALLOW_PRIVATE_DESTINATIONS"


class PolicySettings(Protocol):
    """What check() needs from config.Settings (read-only)."""

    @property
    def allow_http(self) -> bool: ...

    @property
    def allow_private_destinations(self) -> bool: ...

    @property
    def allowed_ports(self) -> tuple[tuple[int, int], ...]: ...


@dataclass(frozen=True)
class Policy:
    """The destination rules in force: http:// allowed or not, private destinations allowed or
    not, and port ranges allowed beyond 443, 80 (with http) and 1024-65535."""

    allow_http: bool = False
    allow_private: bool = False
    extra_ports: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, settings: PolicySettings) -> Policy:
        return cls(settings.allow_http, settings.allow_private_destinations, settings.allowed_ports)

    @property
    def schemes(self) -> tuple[str, ...]:
        return ("https", "http") if self.allow_http else ("https",)

    def port_allowed(self, port: int) -> bool:
        if port == 443 or (port == 80 and self.allow_http):
            return True
        ranges = (UNPRIVILEGED, *self.extra_ports)
        return any(low <= port <= high for low, high in ranges)

    def describe_ports(self) -> str:
        named = ["443", *(["80"] if self.allow_http else []), "1024-65535"]
        named += [str(low) if low == high else f"{low}-{high}" for low, high in self.extra_ports]
        return ", ".join(named)


@dataclass(frozen=True)
class Host:
    """A host as the resolver will use it: `name` is lower-case ASCII (A-labels for IDNs), without
    a trailing dot; `address` is set when the host is an address literal in any form
    getaddrinfo reads as one (`127.1`, `0x7f000001`, `2130706433`, `0177.0.0.1`, `[::1]`)."""

    name: str
    address: IPAddress | None = None


def parse_host(host: str) -> Host:
    """Read `host` (a URL's hostname, IPv6 without brackets) the way the delivery path will.

    Unicode is mapped with IDNA/UTS-46 (so `ⅼocalhost` is `localhost`, `ＡＢＣ.com` is `abc.com`),
    case is folded, one trailing dot dropped (the name is absolute either way), and a name that
    inet_aton accepts is the IPv4 address it means, as glibc's getaddrinfo reads it. Raises
    ValueError naming the rule a host breaks: labels of letters, digits, `-` and `_` of 1-63
    characters, A-labels (`xn--`) that are valid IDNA.
    """
    if ":" in host:
        try:
            return Host(host, ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"host [{host}] is not a valid IPv6 address") from None
    written = host
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(
                f"host {written!r} is not a valid international name ({exc})"
            ) from None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise ValueError(f"host {written!r} is empty")
    labels = host.split(".")
    for label in labels:
        if not label:
            raise ValueError(f"host {written!r} has an empty label (two dots in a row)")
        if len(label) > MAX_LABEL:
            raise ValueError(f"host {written!r} has a label over {MAX_LABEL} characters")
        if not _LABEL_CHARACTERS.issuperset(label):
            raise ValueError(
                f"host {written!r} may hold only letters, digits, '-', '_' and dots "
                "(write an international name in punycode, xn--...)"
            )
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError:
                raise ValueError(f"host {written!r}: {label} is not valid IDNA punycode") from None
    address = inet_aton(host)
    return Host(host, address)


def inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address glibc's inet_aton (and so getaddrinfo) reads `text` as, or None.

    One to four parts, each decimal, octal (leading 0) or hex (0x); the last part fills the
    remaining bytes: `127.1` is 127.0.0.1, `2130706433` is 127.0.0.1, `0` is 0.0.0.0.
    """
    parts = text.split(".")
    if len(parts) > 4:
        return None
    values = []
    for part in parts:
        value = _c_number(part)
        if value is None:
            return None
        values.append(value)
    *leading, last = values
    if any(v > 0xFF for v in leading) or last >= 1 << (8 * (4 - len(leading))):
        return None
    number = last
    for position, value in enumerate(leading):
        number |= value << (8 * (3 - position))
    return ipaddress.IPv4Address(number)


def _c_number(part: str) -> int | None:
    """strtoul(part, base=0) when it reads all of `part`, a part starting with a digit."""
    if not part or not part[0].isdigit():
        return None
    digits, base = part, 10
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:], 16
    elif part[0] == "0":
        digits, base = part, 8
    try:
        value = int(digits, base) if digits.isalnum() else None
    except ValueError:
        return None
    return value if value is not None and value <= 0xFFFFFFFF else None


def check(url: str, policy: Policy) -> str | None:
    """Why `url` is no destination under `policy`, or None. Never raises; never resolves.

    The rules: an absolute https:// URL (http:// too with APEX_ALLOW_HTTP=1), no credentials,
    a host parse_host accepts, a port `policy` allows, and unless private destinations are
    allowed no address literal that is not public (ssrf.refusal_reason) and no name of this
    machine (`localhost`, `*.localhost`). A name that resolves to a private address is refused
    when it is resolved, by ssrf.resolve_public. Messages name the rule and what was written,
    never what a name resolves to.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in policy.schemes:
        hint = " (http:// needs APEX_ALLOW_HTTP=1)" if parts.scheme == "http" else ""
        return f"must be an absolute {' or '.join(policy.schemes)}:// URL{hint}, got {url!r}"
    if not parts.hostname:
        return f"must include a host, got {url!r}"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials (user:password@)"
    try:
        host = parse_host(parts.hostname)
    except ValueError as exc:
        return str(exc)
    if port is None:
        port = DEFAULT_PORTS[parts.scheme]
    if not policy.port_allowed(port):
        return (
            f"must use port {policy.describe_ports()} (APEX_ALLOWED_PORTS adds others), "
            f"got port {port}"
        )
    if not policy.allow_private:
        return _private_problem(parts.hostname, host)
    return None


def _private_problem(written: str, host: Host) -> str | None:
    if host.address is None:
        if host.name in _THIS_MACHINE or host.name.endswith(".localhost"):
            shown = written if written == host.name else f"{written}, which reads as {host.name}"
            return f"must not point at this machine ({shown}); set {PRIVATE_SETTING}=1"
        return None
    reason = refusal_reason(host.address)
    if reason is None:
        return None
    shown = written
    if host.address.version == 4 and str(host.address) != host.name:
        shown = f"{written}, which reads as {host.address}"
    article = "an" if reason[0] in "aeiouAEIOU" else "a"
    return f"must not point at {article} {reason} address ({shown}); set {PRIVATE_SETTING}=1"
