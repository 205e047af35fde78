"""Public identifiers: a type prefix and a random, URL-safe suffix."""

import secrets


def new_id(prefix: str) -> str:
    """Return `prefix_` followed by 22 random base62-ish characters, e.g. new_id("wh")."""
    return f"{prefix}_{secrets.token_urlsafe(16).replace('-', 'x').replace('_', 'y')}"
