"""What the inbound verifiers share: secrets, signature matching, clock tolerance, JSON bodies."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Sequence

from apex import jsonlimits
from apex.errors import (
    ApexError,
    InvalidSignatureError,
    SourceNotConfiguredError,
)
from apex.sources.request import RawRequest

# Enough digits for milliseconds until the year 33658; also keeps int() far from its digit limit.
_UNIX_TIME = re.compile(r"[0-9]{1,15}")


def usable_secrets(secrets: Sequence[str], source: str) -> list[str]:
    """The non-blank secrets, in order.

    Raises SourceNotConfiguredError when none is left (an empty key would let anyone sign), and
    TypeError for a bare string, whose characters would otherwise be tried as one-letter keys.
    """
    if isinstance(secrets, str):
        raise TypeError("secrets must be a sequence of strings, not a string")
    usable = [secret for secret in secrets if secret.strip()]
    if not usable:
        raise SourceNotConfiguredError(f"No webhook secret is configured for {source}")
    return usable


def require_header(
    request: RawRequest, name: str, error: type[ApexError] = InvalidSignatureError
) -> str:
    """The stripped value of header `name`; raises `error` when it is absent or blank."""
    value = (request.header(name) or "").strip()
    if not value:
        raise error(f"Missing {name} header")
    return value


def hmac_sha256(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def matches_any(expected: Iterable[str], received: Iterable[str]) -> bool:
    """Whether any received signature equals any expected one, each compared in constant time.

    Compared as bytes: compare_digest raises TypeError on non-ASCII str, and a header may hold any
    character. Never raises.
    """
    received_bytes = [value.encode("utf-8", "replace") for value in received]
    return any(
        hmac.compare_digest(candidate.encode("utf-8"), value)
        for candidate in expected
        for value in received_bytes
    )


def parse_unix_time(text: str, what: str) -> int:
    """A non-negative integer timestamp written in ASCII digits; raises InvalidSignatureError."""
    if not _UNIX_TIME.fullmatch(text):
        raise InvalidSignatureError(f"{what} is not an integer timestamp")
    return int(text)


def check_timestamp(signed_at: float, now: float, tolerance: float, what: str) -> None:
    """Refuse a signature made more than `tolerance` seconds before or after `now`.

    Raises InvalidSignatureError. Both directions: a far-future timestamp would stay valid for
    replay until the clock catches up with it.
    """
    age = now - signed_at
    if age > tolerance:
        raise InvalidSignatureError(
            f"{what} is {age:.0f} s old, older than the {tolerance:.0f} s tolerance"
        )
    if -age > tolerance:
        raise InvalidSignatureError(
            f"{what} is {-age:.0f} s in the future, beyond the {tolerance:.0f} s tolerance"
        )


INBOUND_MAX_DEPTH = 64
"""Nesting levels a platform's payload may have (theirs nest deeper than our API bodies)."""


def parse_json(body: bytes | str) -> object:
    """Parse a verified body as strict JSON (UTF-8; no NaN, Infinity or 1e400; nested at most
    INBOUND_MAX_DEPTH levels and numbers of at most 1,000 characters, checked before parsing).

    Raises BadRequestError, whose detail never quotes the body.
    """
    # A platform's JSON is taken as its own parser wrote it: a repeated key is not refused.
    return jsonlimits.parse(body, max_depth=INBOUND_MAX_DEPTH, unique_keys=False)


def content_key(value: object) -> str:
    """A key for an element that carries no natural one: the SHA-256 of its canonical JSON, so
    the same element sent again is known as the same."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
