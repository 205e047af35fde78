"""Stripe enrichment: customers known only by id completed through the `stripe` package."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

import requests
import stripe

from apex.pipeline.records import (
    Contact,
    Identity,
    Payment,
    Record,
    Refund,
    Touchpoint,
    normalise_email,
)
from apex.sources.enrichment import (
    Answer,
    Calls,
    EnrichmentUnavailableError,
    Retry,
    clean_text,
    completed,
    requested_wait,
)

if TYPE_CHECKING:
    from config import Settings


class StripeCustomers:
    """Stripe customers by id, through the `stripe` package (its own retries off: ours apply)."""

    def __init__(self, api_key: str, base: str, calls: Calls) -> None:
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

    def _attempt(self, what: str, customer_id: str) -> Answer | Retry:
        try:
            customer = self._client.v1.customers.retrieve(customer_id).to_dict()
        except stripe.APIConnectionError as exc:
            return Retry(type(exc).__name__)
        except stripe.StripeError as exc:
            status = exc.http_status or 0
            if status == 404:
                return None
            if status in (409, 429) or status >= 500:
                return Retry(
                    f"HTTP {status}", requested_wait(exc.headers or {}, self._calls.clock())
                )
            raise EnrichmentUnavailableError(f"{what}: HTTP {status}") from None
        return None if customer.get("deleted") else customer

    def close(self) -> None:
        self._session.close()


class StripeEnricher:
    """A Stripe customer known only by id (on a contact, payment, refund or checkout touch) gets
    its email and name."""

    def __init__(self, customers: StripeCustomers) -> None:
        self._customers = customers

    def __call__(self, record: Record) -> Record:
        if isinstance(record, Contact) and record.subject.kind == "stripe":
            return self._customer(record)
        if isinstance(record, Payment | Refund | Touchpoint):
            return self._payer(record)
        return record

    def close(self) -> None:
        self._customers.close()

    def _customer(self, record: Contact) -> Contact:
        if any(identity.kind == "email" for identity in record.identities):
            return record
        customer = self._customers.get(record.subject.value, record.at) or {}
        return completed(
            record, [(name, clean_text(customer.get(name))) for name in ("email", "name")]
        )

    def _payer(self, record: Payment | Refund | Touchpoint) -> Payment | Refund | Touchpoint:
        kinds = {identity.kind: identity.value for identity in record.identities}
        if "email" in kinds or "stripe" not in kinds:
            return record
        email = normalise_email(
            (self._customers.get(kinds["stripe"], record.at) or {}).get("email")
        )
        if email is None:
            return record
        return replace(record, identities=(*record.identities, Identity("email", email)))


def build(settings: Settings, calls: Calls) -> StripeEnricher | None:
    """An enricher when STRIPE_API_KEY is set (against STRIPE_API_BASE), else None."""
    if not settings.stripe_api_key:
        return None
    return StripeEnricher(StripeCustomers(settings.stripe_api_key, settings.stripe_api_base, calls))
