"""Subscription URL rules, and the OpenAPI patterns that state them: the document calls a URL or
secret valid exactly when the validators accept it."""

from __future__ import annotations

import base64
import re

import pytest

from apex.api.schemas import SECRET_DOC, URL_DOC
from apex.delivery.signing import parse_secret
from apex.subscriptions import url_problem

URLS = [
    "https://example.com/hooks/apex",
    "http://example.com:8080/a?b=c&d=e",
    "HTTPS://EXAMPLE.COM/",
    "https://x2iwj4.io*",
    "https://a.io:",
    "https://a.io:65535/x",
    "https://a.io:65536",
    "https://a.io:0080",
    "https://a.io:x",
    "https://a\\b/c",
    "https://example.com/a#",
    "https://example.com/a#frag",
    "https://user@example.com/",
    "https://user:pw@example.com/",
    "https:///path",
    "ftp://example.com/",
    "/relative",
    "https://example.com/a b",
    "https://example.com/a\r\nb",
    "https://example.com/a\tb",
    "https://example.com/a\x00b",
    "https://example.com/\u202egnp.exe",
    "https://example.com/\u200e",
    "https://exa\u200bmple.com/",
    "https://example.com/\u00a0",
    "https://example.com/caf\u00e9",
    "https://example.com/\x7f",
    "https://a.io:22/",
    "https://a.io:0/",
    "https://a.io:80/",
    "https://a.io:443/",
    "https://a.io:1023/",
    "https://a.io:1024/",
    "https://a.io:00443/",
    "https://127.1/",
    "https://0x7f000001/",
    "https://0/",
    "https://localhost./",
    "https://a.io./",
    "https://a..io/",
    "https://.a.io/",
    "https://a_b.io/",
    "https://-/",
    "https://xn--bcher-kva.de/",
    "https://%6cocalhost/",
    "https://a.io;x/",
    "https://" + "a" * 63 + ".io/",
    "https://" + "a" * 64 + ".io/",
]


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a\r\nX-Injected: 1",
        "https://example.com/a\tb",
        "https://example.com/a b",
        "https://example.com/a\x00b",
        "https://example.com/\u202egnp.exe",
        "https://example.com/\u2066x\u2069",
        "https://example.com/\ufeff",
    ],
)
def test_refuses_control_characters_whitespace_and_bidi_marks(url: str) -> None:
    problem = url_problem(url, allow_http=True, allow_private=True)
    assert problem is not None and "printable ASCII" in problem


@pytest.mark.parametrize("url", URLS)
def test_the_document_pattern_agrees_with_url_problem(url: str) -> None:
    documented = re.fullmatch(URL_DOC["pattern"], url) is not None
    accepted = url_problem(url, allow_http=True, allow_private=True) is None
    assert documented == accepted


def _secret_ok(secret: str) -> bool:
    try:
        parse_secret(secret)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("size", [0, 1, 22, 23, 24, 25, 26, 27, 40, 62, 63, 64, 65, 66, 90])
def test_the_document_pattern_agrees_with_parse_secret(size: int) -> None:
    encoded = base64.b64encode(bytes(range(size))).decode()
    candidates = [f"whsec_{encoded}", f"whsec_{encoded[:-1]}B", f"whsec_{encoded}=", "whsec_"]
    for secret in candidates:
        assert (re.fullmatch(SECRET_DOC["pattern"], secret) is not None) == _secret_ok(secret)
