"""Console forms read into the API's own schemas, so a form accepts exactly what the API does."""

from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema, ValidationError

from apex.api.errors import _field_errors


def _integer(value: str) -> int | str | None:
    """A number field: empty is None (no limit), digits an int, anything else stays text for
    the schema to refuse."""
    value = value.strip()
    if not value:
        return None
    return int(value) if value.isdigit() and len(value) < 10 else value


def subscription_fields(partial: bool) -> dict[str, Any]:
    """The subscription form as the API's body (camelCase limits). On create (`partial` False)
    empty optional fields are left out; on edit they clear the value."""
    form = request.form
    data: dict[str, Any] = {
        "url": form.get("url", "").strip(),
        "events": form.getlist("events"),
        "description": form.get("description", ""),
    }
    for name, key in (("rate_limit", "rateLimit"), ("concurrency", "concurrency")):
        value = _integer(form.get(name, ""))
        if value is not None or partial:
            data[key] = value
    return data


def load(schema: Schema, data: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """(validated body, {}) or (None, {field: message}) with the schema's messages."""
    try:
        return schema.load(data), {}
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in _field_errors(exc.messages):
            errors.setdefault(error.field.split(".")[0], error.message)
        return None, errors
