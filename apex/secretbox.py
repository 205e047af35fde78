"""Encryption at rest for signing secrets (Fernet, keyed by APEX_SECRET_KEY), and re-sealing the
stored ones under a new key."""

from __future__ import annotations

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import Engine

from apex.db import reading
from apex.models import subscriptions

# The columns holding Fernet tokens: every secret at rest.
SEALED_COLUMNS = (subscriptions.c.secret, subscriptions.c.previous_secret)


class SecretBox:
    """Seals and opens secrets. Never logs or returns the keys.

    `keys` is one Fernet key or several, comma-separated, newest first (APEX_SECRET_KEY while
    rotating): the first seals, each opens."""

    def __init__(self, keys: str) -> None:
        fernets = [Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()]
        if not fernets:
            raise ValueError("a SecretBox needs at least one key")
        self._primary = fernets[0]
        self._fernet = MultiFernet(fernets)

    def __repr__(self) -> str:
        return "SecretBox(<keys hidden>)"

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, token: str) -> str:
        """The secret in `token`. Raises cryptography's InvalidToken when no key opens it."""
        return self._fernet.decrypt(token.encode()).decode()

    def sealed_by_primary(self, token: str) -> bool:
        """Whether the first key opens `token` (it needs no re-sealing). Never raises."""
        try:
            self._primary.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def reseal(self, token: str) -> str:
        """`token`'s secret sealed with the first key. Raises InvalidToken when no key opens it."""
        return self._fernet.rotate(token.encode()).decode()


def reseal_stored(engine: Engine, box: SecretBox) -> int:
    """Re-seal every stored secret not sealed with `box`'s first key, deleted subscriptions
    included; returns how many tokens were re-sealed. Each token is replaced only if it is
    still the one read (a rotation meanwhile keeps its own), and passes repeat until none is
    left, so the processes may keep running. Idempotent: a second run re-seals 0.

    Raises InvalidToken (naming no secret) when a stored token opens with none of the keys:
    nothing of that row is changed, and what was re-sealed before stays re-sealed."""
    total = 0
    while True:
        outstanding = 0
        with reading(engine) as conn:
            rows = conn.execute(sa.select(subscriptions.c.id, *SEALED_COLUMNS)).all()
        for row in rows:
            for column in SEALED_COLUMNS:
                token = getattr(row, column.name)
                if token is None or box.sealed_by_primary(token):
                    continue
                outstanding += 1
                try:
                    fresh = box.reseal(token)
                except InvalidToken:
                    raise InvalidToken(
                        f"the {column.name} of subscription {row.id} opens with none of the keys"
                    ) from None
                with engine.begin() as conn:
                    done = conn.execute(
                        subscriptions.update()
                        .where(subscriptions.c.id == row.id, column == token)
                        .values({column.name: fresh})
                    )
                total += done.rowcount  # 0: it changed meanwhile; the next pass reads it again
        if outstanding == 0:
            return total


def generate_key() -> str:
    return Fernet.generate_key().decode()
