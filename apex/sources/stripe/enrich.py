"""Stripe enrichment through the `stripe` package: customers known only by id get their email
and name; thin event notifications are fetched (the event, then the object it is about)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import requests
import stripe

from apex.pipeline.records import (
    Contact,
    Identity,
    Notification,
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
from apex.sources.source import UnusableEventError
from apex.sources.stripe.extract import extract, paid_by, thin_event

if TYPE_CHECKING:
    from config import Settings


class StripeCustomers:
    """Stripe customers by id and events by id, through the `stripe` package (its own retries
    off: ours apply)."""

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

        def customer() -> dict[str, Any] | None:
            found = self._client.v1.customers.retrieve(customer_id).to_dict()
            return None if found.get("deleted") else found

        return self._calls.cache.answer(
            ("stripe", customer_id),
            since.timestamp(),
            lambda: self._calls.retrying(what, lambda: self._attempt(what, customer)),
        )

    def invoice_payments(self, invoice_id: str, since: datetime) -> list[dict[str, Any]]:
        """The paid invoice_payment objects of an invoice (cached), [] when Stripe has none.
        Raises EnrichmentUnavailableError as get does."""
        what = f"stripe invoice_payments?invoice={invoice_id}"

        def listed() -> dict[str, Any]:
            found = self._client.v1.invoice_payments.list({"invoice": invoice_id, "status": "paid"})
            return {"data": [payment.to_dict() for payment in found.data]}

        answer = self._calls.cache.answer(
            ("stripe-invoice-payments", invoice_id),
            since.timestamp(),
            lambda: self._calls.retrying(what, lambda: self._attempt(what, listed)),
        )
        data = (answer or {}).get("data")
        return [payment for payment in data if isinstance(payment, dict)] if data else []

    def thin_event(self, event_id: str) -> Answer:
        """The snapshot event (extract.thin_event) a thin notification stands for: the v2 event
        `event_id`, and for a v1 event type the object it is about as Stripe has it now. None
        when Stripe has no such event (404). Raises UnusableEventError for a v2 event type
        (they are about objects Apex does not track), EnrichmentUnavailableError as get does."""
        what = f"stripe v2/core/events/{event_id}"

        def fetch() -> dict[str, Any]:
            event = self._client.v2.core.events.retrieve(event_id).to_dict()
            event_type = str(event.get("type") or "")
            url = (event.get("related_object") or {}).get("url")
            if not event_type.startswith("v1.") or not isinstance(url, str):
                raise UnusableEventError(
                    f"Stripe thin event {event_type or event_id} (fetched) is about no object "
                    "Apex tracks"
                )
            related = self._client.raw_request("get", url)
            obj = self._client.deserialize(related, api_mode="V1").to_dict()
            return thin_event(event_type, obj, event.get("created"))

        return self._calls.retrying(what, lambda: self._attempt(what, fetch))

    def _attempt(self, what: str, call: Callable[[], Answer]) -> Answer | Retry:
        try:
            return call()
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

    def close(self) -> None:
        self._session.close()


class StripeEnricher:
    """A Stripe customer known only by id (on a contact, payment, refund or checkout touch) gets
    its email and name; a thin notification is fetched and replaced by the records of the
    event it stands for (Notification.fetched), each enriched in turn."""

    def __init__(self, customers: StripeCustomers) -> None:
        self._customers = customers

    def __call__(self, record: Record) -> Record:
        if isinstance(record, Notification) and record.source == "stripe":
            return self._fetched(record)
        if isinstance(record, Contact) and record.subject.kind == "stripe":
            return self._customer(record)
        if isinstance(record, Payment) and _unlinked_invoice(record):
            record = self._linked(record)
        if isinstance(record, Payment | Refund | Touchpoint):
            return self._payer(record)
        return record

    def close(self) -> None:
        self._customers.close()

    def _fetched(self, record: Notification) -> Notification:
        """Raises UnusableEventError when Stripe no longer has the event, or it is about
        nothing Apex reads (see extract)."""
        event = self._customers.thin_event(record.event_id)
        if event is None:
            raise UnusableEventError(
                f"Stripe has no event {record.event_id}, or not its object, any more"
            )
        records = extract(str(event["type"]), event, None)
        return replace(record, fetched=tuple(self(fetched) for fetched in records))

    def _linked(self, record: Payment) -> Payment:
        """An invoice paid in one payment, counted under the intent (or charge) that paid it,
        as invoice_payment.paid would link it; with several, left to those events."""
        invoice_id = record.key.removeprefix("stripe:")
        paid = self._customers.invoice_payments(invoice_id, record.at)
        keys = [paid_by(payment) for payment in paid]
        if len(keys) != 1 or keys[0] is None:
            return record
        return replace(record, key=keys[0], aliases=(record.key,))

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


def _unlinked_invoice(record: Payment) -> bool:
    """A payment counted under its invoice: the invoice (from basil) named no payment."""
    return record.key.startswith("stripe:in_") and not record.aliases


def build(settings: Settings, calls: Calls) -> StripeEnricher | None:
    """An enricher when STRIPE_API_KEY is set (against STRIPE_API_BASE), else None."""
    if not settings.stripe_api_key:
        return None
    return StripeEnricher(StripeCustomers(settings.stripe_api_key, settings.stripe_api_base, calls))
