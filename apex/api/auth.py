"""API-key authentication for the management routes: `x-api-key` or `Authorization: Bearer`."""

from __future__ import annotations

from flask import request

from apex.api.runtime import runtime
from apex.apikeys import is_valid_key
from apex.errors import UnauthorizedError


def presented_key() -> str:
    """The key the client sent, from x-api-key, a Bearer token or HTTP Basic's password."""
    key = request.headers.get("x-api-key", "")
    if key:
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return token.strip()
    if request.authorization and request.authorization.type == "basic":
        return request.authorization.password or ""
    return ""


def require_api_key() -> None:
    """A before_request hook. Raises UnauthorizedError unless a valid key was presented."""
    rt = runtime()
    key = presented_key()
    if not key:
        raise UnauthorizedError("Missing API key: send it as x-api-key or Authorization: Bearer")
    if not is_valid_key(rt.engine, rt.settings.api_keys, key):
        raise UnauthorizedError("Invalid API key")
