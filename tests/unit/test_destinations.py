"""Destination rules: hosts read as the resolver reads them, the scheme, port and address rules,
and messages that name the rule, never a resolved address."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from apex.delivery.destinations import Policy, check, inet_aton, parse_host
from config import SettingsError, load_settings

STRICT = Policy()  # the defaults: https only, no private destinations, no extra ports
OPEN = Policy(allow_http=True, allow_private=True)


@pytest.mark.parametrize(
    ("host", "means"),
    [
        ("127.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x0", "0.0.0.0"),
        ("017700000001", "127.0.0.1"),
        ("169.254.43518", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("10.1", "10.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),  # trailing dot: judged as the address it spells
        ("00000000000000000127.1", "87.0.0.1"),  # leading zero: octal, as C reads it
        ("134744072", "8.8.8.8"),
    ],
)
def test_numeric_hosts_are_the_addresses_inet_aton_reads(host: str, means: str) -> None:
    assert parse_host(host).address == ipaddress.IPv4Address(means)


@pytest.mark.parametrize(
    "text",
    ["0", "00", "0x0", "127.1", "1.256", "1.2.65535", "4294967295", "0377.0377.0377.0377",
     "01.02.03.04", "0x7fffffff", "037777777777", "256.1", "1.2.65536", "4294967296", "0400.1",
     "0x100.1", "09", "0xg", "0x", "1.", ".1", "1..1", "1.2.3.4.5", "08.0.0.1", "1e3", "0b1"],
)  # fmt: skip
def test_inet_aton_agrees_with_the_system_resolver(text: str) -> None:
    try:
        info = socket.getaddrinfo(
            text, 1, socket.AF_INET, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
        )
        system: str | None = str(info[0][4][0])
    except (socket.gaierror, UnicodeError):  # an empty label is no name at all
        system = None
    ours = inet_aton(text)
    assert (str(ours) if ours else None) == system


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("localhost.", "localhost"),
        ("LOCALHOST", "localhost"),
        ("\u217cocalhost", "localhost"),  # SMALL ROMAN NUMERAL FIFTY folds to l
        ("\uff2c\uff2f\uff23\uff21\uff2c\uff28\uff2f\uff33\uff34", "localhost"),  # fullwidth
        ("ex\u00adample.com", "example.com"),  # a soft hyphen is dropped
        ("b\u00fccher.de", "xn--bcher-kva.de"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("a_b.example.com", "a_b.example.com"),
        ("08.0.0.1", "08.0.0.1"),  # not a number to inet_aton: a name, resolved at delivery
    ],
)
def test_names_are_folded_as_the_resolver_sees_them(host: str, name: str) -> None:
    assert parse_host(host).name == name


@pytest.mark.parametrize(
    ("host", "rule"),
    [
        ("a..b", "empty label"),
        (".", "empty"),
        ("a" * 64 + ".io", "over 63"),
        ("%6cocalhost", "only letters, digits"),
        ("a\\b", "only letters, digits"),
        ("a*b.io", "only letters, digits"),
        ("xn--zz.com", "not valid IDNA"),
        ("xn--ocalhost-lb6d", "not valid IDNA"),  # the punycode of a look-alike of localhost
        ("1::2::3", "not a valid IPv6"),
    ],
)
def test_hosts_that_break_a_rule_say_which(host: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        parse_host(host)


REFUSED = [
    # (url, policy, words the message must hold)
    ("https://127.1/", STRICT, "loopback address (127.1, which reads as 127.0.0.1)"),
    ("https://0x7f000001/", STRICT, "loopback"),
    ("https://2130706433/", STRICT, "loopback"),
    ("https://0177.0.0.1/", STRICT, "loopback"),
    ("https://0/", STRICT, "unspecified"),
    ("https://0.0.0.0/", STRICT, "unspecified"),
    ("https://localhost./", STRICT, "this machine (localhost., which reads as localhost)"),
    ("https://\u217cocalhost/", STRICT, "this machine"),
    ("https://api.localhost/", STRICT, "this machine"),
    ("https://ip6-localhost/", STRICT, "this machine"),
    ("https://169.254.43518/latest", STRICT, "cloud metadata"),
    ("https://10.1/", STRICT, "private"),
    ("https://[::1]/", STRICT, "loopback"),
    ("https://[::ffff:127.0.0.1]/", STRICT, "IPv4-mapped"),
    ("https://[fe80::1%25eth0]/", STRICT, "link-local"),
    ("https://[2002:7f00:1::]/", STRICT, "6to4"),
    ("http://example.com/", STRICT, "APEX_ALLOW_HTTP=1"),
    ("ftp://example.com/", OPEN, "https or http"),
    ("https://example.com:22/", OPEN, "got port 22"),
    ("https://example.com:25/", OPEN, "got port 25"),
    ("https://example.com:0/", OPEN, "got port 0"),
    ("https://example.com:1023/", OPEN, "got port 1023"),
    ("https://example.com:80/", STRICT, "got port 80"),  # 80 only where http:// is allowed
    ("https://example.com:99999/", OPEN, "not a valid URL"),
    ("https://user:pw@example.com/", OPEN, "credentials"),
    ("https:///path", OPEN, "must include a host"),
    ("https://a..b/", OPEN, "empty label"),
]


@pytest.mark.parametrize(("url", "policy", "words"), REFUSED)
def test_refuses_and_names_the_rule(url: str, policy: Policy, words: str) -> None:
    problem = check(url, policy)
    assert problem is not None and words in problem


@pytest.mark.parametrize(
    ("url", "policy"),
    [
        ("https://example.com/hooks", STRICT),
        ("https://EXAMPLE.com./hooks", STRICT),
        ("https://example.com:443/", STRICT),
        ("https://example.com:1024/", STRICT),
        ("https://example.com:8443/", STRICT),
        ("https://example.com:65535/", STRICT),
        ("https://xn--bcher-kva.de/", STRICT),
        ("https://134744072/", STRICT),  # 8.8.8.8, public however it is written
        ("https://[2606:4700:4700::1111]/", STRICT),
        ("http://example.com/", OPEN),
        ("http://example.com:80/", OPEN),
        ("https://127.1/", OPEN),
        ("https://localhost./", OPEN),
        ("https://example.com:22/", Policy(extra_ports=((22, 22),))),
        ("https://example.com:600/", Policy(extra_ports=((500, 700),))),
    ],
)
def test_accepts(url: str, policy: Policy) -> None:
    assert check(url, policy) is None


def test_allowed_ports_setting_widens_the_defaults() -> None:
    base = {"REDIS_URL": "redis://x", "APEX_SECRET_KEY": "a" * 43 + "="}
    settings = load_settings({**base, "APEX_ALLOWED_PORTS": "22, 8000-8100"})
    policy = Policy.of(settings)
    assert settings.allowed_ports == ((22, 22), (8000, 8100))
    assert [p for p in (21, 22, 23, 443, 999, 8000, 8100) if policy.port_allowed(p)] == [
        22,
        443,
        8000,
        8100,
    ]
    assert check("https://example.com:22/", policy) is None
    assert "443, 1024-65535, 22, 8000-8100" in (check("https://example.com:21/", policy) or "")
    assert Policy.of(load_settings(base)).extra_ports == ()


@pytest.mark.parametrize("value", ["x", "0", "70000", "9-8", "-5", "1-"])
def test_a_malformed_allowed_ports_setting_is_named(value: str) -> None:
    base = {"REDIS_URL": "redis://x", "APEX_SECRET_KEY": "a" * 43 + "="}
    with pytest.raises(SettingsError, match="APEX_ALLOWED_PORTS"):
        load_settings({**base, "APEX_ALLOWED_PORTS": value})
