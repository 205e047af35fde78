"""Portal links: a signed token that opens one subscription's page to an integrator, until it
expires or is revoked.

No table holds them. A token carries the subscription id, its expiry and a fingerprint of the
subscription's sealed signing secret, all signed with a key derived from APEX_SECRET_KEY. So
rotating APEX_SECRET_KEY (the signing key changes) or rotating the subscription's secret (the
sealed secret, and so the fingerprint, changes) revokes every link issued before."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.engine import Engine

from apex.console.keys import derive, tag
from apex.db import reading
from apex.models import subscriptions

DEFAULT_TTL = 3600  # seconds
MAX_TTL = 7 * 86400
_SALT = "apex.portal-link"


@dataclass(frozen=True)
class PortalLink:
    token: str
    subscription_id: str
    expires_at: datetime


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(derive(secret_key, "portal-link"), salt=_SALT)


def _fingerprint(secret_key: str, sealed_secret: str) -> str:
    return tag(derive(secret_key, "portal-fingerprint"), sealed_secret)[:32]


def _sealed_secret(engine: Engine, sub_id: str) -> str | None:
    with reading(engine) as conn:
        sealed = conn.execute(
            sa.select(subscriptions.c.secret).where(
                subscriptions.c.id == sub_id, subscriptions.c.deleted_at.is_(None)
            )
        ).scalar_one_or_none()
    return None if sealed is None else str(sealed)


def issue(engine: Engine, secret_key: str, sub_id: str, ttl: int, now: datetime) -> PortalLink:
    """A link to `sub_id` valid for `ttl` seconds (1..MAX_TTL, checked by the caller).
    Raises LookupError for an unknown or deleted subscription."""
    sealed = _sealed_secret(engine, sub_id)
    if sealed is None:
        raise LookupError(sub_id)
    expires = (now + timedelta(seconds=ttl)).replace(microsecond=0)
    payload = {"s": sub_id, "e": int(expires.timestamp()), "f": _fingerprint(secret_key, sealed)}
    return PortalLink(str(_serializer(secret_key).dumps(payload)), sub_id, expires)


def open_link(engine: Engine, secret_key: str, token: str, now: datetime) -> PortalLink | None:
    """The link `token` stands for while it is valid; None when it is forged, malformed,
    expired, or revoked (its subscription deleted or its secret rotated). Never raises."""
    try:
        payload = _serializer(secret_key).loads(token)
    except BadSignature:
        return None
    if not isinstance(payload, dict):
        return None
    sub_id, expiry, fingerprint = payload.get("s"), payload.get("e"), payload.get("f")
    if not (isinstance(sub_id, str) and isinstance(expiry, int) and isinstance(fingerprint, str)):
        return None
    expires = datetime.fromtimestamp(expiry, UTC)
    if expires <= now:
        return None
    sealed = _sealed_secret(engine, sub_id)
    if sealed is None or not hmac.compare_digest(
        fingerprint.encode(), _fingerprint(secret_key, sealed).encode()
    ):
        return None
    return PortalLink(token, sub_id, expires)
