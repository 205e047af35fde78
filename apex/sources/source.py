"""What a source is made of: its verifier, its extractor and its enricher factory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from apex.pipeline.records import Record
from apex.sources.enrichment import Calls, SourceEnricher
from apex.sources.request import InboundEvent, RawRequest

if TYPE_CHECKING:
    from config import Settings

Verifier = Callable[[RawRequest, Sequence[str], float], list[InboundEvent]]
"""verify(request, secrets, now): the request's events, or an ApexError saying why not.

Content never refuses a verified request: an element Apex cannot use is returned as an
InboundEvent with `ignored` set to the reason, and is stored as such."""

Extractor = Callable[[str, Any, datetime | None], list[Record]]
"""extract(event_type, payload, received_at): the records a stored event carries, in the order
they apply. Raises UnusableEventError when the event carries nothing Apex uses."""

EnricherFactory = Callable[["Settings", Calls], SourceEnricher | None]
"""build(settings, calls): the source's enricher when its API credentials are set, else None."""


class UnusableEventError(Exception):
    """A verified event Apex has no use for (a type it does not read, an object it does not
    track, a shape it cannot read): stored `ignored` with this reason, never retried."""


@dataclass(frozen=True)
class Source:
    """One platform Apex receives webhooks from; `name` is its path in /api/webhooks/<name>."""

    name: str
    verify: Verifier
    extract: Extractor
    build_enricher: EnricherFactory
    # `verify` that also accepts the source's legacy signature schemes, used in its place when
    # the operator allows them (Settings.legacy_signatures, e.g. APEX_HUBSPOT_LEGACY_SIGNATURES).
    verify_legacy: Verifier | None = None
