"""Enrichment: completing records from the sources' APIs (HubSpot CRM, Stripe, GitHub users)."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests
import stripe

from apex.pipeline.extract import HUBSPOT_CONTACT_PROPERTIES, HUBSPOT_DEAL_PROPERTIES
from apex.pipeline.records import (
    Contact,
    Deal,
    Identity,
    Payment,
    Property,
    Record,
    Refund,
    Touchpoint,
    normalise_email,
)

if TYPE_CHECKING:  # the settings are handed in; the domain does not load them
    from config import Settings

log = logging.getLogger("apex.pipeline.enrich")

Answer = Mapping[str, Any] | None
"""An API's JSON object for one id; None when the API knows nothing of it (404, deleted)."""

CACHE_SECONDS = 300.0
CACHE_SIZE = 4096
USER_AGENT = "apex-webhooks"

_GITHUB_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_GITHUB_PROPERTIES = ("name", "company")


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
class _Retry:
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


class _Cache:
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
class _Calls:
    """What every API client shares: timeouts, retry policy, cache, and the clock."""

    timeout: tuple[float, float]
    policy: RetryPolicy
    cache: _Cache
    sleep: Callable[[float], None]
    clock: Callable[[], float]

    def retrying(self, what: str, attempt: Callable[[], Answer | _Retry]) -> Answer:
        """What `attempt` answers, retried per the policy while it answers _Retry; raises
        EnrichmentUnavailableError once the policy is spent or the API asks for a longer wait."""
        started = self.clock()
        for retry in range(self.policy.retries + 1):
            outcome = attempt()
            if not isinstance(outcome, _Retry):
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

    def __init__(self, name: str, base: str, headers: Mapping[str, str], calls: _Calls) -> None:
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

    def _attempt(self, what: str, path: str, params: Mapping[str, str] | None) -> Answer | _Retry:
        try:
            response = self._session.get(
                f"{self._base}/{path}", params=params, timeout=self._calls.timeout
            )
        except requests.RequestException as exc:  # refused, reset, timed out
            return _Retry(type(exc).__name__)
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
            return _Retry(f"HTTP {status}", wait)  # GitHub's rate limits answer 403 too
        raise EnrichmentUnavailableError(f"{what}: HTTP {status}")

    def close(self) -> None:
        self._session.close()


class StripeCustomers:
    """Stripe customers by id, through the `stripe` package (its own retries off: ours apply)."""

    def __init__(self, api_key: str, base: str, calls: _Calls) -> None:
        self._calls = calls
        self._session = requests.Session()
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": base},
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=calls.timeout, session=self._session),
        )

    def get(self, customer_id: str, since: datetime) -> Answer:
        """The customer as of `since` or later (cached), or None when Stripe has none or it was
        deleted. Raises EnrichmentUnavailableError as JsonApi.get does."""
        what = f"stripe customers/{customer_id}"
        return self._calls.cache.answer(
            ("stripe", customer_id),
            since.timestamp(),
            lambda: self._calls.retrying(what, lambda: self._attempt(what, customer_id)),
        )

    def _attempt(self, what: str, customer_id: str) -> Answer | _Retry:
        try:
            customer = self._client.v1.customers.retrieve(customer_id).to_dict()
        except stripe.APIConnectionError as exc:
            return _Retry(type(exc).__name__)
        except stripe.StripeError as exc:
            status = exc.http_status or 0
            if status == 404:
                return None
            if status in (409, 429) or status >= 500:
                return _Retry(
                    f"HTTP {status}", requested_wait(exc.headers or {}, self._calls.clock())
                )
            raise EnrichmentUnavailableError(f"{what}: HTTP {status}") from None
        return None if customer.get("deleted") else customer

    def close(self) -> None:
        self._session.close()


