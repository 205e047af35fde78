"""The operator's session: a cookie sealed with a key derived from APEX_SECRET_KEY (Fernet:
encrypted and signed, with its issue time), HttpOnly, SameSite=Strict, expiring after
SESSION_TTL; and the CSRF tokens of the console's forms.

The cookie holds the API key the operator signed in with (encrypted), so every request checks
the key again: revoking the key ends its sessions. Signing out records the session id in Redis
until the cookie would have expired, so a copy of the cookie is refused too."""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from flask import Request
from werkzeug.wrappers import Response

from apex.api.runtime import runtime
from apex.console.keys import derive, tag

COOKIE = "apex_console"
SIGN_IN_COOKIE = "apex_console_sign_in"  # the sign-in form's CSRF nonce (double submit)
SESSION_TTL = 8 * 3600  # seconds
SIGN_IN_TTL = 3600
_ENDED = "apex:console:ended:"


@dataclass(frozen=True)
class Session:
    id: str
    key: str  # the API key signed in with; never rendered
    csrf: str


def _fernet() -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive(runtime().settings.secret_key, "session")))


def _secure(request: Request) -> bool:
    return request.is_secure


def current(request: Request) -> Session | None:
    """The session of this request's cookie while it is valid: sealed by us, younger than
    SESSION_TTL, not signed out, and its API key still valid. None otherwise. Raises RedisError
    when Redis cannot say whether the session was signed out (refused rather than guessed)."""
    token = request.cookies.get(COOKIE, "")
    if not token:
        return None
    try:
        data = json.loads(_fernet().decrypt(token.encode(), ttl=SESSION_TTL))
    except (InvalidToken, ValueError):
        return None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(name), str) for name in ("id", "key", "csrf")
    ):
        return None
    session = Session(data["id"], data["key"], data["csrf"])
    if runtime().redis.exists(_ENDED + session.id):
        return None
    return session


def start(response: Response, request: Request, key: str) -> None:
    """Sign in: set a new session's cookie on `response`."""
    data = {"id": secrets.token_urlsafe(16), "key": key, "csrf": secrets.token_urlsafe(24)}
    token = _fernet().encrypt(json.dumps(data).encode()).decode()
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_TTL,
        path="/",
        secure=_secure(request),
        httponly=True,
        samesite="Strict",
    )
    response.delete_cookie(SIGN_IN_COOKIE, path="/console")


def end(response: Response, request: Request, session: Session) -> None:
    """Sign out: refuse this session from now on, and clear its cookie."""
    runtime().redis.set(_ENDED + session.id, 1, ex=SESSION_TTL)
    response.delete_cookie(
        COOKIE, path="/", secure=_secure(request), httponly=True, samesite="Strict"
    )


def sign_in_form(request: Request) -> tuple[str, str]:
    """(nonce, CSRF token) for the sign-in form: the nonce goes in a cookie (keep_nonce()), the
    token in the form; a sign-in is accepted only when the two match."""
    nonce = request.cookies.get(SIGN_IN_COOKIE, "") or secrets.token_urlsafe(16)
    return nonce, tag(derive(runtime().settings.secret_key, "sign-in"), nonce)


def keep_nonce(response: Response, request: Request, nonce: str) -> None:
    response.set_cookie(
        SIGN_IN_COOKIE,
        nonce,
        max_age=SIGN_IN_TTL,
        path="/console",
        secure=_secure(request),
        httponly=True,
        samesite="Strict",
    )


def sign_in_token_valid(request: Request, presented: str) -> bool:
    nonce = request.cookies.get(SIGN_IN_COOKIE, "")
    if not nonce:
        return False
    return same(tag(derive(runtime().settings.secret_key, "sign-in"), nonce), presented)


def portal_csrf(token: str) -> str:
    """The CSRF token of a portal page's forms: bound to its link."""
    return tag(derive(runtime().settings.secret_key, "portal-csrf"), token)[:40]


def same(expected: str, presented: str) -> bool:
    return bool(presented) and hmac.compare_digest(expected.encode(), presented.encode())
