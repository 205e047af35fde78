"""Encryption at rest for signing secrets (Fernet, keyed by APEX_SECRET_KEY)."""

from __future__ import annotations

from cryptography.fernet import Fernet


class SecretBox:
    """Seals and opens secrets. Never logs or returns the key."""

    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()


def generate_key() -> str:
    return Fernet.generate_key().decode()
