"""Standard Webhooks signing of outgoing deliveries: secrets, and the three webhook-* headers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
GENERATED_SECRET_BYTES = 32


def generate_secret() -> str:
    """Return a new secret: "whsec_" + standard base64 of 32 random bytes."""
    key = _random.token_bytes(GENERATED_SECRET_BYTES)
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def parse_secret(secret: str) -> bytes:
    """Return the HMAC key of a Standard Webhooks secret.

    The accepted form is "whsec_" + canonical, padded, standard-alphabet base64 of 24 to 64
    bytes. Raises ValueError otherwise. The message never echoes the secret itself.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"secret must start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"secret must be {SECRET_PREFIX!r} followed by standard, padded base64"
        ) from None
    # b64decode tolerates stray low bits in the last character; insist on the one canonical
    # spelling so that two different strings never name the same key.
    if base64.b64encode(key).decode("ascii") != encoded:
        raise ValueError("secret is not canonical base64")
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"secret decodes to {len(key)} bytes; expected {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES}"
        )
    return key


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Return the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers.

    `webhook-signature` holds one "v1,<base64 HMAC-SHA256>" per secret, in the given order,
    separated by spaces; each MACs the bytes `{msg_id}.{timestamp}.` + body. Pass the current
    secret first, then any secret still valid during a rotation.

    Raises ValueError when `secrets` is empty, a secret is malformed (see parse_secret), or
    `msg_id` contains "." (which would make the signed content ambiguous). Raises TypeError
    when `secrets` is a single string rather than a sequence of them.
    """
    if isinstance(secrets, str):
        raise TypeError("secrets must be a sequence of secrets, not one string")
    if not secrets:
        raise ValueError("at least one secret is required to sign")
    if not msg_id or "." in msg_id:
        raise ValueError(f"message id must be non-empty and contain no '.': {msg_id!r}")
    signed_content = f"{msg_id}.{timestamp}.".encode() + body
    signatures = []
    for secret in secrets:
        digest = hmac.new(parse_secret(secret), signed_content, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(digest).decode("ascii"))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }
