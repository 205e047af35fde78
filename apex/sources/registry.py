"""The inbound sources Apex accepts, as data: adding one is a package and one line here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from apex.sources import github, hubspot, stripe
from apex.sources.source import Source

SOURCES: Mapping[str, Source] = MappingProxyType(
    {source.name: source for source in (stripe.SOURCE, github.SOURCE, hubspot.SOURCE)}
)
