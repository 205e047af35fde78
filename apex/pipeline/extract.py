"""extract(): the normalised records one stored inbound event carries, read by its source. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from apex.pipeline.records import Record
from apex.sources.registry import SOURCES


def extract(
    source: str,
    event_type: str,
    payload: Any,
    headers: Mapping[str, str],
    received_at: datetime | None = None,
) -> list[Record]:
    """The records an inbound event carries, in the order they should be applied.

    `payload` is the stored JSON: a Stripe event, a GitHub payload, or one HubSpot event.
    `headers` are the stored ones (unused today: the type says it all). `received_at` dates what
    carries no time of its own (a GitHub `watch`). Raises UnusableEventError when the event
    carries nothing Apex uses, ValueError for an unknown source.
    """
    known = SOURCES.get(source)
    if known is None:
        raise ValueError(f"unknown inbound source {source!r}")
    return known.extract(event_type, payload, received_at)
