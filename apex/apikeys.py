"""API keys: created once (only a hash is stored), listed, revoked, and checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from apex.db import reading, utcnow
from apex.errors import NotFoundError
from apex.ids import new_id
from apex.models import api_keys


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(engine: Engine, name: str) -> tuple[ApiKey, str]:
    """Store a new key's hash; return its record and the plaintext key (shown once only)."""
    plaintext = "apex_" + secrets.token_urlsafe(32)
    record = ApiKey(new_id("key"), name, plaintext[:12], utcnow(), None)
    with engine.begin() as conn:
        conn.execute(
            api_keys.insert().values(
                id=record.id,
                name=name,
                key_hash=_digest(plaintext),
                prefix=record.prefix,
                created_at=record.created_at,
            )
        )
    return record, plaintext


def list_keys(engine: Engine) -> list[ApiKey]:
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(
                api_keys.c.id,
                api_keys.c.name,
                api_keys.c.prefix,
                api_keys.c.created_at,
                api_keys.c.revoked_at,
            ).order_by(api_keys.c.created_at)
        ).all()
    return [ApiKey(*row) for row in rows]


def revoke_key(engine: Engine, key_id: str) -> None:
    """Revoke a key by id. Raises NotFoundError for an unknown or already revoked id."""
    with engine.begin() as conn:
        result = conn.execute(
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    if result.rowcount == 0:
        raise NotFoundError(f"No active API key {key_id}")


def is_valid_key(engine: Engine, static_keys: Sequence[str], candidate: str) -> bool:
    """True if `candidate` is one of the configured keys or an unrevoked stored key.

    Configured keys are compared in constant time; stored keys are looked up by SHA-256 digest
    (a hash lookup leaks nothing usable about the key). Never raises for a bad candidate.
    """
    if not candidate:
        return False
    matched = False
    for key in static_keys:
        matched |= hmac.compare_digest(key.encode(), candidate.encode())
    if matched:
        return True
    with reading(engine) as conn:
        found = conn.execute(
            sa.select(api_keys.c.id).where(
                api_keys.c.key_hash == _digest(candidate), api_keys.c.revoked_at.is_(None)
            )
        ).first()
    return found is not None
