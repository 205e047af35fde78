"""Reading the JSON the platforms send: tolerant lookups that answer None, never raise."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from apex.pipeline.records import Identity


def get(data: Any, *path: str) -> Any:
    """The value at `path` in nested objects, or None where any step is missing."""
    for name in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(name)
    return data


def text(data: Any, *path: str) -> str | None:
    """A non-empty string (numbers as their digits) at `path`, else None."""
    value = get(data, *path)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def amount(data: Any, *names: str) -> int | None:
    """The first positive integer among the fields `names`, else None."""
    for name in names:
        value = get(data, name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def unix_time(value: Any) -> datetime | None:
    """A Unix time in seconds as an aware datetime, or None if it is not a plausible one."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def iso_time(value: Any) -> datetime | None:
    """An ISO-8601 time with an offset (or Z) as an aware UTC datetime, else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


def dated(at: datetime | None, received_at: datetime | None, what: str) -> datetime:
    """`at`, else `received_at`; raises ValueError when neither is known."""
    if at is not None:
        return at
    if received_at is not None:
        return received_at
    raise ValueError(f"{what} carries no time and none was given")


def unique(values: Iterable[Identity]) -> tuple[Identity, ...]:
    """The identities in order, each once."""
    return tuple(dict.fromkeys(values))
