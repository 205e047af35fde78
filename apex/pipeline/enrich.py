"""Enrichment: completing records from the sources' APIs, each source's enricher in turn."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from apex.pipeline.records import Record
from apex.sources.enrichment import (
    CACHE_SECONDS,
    CACHE_SIZE,
    Cache,
    Calls,
    RetryPolicy,
    SourceEnricher,
)
from apex.sources.registry import SOURCES

if TYPE_CHECKING:  # the settings are handed in; the domain does not load them
    from config import Settings


class Enricher:
    """Completes records from the APIs configured; run()'s `enrich`.

    What a record states itself wins over what an API says, and an added property is dated as
    the record is: the answer used is never older than the record (a cached one fetched before
    it is fetched again), so it never passes stale values off as news. Records an API knows
    nothing of (404) come back unchanged.

    Raises EnrichmentUnavailableError when an API fails beyond the retry policy; never any
    other exception for an API's answer.
    """

    def __init__(self, enrichers: Sequence[SourceEnricher]) -> None:
        self._enrichers = tuple(enrichers)

    def __call__(self, record: Record) -> Record:
        for enrich in self._enrichers:
            record = enrich(record)
        return record

    def close(self) -> None:
        """Close the HTTP connections (the worker keeps one Enricher for its lifetime)."""
        for enrich in self._enrichers:
            enrich.close()


def build_enricher(
    settings: Settings,
    *,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> Enricher | None:
    """An Enricher for the sources with credentials in `settings` (HUBSPOT_ACCESS_TOKEN,
    STRIPE_API_KEY, GITHUB_TOKEN, each against its *_API_BASE), or None when there are none.
    Timeouts are settings.connect_timeout to connect and settings.request_timeout to read; answers
    are cached CACHE_SECONDS per process. `clock` tells Unix time (rate-limit resets are Unix
    times). Build one per process: it holds connection pools."""
    calls = Calls(
        timeout=(settings.connect_timeout, settings.request_timeout),
        policy=policy or RetryPolicy(),
        cache=Cache(CACHE_SECONDS, CACHE_SIZE, clock),
        sleep=sleep,
        clock=clock,
    )
    built = [source.build_enricher(settings, calls) for source in SOURCES.values()]
    enrichers = [enricher for enricher in built if enricher is not None]
    return Enricher(enrichers) if enrichers else None
