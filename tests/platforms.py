"""Stripe, GitHub and HubSpot as the tests see them: their webhooks signed as each platform signs
them, and their payloads, as the inbound receivers store them. Shared by the test modules so
no test keeps its own copy of a signing scheme or a payload shape."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
import uuid
from typing import Any

import stripe as stripe_sdk

STRIPE_SECRET = "whsec_inbound_test_secret"
GITHUB_SECRET = "github-inbound-test-secret"
HUBSPOT_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
HUBSPOT_LOCAL_URL = "http://localhost/api/webhooks/hubspot"  # as the Flask test client serves it

PORTAL = 48120977
JANE = "jane.doe@acme.io"
_ids = itertools.count(1000)  # HubSpot event ids and Stripe event ids, unique per test session


def body(payload: Any) -> bytes:
    """The request body a platform sends for `payload`."""
    return json.dumps(payload).encode()


# --- signing, as each platform does it ------------------------------------------------------


def stripe_headers(
    data: bytes, secret: str = STRIPE_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    header = stripe_sdk.WebhookSignature.generate_signature_header(
        data.decode(), secret, timestamp=int(time.time()) if timestamp is None else timestamp
    )
    return {"Content-Type": "application/json", "Stripe-Signature": header}


def github_headers(
    data: bytes,
    secret: str = GITHUB_SECRET,
    event: str = "issues",
    delivery: str | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    digest = hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "4242",
    }


def hubspot_v3_headers(
    data: bytes,
    url: str = HUBSPOT_LOCAL_URL,
    secret: str = HUBSPOT_SECRET,
    timestamp_ms: int | None = None,
) -> dict[str, str]:
    timestamp = str(int(time.time() * 1000) if timestamp_ms is None else timestamp_ms)
    message = f"POST{url}".encode() + data + timestamp.encode()
    signature = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest())
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": signature.decode(),
        "X-HubSpot-Request-Timestamp": timestamp,
    }


def hubspot_v1_headers(data: bytes, secret: str = HUBSPOT_SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature": hashlib.sha256(secret.encode() + data).hexdigest(),
        "X-HubSpot-Signature-Version": "v1",
    }


# --- HubSpot: arrays of id-only events ------------------------------------------------------


def hubspot(subscription: str, object_id: int, at_ms: int, **fields: Any) -> dict[str, Any]:
    """One event of a HubSpot batch; `fields` add to or override the defaults."""
    return {
        "eventId": next(_ids),
        "subscriptionId": 2841002,
        "portalId": PORTAL,
        "appId": 3310452,
        "occurredAt": at_ms,
        "subscriptionType": subscription,
        "attemptNumber": 0,
        "objectId": object_id,
        **fields,
    }


def hubspot_property(object_id: int, at_ms: int, name: str, value: str) -> dict[str, Any]:
    return hubspot(
        "contact.propertyChange", object_id, at_ms, propertyName=name, propertyValue=value
    )


def hubspot_body(*event_ids: int) -> bytes:
    """A batch of contact creations by event id (default: one), as HubSpot posts it."""
    return body(
        [
            hubspot(
                "contact.creation",
                90210554101 + event_id,
                1764165600123,
                eventId=event_id,
                subscriptionId=2841001,
                changeFlag="CREATED",
                changeSource="FORM",
            )
            for event_id in event_ids or (4082117301,)
        ]
    )


# --- Stripe: events around one object -------------------------------------------------------


def stripe(
    event_type: str, obj: dict[str, Any], created: int = 1764252000, **fields: Any
) -> dict[str, Any]:
    """A Stripe event about `obj`; `fields` add to or override the defaults (e.g. `id`)."""
    return {
        "id": f"evt_{next(_ids)}",
        "object": "event",
        "created": created,
        "type": event_type,
        "data": {"object": obj},
        **fields,
    }


def stripe_body(event_id: str = "evt_1SAbcCustCreated01", **overrides: Any) -> bytes:
    """A customer.created event as Stripe posts it now."""
    customer = {"id": "cus_T1", "object": "customer", "email": "jane@acme.io"}
    event = stripe(
        "customer.created",
        customer,
        int(time.time()),
        id=event_id,
        api_version="2026-10-28.endive",
        livemode=False,
    )
    event.update(overrides)
    return body(event)


def checkout(email: str = JANE, intent: str = "pi_1", amount: int = 4900) -> dict[str, Any]:
    return {
        "id": f"cs_{intent}",
        "object": "checkout.session",
        "amount_total": amount,
        "created": 1764251900,
        "currency": "usd",
        "customer": "cus_jane",
        "customer_details": {"email": email, "name": "Jane Doe"},
        "metadata": {},
        "mode": "payment",
        "payment_intent": intent,
        "payment_status": "paid",
    }


def charge(intent: str = "pi_1", amount: int = 4900, refunded: int = 0) -> dict[str, Any]:
    return {
        "id": f"ch_{intent}",
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "billing_details": {"email": JANE, "name": "Jane Doe"},
        "created": 1764251990,
        "currency": "usd",
        "customer": "cus_jane",
        "paid": True,
        "payment_intent": intent,
        "status": "succeeded",
    }


def intent_succeeded(
    intent: str = "pi_1",
    amount: int = 4900,
    customer: str | None = "cus_jane",
    receipt_email: str | None = None,
) -> dict[str, Any]:
    """A succeeded payment intent; without a `customer`, only `receipt_email` names the payer."""
    fields = {
        "id": intent,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "currency": "usd",
        "customer": customer,
        "receipt_email": receipt_email,
        "status": "succeeded",
    }
    return {name: value for name, value in fields.items() if value is not None}


# --- GitHub: activity by `sender` -----------------------------------------------------------


def github_body(action: str = "opened") -> bytes:
    """An issues event by octocat."""
    sender = {"login": "octocat", "id": 1, "type": "User"}
    return body({"action": action, "sender": sender, "repository": {"id": 7}})


def star(
    user_id: int = 41234567,
    email: str | None = JANE,
    starred_at: str = "2025-11-28T10:00:00Z",
    repository: str = "acme-labs/widget",
) -> dict[str, Any]:
    """A star event by user `user_id` (login `user<id>`), their email in the payload if given, on
    the repository named `repository` (its full name: the touch's campaign)."""
    sender: dict[str, Any] = {"login": f"user{user_id}", "id": user_id, "type": "User"}
    if email:
        sender["email"] = email
    return {
        "action": "created",
        "starred_at": starred_at,
        "repository": {"id": 812345001, "full_name": repository},
        "sender": sender,
    }
