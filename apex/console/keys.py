"""Keys of the console's cookies, forms and portal links, derived from APEX_SECRET_KEY: one key
per purpose, so that no value made for one purpose passes as another (a session cookie as a
portal link, either as a sealed secret)."""

from __future__ import annotations

import hashlib
import hmac


def derive(secret_key: str, purpose: str) -> bytes:
    """32 bytes for `purpose`, from the first (sealing) key of APEX_SECRET_KEY: rotating that
    key changes every derived key, which ends every session and portal link made with it."""
    first = secret_key.split(",")[0].strip()
    return hmac.new(first.encode(), f"apex.console.{purpose}".encode(), hashlib.sha256).digest()


def tag(key: bytes, message: str) -> str:
    """A hex HMAC-SHA256 of `message` under `key` (for CSRF tokens and fingerprints)."""
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
