"""Wire formats shared by every schema: UTC timestamps with a trailing Z, JSON objects of data."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError, fields

# RFC 3339 date-time (the OpenAPI `date-time` format): a zone is required.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# Unix seconds we accept: 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
MAX_UNIX_SECONDS = 253402300799


def isoformat_z(value: datetime) -> str:
    """`2025-01-10T08:00:00Z`; the year always has four digits (strftime's %Y drops the zeros of
    years before 1000)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


class Timestamp(fields.Field):
    """A UTC timestamp: `2025-01-10T08:00:00Z` out; RFC 3339 with a zone in, or unix seconds too
    where `unix_seconds` (request bodies; a query string holds text only).

    Out of range (unix seconds outside 0..MAX_UNIX_SECONDS, a date-time outside years 1-9999 once
    in UTC) is a ValidationError, never an OverflowError."""

    def __init__(self, *, unix_seconds: bool = False, **kwargs: Any) -> None:
        text: dict[str, Any] = {"type": "string", "format": "date-time"}
        doc = {"oneOf": [text, _UNIX_DOC]} if unix_seconds else text
        kwargs["metadata"] = {**doc, **kwargs.get("metadata", {})}
        super().__init__(**kwargs)
        self.unix_seconds = unix_seconds

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else isoformat_z(value)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if self.unix_seconds and isinstance(value, int | float) and not isinstance(value, bool):
            if not (math.isfinite(value) and 0 <= value <= MAX_UNIX_SECONDS):
                raise ValidationError(
                    f"must be unix seconds from 0 to {MAX_UNIX_SECONDS}, got {value!r}"
                )
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str) and _RFC3339.fullmatch(value):
            try:
                return datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(UTC)
            except (ValueError, OverflowError):
                raise ValidationError(
                    f"is not a valid date-time within years 1-9999 in UTC, got {value!r}"
                ) from None
        expected = "an RFC 3339 timestamp with a zone" + (
            " or unix seconds" if self.unix_seconds else ""
        )
        raise ValidationError(f"must be {expected}, got {value!r}"[:300])


_UNIX_DOC = {"type": "number", "minimum": 0, "maximum": MAX_UNIX_SECONDS}


def data_problem(value: Any) -> str | None:
    """Why `value` is not event data (a JSON object whose numbers are finite), or None."""
    if not isinstance(value, dict):
        return f"must be a JSON object, not {_kind(value)}"
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return f"must hold finite numbers only, got {item!r}"
    return None


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return {str: "a string", list: "an array", type(None): "null"}.get(type(value), "that")


class JsonObject(fields.Field):
    """A JSON object (event data): any keys, finite numbers only (no NaN or Infinity)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        problem = data_problem(value)
        if problem:
            raise ValidationError(problem)
        return value


class Text(fields.String):
    """A string PostgreSQL can store: NUL (U+0000) is refused with a ValidationError."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["metadata"] = {"pattern": "^[^\\u0000]*$", **kwargs.get("metadata", {})}
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("must not contain NUL (U+0000)")
        return text