class Enricher:
    """Completes records from the APIs configured; run()'s `enrich`.

    HubSpot contacts get their email, name, company, lifecycle stage, analytics source and UTM
    properties; HubSpot deals their stage, amount and currency; a Stripe customer known only by
    id (on a contact, payment, refund or checkout) its email and name; a GitHub user their
    public email, name and company. What a record states itself wins over what an API says, and
    an added property is dated as the record is: the answer used is never older than the record
    (a cached one fetched before it is fetched again), so it never passes stale values off as
    news. Records an API knows nothing of (404) come back unchanged.

    Raises EnrichmentUnavailableError when an API fails beyond the retry policy; never any
    other exception for an API's answer.
    """

    def __init__(
        self,
        hubspot: JsonApi | None = None,
        stripe_customers: StripeCustomers | None = None,
        github: JsonApi | None = None,
    ) -> None:
        self._hubspot = hubspot
        self._stripe = stripe_customers
        self._github = github

    def __call__(self, record: Record) -> Record:
        if isinstance(record, Contact):
            kind = record.subject.kind
            if kind == "hubspot" and self._hubspot is not None:
                return self._hubspot_contact(self._hubspot, record)
            if kind == "github" and self._github is not None:
                return self._github_user(self._github, record)
            if kind == "stripe" and self._stripe is not None:
                return self._stripe_customer(self._stripe, record)
        if isinstance(record, Deal) and self._hubspot is not None:
            return self._hubspot_deal(self._hubspot, record)
        if isinstance(record, Payment | Refund | Touchpoint) and self._stripe is not None:
            return self._stripe_payer(self._stripe, record)
        return record

    def close(self) -> None:
        """Close the HTTP connections (the worker keeps one Enricher for its lifetime)."""
        for api in (self._hubspot, self._stripe, self._github):
            if api is not None:
                api.close()

    def _hubspot_contact(self, api: JsonApi, record: Contact) -> Contact:
        object_id = _hubspot_object_id(record.subject.value)
        if object_id is None:
            return record
        params = {"properties": ",".join(HUBSPOT_CONTACT_PROPERTIES)}
        found = _properties(api.get(f"crm/v3/objects/contacts/{object_id}", record.at, params))
        stated = [(ours, found.get(theirs)) for theirs, ours in HUBSPOT_CONTACT_PROPERTIES.items()]
        return _completed(record, stated)

    def _hubspot_deal(self, api: JsonApi, record: Deal) -> Deal:
        object_id = _hubspot_object_id(record.key)
        if object_id is None:
            return record
        params = {"properties": ",".join(HUBSPOT_DEAL_PROPERTIES)}
        found = _properties(api.get(f"crm/v3/objects/deals/{object_id}", record.at, params))
        added = _new_properties(
            record.properties,
            [(ours, found.get(theirs)) for theirs, ours in HUBSPOT_DEAL_PROPERTIES.items()],
        )
        return replace(record, properties=record.properties + added) if added else record

    def _github_user(self, api: JsonApi, record: Contact) -> Contact:
        login = dict(record.properties).get("login")
        if not login or not _GITHUB_LOGIN.fullmatch(login):
            return record
        user = api.get(f"users/{quote(login, safe='')}", record.at) or {}
        email = _text(user.get("email"))
        if email and email.partition("@")[2].endswith("noreply.github.com"):
            email = None
        stated = [(name, _text(user.get(name))) for name in _GITHUB_PROPERTIES]
        return _completed(record, [("email", email), *stated])

    def _stripe_customer(self, api: StripeCustomers, record: Contact) -> Contact:
        if any(identity.kind == "email" for identity in record.identities):
            return record
        customer = api.get(record.subject.value, record.at) or {}
        stated = [(name, _text(customer.get(name))) for name in ("email", "name")]
        return _completed(record, stated)

    def _stripe_payer(
        self, api: StripeCustomers, record: Payment | Refund | Touchpoint
    ) -> Payment | Refund | Touchpoint:
        kinds = {identity.kind: identity.value for identity in record.identities}
        if "email" in kinds or "stripe" not in kinds:
            return record
        email = normalise_email((api.get(kinds["stripe"], record.at) or {}).get("email"))
        if email is None:
            return record
        return replace(record, identities=(*record.identities, Identity("email", email)))


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
    calls = _Calls(
        timeout=(settings.connect_timeout, settings.request_timeout),
        policy=policy or RetryPolicy(),
        cache=_Cache(CACHE_SECONDS, CACHE_SIZE, clock),
        sleep=sleep,
        clock=clock,
    )
    hubspot = github = None
    if settings.hubspot_access_token:
        token = settings.hubspot_access_token
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        hubspot = JsonApi("hubspot", settings.hubspot_api_base, headers, calls)
    if settings.github_token:
        headers = {
            "Authorization": f"Bearer {settings.github_token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        github = JsonApi("github", settings.github_api_base, headers, calls)
    customers = None
    if settings.stripe_api_key:
        customers = StripeCustomers(settings.stripe_api_key, settings.stripe_api_base, calls)
    if hubspot is None and github is None and customers is None:
        return None
    return Enricher(hubspot, customers, github)


# --- merging an answer into a record -------------------------------------------------------


def _hubspot_object_id(value: str) -> str | None:
    """The object id of a HubSpot name ("portal-<portal>:<id>" or "<id>"), if it is one."""
    object_id = value.rpartition(":")[2]
    return object_id if object_id.isdigit() else None


def _properties(answer: Answer) -> Mapping[str, Any]:
    found = (answer or {}).get("properties")
    return found if isinstance(found, Mapping) else {}


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _new_properties(
    stated: Iterable[Property], found: Iterable[tuple[str, Any]]
) -> tuple[Property, ...]:
    """The properties found with a value that the record does not state itself."""
    names = {name for name, _ in stated}
    return tuple(
        (name, text) for name, value in found if name not in names and (text := _text(value))
    )


def _completed(record: Contact, found: Iterable[tuple[str, Any]]) -> Contact:
    """`record` with the properties found that it lacks, the email found also as an identity."""
    found = [(name, normalise_email(v) if name == "email" else v) for name, v in found]
    added = _new_properties(record.properties, found)
    email = Identity("email", value) if (value := dict(added).get("email")) else None
    linked = (email,) if email is not None and email not in record.identities else ()
    if not added and not linked:
        return record
    return replace(
        record, identities=record.identities + linked, properties=record.properties + added
    )
