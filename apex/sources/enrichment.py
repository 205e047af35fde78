"""What the sources' enrichers share: API clients with timeouts, retries and a cache, and the
rules for merging an API's answer into a record."""

from __future__ import annotations

import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import requests

from apex.pipeline.records import Contact, Identity, Property, Record, normalise_email

log = logging.getLogger("apex.sources.enrichment")

Answer = Mapping[str, Any] | None
"""An API's JSON object for one id; None when the API knows nothing of it (404, deleted)."""

CACHE_SECONDS = 300.0
CACHE_SIZE = 4096
USER_AGENT = "apex-webhooks"


class EnrichmentUnavailableError(Exception):
    """A source's API could not answer now (down, rate-limited, refusing our credentials), so a
    record cannot be completed: process the event again later. `retry_after` is the wait in
    seconds the API asked for, when it said."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one lookup tries within a job before leaving it to the job's own backoff."""

    retries: int = 3  # after the first attempt
    first_delay: float = 0.5  # seconds; doubles per retry, with jitter
    max_wait: float = 10.0  # a longer wait asked for by the API is not waited out in the job
    budget: float = 20.0  # seconds one lookup may spend before it starts another attempt

    def delay(self, retry: int) -> float:
        """The backoff before retry number `retry` (0-based): half to all of first_delay·2^n."""
        return self.first_delay * 2**retry * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Retry:
    """An attempt that may succeed later: why, and the wait the API asked for (if it did)."""

    reason: str
    wait: float | None = None


def requested_wait(headers: Mapping[str, str], now: float) -> float | None:
    """The seconds an API asked us to wait (Retry-After, GitHub's X-RateLimit-Reset once
    X-RateLimit-Remaining is 0, HubSpot's X-HubSpot-RateLimit-* once spent), or None."""
    lowered = {name.lower(): value.strip() for name, value in headers.items()}
    retry_after = lowered.get("retry-after")
    if retry_after:
        if retry_after.isdigit():
            return float(retry_after)
        try:
            return max(0.0, parsedate_to_datetime(retry_after).timestamp() - now)
        except (TypeError, ValueError):
            pass
    reset = lowered.get("x-ratelimit-reset", "")
    if lowered.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        return max(0.0, int(reset) - now)
    if lowered.get("x-hubspot-ratelimit-secondly-remaining") == "0":
        return 1.0
    interval = lowered.get("x-hubspot-ratelimit-interval-milliseconds", "")
    if lowered.get("x-hubspot-ratelimit-remaining") == "0" and interval.isdigit():
        return int(interval) / 1000
    return None


class Cache:
    """Recent answers, "nothing to add" included: each kept `ttl` seconds, at most `size`."""

    def __init__(self, ttl: float, size: int, clock: Callable[[], float]) -> None:
        self._ttl, self._size, self._clock = ttl, size, clock
        self._entries: OrderedDict[tuple[str, ...], tuple[float, Answer]] = OrderedDict()
        self._lock = threading.Lock()

    def answer(self, key: tuple[str, ...], since: float, fetch: Callable[[], Answer]) -> Answer:
        """The answer for `key` fetched at or after `since` (a Unix time) and less than `ttl`
        ago, else what `fetch` answers now. An older answer could predate the record it
        completes, and would then date stale values as if they were current."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and since <= entry[0] and self._clock() < entry[0] + self._ttl:
                self._entries.move_to_end(key)
                return entry[1]
        fetched_at = self._clock()
        value = fetch()  # outside the lock: a slow API must not hold up other lookups
        with self._lock:
            self._entries[key] = (fetched_at, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return value


@dataclass(frozen=True)
class Calls:
    """What every API client shares: timeouts, retry policy, cache, and the clock."""

    timeout: tuple[float, float]
    policy: RetryPolicy
    cache: Cache
    sleep: Callable[[float], None]
    clock: Callable[[], float]

    def retrying(self, what: str, attempt: Callable[[], Answer | Retry]) -> Answer:
        """What `attempt` answers, retried per the policy while it answers Retry; raises
        EnrichmentUnavailableError once the policy is spent or the API asks for a longer wait."""
        started = self.clock()
        for retry in range(self.policy.retries + 1):
            outcome = attempt()
            if not isinstance(outcome, Retry):
                return outcome
            delay = outcome.wait if outcome.wait is not None else self.policy.delay(retry)
            spent = self.clock() - started
            if (
                retry == self.policy.retries
                or delay > self.policy.max_wait
                or spent + delay > self.policy.budget
            ):
                raise EnrichmentUnavailableError(
                    f"{what}: {outcome.reason} after {retry + 1} attempts", outcome.wait
                )
            log.warning(
                "enrich: %s: %s; retry %d in %.1f s", what, outcome.reason, retry + 1, delay
            )
            self.sleep(delay)
        raise AssertionError("unreachable")


class JsonApi:
    """GETs of JSON objects from one API base with a bearer token (HubSpot's, GitHub's)."""

    def __init__(self, name: str, base: str, headers: Mapping[str, str], calls: Calls) -> None:
        self.name = name
        self._base = base.rstrip("/")
        self._calls = calls
        self._session = requests.Session()
        self._session.headers.update({"User-Agent": USER_AGENT, **headers})

    def get(self, path: str, since: datetime, params: Mapping[str, str] | None = None) -> Answer:
        """The object at `path` as of `since` or later (cached), or None on 404. Retries
        connection errors, 429 and 5xx per the policy; raises EnrichmentUnavailableError when
        they persist, or at once on any other error status."""
        what = f"{self.name} {path}"
        return self._calls.cache.answer(
            (self.name, path),
            since.timestamp(),
            lambda: self._calls.retrying(what, lambda: self._attempt(what, path, params)),
        )

    def _attempt(self, what: str, path: str, params: Mapping[str, str] | None) -> Answer | Retry:
        try:
            response = self._session.get(
                f"{self._base}/{path}", params=params, timeout=self._calls.timeout
            )
        except requests.RequestException as exc:  # refused, reset, timed out
            return Retry(type(exc).__name__)
        status = response.status_code
        if status == 404:
            return None
        if 200 <= status < 300:
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, Mapping):
                raise EnrichmentUnavailableError(f"{what}: HTTP {status} without a JSON object")
            return body
        wait = requested_wait(response.headers, self._calls.clock())
        if status == 429 or status >= 500 or (status == 403 and wait is not None):
            return Retry(f"HTTP {status}", wait)  # GitHub's rate limits answer 403 too
        raise EnrichmentUnavailableError(f"{what}: HTTP {status}")

    def close(self) -> None:
        self._session.close()


class SourceEnricher(Protocol):
    """One source's enricher: completes the records it knows (returns others unchanged)."""

    def __call__(self, record: Record) -> Record: ...

    def close(self) -> None: ...


def clean_text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def new_properties(
    stated: Iterable[Property], found: Iterable[tuple[str, Any]]
) -> tuple[Property, ...]:
    """The properties found with a value that the record does not state itself."""
    names = {name for name, _ in stated}
    return tuple(
        (name, text) for name, value in found if name not in names and (text := clean_text(value))
    )


def completed(record: Contact, found: Iterable[tuple[str, Any]]) -> Contact:
    """`record` with the properties found that it lacks, the email found also as an identity."""
    found = [(name, normalise_email(v) if name == "email" else v) for name, v in found]
    added = new_properties(record.properties, found)
    email = Identity("email", value) if (value := dict(added).get("email")) else None
    linked = (email,) if email is not None and email not in record.identities else ()
    if not added and not linked:
        return record
    return replace(
        record, identities=record.identities + linked, properties=record.properties + added
    )
