"""API-key authentication: `x-api-key` or `Authorization: Bearer` on the API, HTTP Basic's
password only under /rq (for the dashboard's browser login); failures throttled per address."""

from __future__ import annotations

from flask import current_app, g, request

from apex.api.runtime import runtime
from apex.api.throttle import auth_throttle, client_address
from apex.apikeys import is_valid_key
from apex.errors import UnauthorizedError


def presented_key() -> str:
    """The key the client sent as x-api-key or a Bearer token; "" if none."""
    key = request.headers.get("x-api-key", "")
    if key:
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return token.strip()
    return ""


def basic_password() -> str:
    """HTTP Basic's password ("" if none): how a browser sends the key to the dashboard."""
    if request.authorization and request.authorization.type == "basic":
        return request.authorization.password or ""
    return ""


def authenticate(key: str) -> bool:
    """Whether `key` is a valid API key; a wrong one is counted against the client's address.
    Raises TooManyRequestsError, before looking at the key, while that address is over its
    failure limit. Redis being down never raises (the throttle then lets everyone try)."""
    rt = runtime()
    throttle = auth_throttle()
    address = client_address()
    throttle.refuse_if_over(address)
    if is_valid_key(rt.engine, rt.settings.api_keys, key):
        return True
    if key:
        # Only a guess counts: a request with no key learns nothing, and browsers send one
        # without credentials before each challenge (a dashboard page: about ten).
        throttle.record_failure(address)
    return False


def require_api_key() -> None:
    """A before_request hook. Raises UnauthorizedError unless a valid key was presented, and
    TooManyRequestsError for an address over its failure limit. Checks once per request."""
    if g.get("api_key_checked"):
        return
    key = presented_key()
    if not authenticate(key):
        if key:
            raise UnauthorizedError("Invalid API key")
        if basic_password():
            raise UnauthorizedError(
                "HTTP Basic is accepted only by the dashboard at /rq: "
                "send the key as x-api-key or Authorization: Bearer"
            )
        raise UnauthorizedError("Missing API key: send it as x-api-key or Authorization: Bearer")
    g.api_key_checked = True


def authenticate_first() -> None:
    """An app-level before_request hook, registered before any hook that reads the body: on a
    route that takes an API key, a missing or wrong key is 401 before any 400 about the body."""
    hooks = current_app.before_request_funcs
    if any(require_api_key in hooks.get(name, ()) for name in request.blueprints):
        require_api_key()
