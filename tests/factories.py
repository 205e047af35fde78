"""Plain factories with keyword overrides."""

from __future__ import annotations

from typing import Any


def subscription_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "url": "https://example.com/hooks/apex",
        "events": ["lead.created", "experiment.completed"],
    }
    body.update(overrides)
    return body
