"""extract(): the normalised records one inbound HubSpot, Stripe or GitHub event carries. Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from apex.pipeline.records import (
    Contact,
    Deal,
    Erasure,
    Identity,
    Payment,
    Property,
    Record,
    Refund,
    Touchpoint,
    currency_code,
    normalise_email,
)

Extractor = Callable[[str, Any, datetime | None], list[Record]]


def extract(
    source: str,
    event_type: str,
    payload: Any,
    headers: Mapping[str, str],
    received_at: datetime | None = None,
) -> list[Record]:
    """The records an inbound event carries, in the order they should be applied.

    `payload` is the stored JSON: a Stripe event, a GitHub payload, or one HubSpot event (a list
    of them is accepted too). `headers` are the stored ones (unused today: the type says it all).
    `received_at` dates what carries no time of its own (a GitHub `watch`). Events the pipeline
    has no use for give []. Raises ValueError for an unknown source or a payload without the shape
    its source promises (a Stripe event without data.object, a HubSpot event without objectId or
    occurredAt, an undated GitHub event when `received_at` is None).
    """
    extractor = _EXTRACTORS.get(source)
    if extractor is None:
        raise ValueError(f"unknown inbound source {source!r}")
    return extractor(event_type, payload, received_at)


# --- reading JSON --------------------------------------------------------------------------


def _get(data: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(name)
    return data


def _text(data: Any, *path: str) -> str | None:
    """A non-empty string (numbers as their digits) at `path`, else None."""
    value = _get(data, *path)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _amount(data: Any, *names: str) -> int | None:
    """The first positive integer among the fields `names`, else None."""
    for name in names:
        value = _get(data, name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _unix(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None


def _dated(at: datetime | None, received_at: datetime | None, what: str) -> datetime:
    if at is not None:
        return at
    if received_at is not None:
        return received_at
    raise ValueError(f"{what} carries no time and none was given")


def _unique(values: Iterable[Identity]) -> tuple[Identity, ...]:
    return tuple(dict.fromkeys(values))


# --- HubSpot: id-only events, one object and at most one property each -----------------------

_HUBSPOT_OBJECT_TYPE_IDS = {"0-1": "contact", "0-3": "deal"}
HUBSPOT_CONTACT_PROPERTIES = {
    "email": "email",
    "firstname": "first_name",
    "lastname": "last_name",
    "company": "company",
    "lifecyclestage": "lifecycle_stage",
    "hs_analytics_source": "analytics_source",
    "hs_analytics_source_data_1": "analytics_source_data_1",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
}
HUBSPOT_DEAL_PROPERTIES = {
    "dealstage": "stage",
    "amount": "amount",
    "deal_currency_code": "currency",
}


def hubspot_id(portal: object, object_id: str) -> str:
    """How a HubSpot object is named across portals: "portal-<portal>:<id>"."""
    return f"portal-{portal}:{object_id}" if portal is not None else object_id


def _hubspot(event_type: str, payload: Any, received_at: datetime | None) -> list[Record]:
    events = payload if isinstance(payload, list) else [payload]
    return [record for event in events for record in _hubspot_event(event_type, event)]


def _hubspot_event(event_type: str, event: Any) -> list[Record]:
    if not isinstance(event, Mapping):
        raise ValueError("a HubSpot event must be a JSON object")
    subscription = _text(event, "subscriptionType") or event_type
    object_type, _, action = subscription.partition(".")
    if object_type == "object":
        object_type = _HUBSPOT_OBJECT_TYPE_IDS.get(str(event.get("objectTypeId")), "")
    occurred = event.get("occurredAt")
    if isinstance(occurred, bool) or not isinstance(occurred, int):
        raise ValueError(f"HubSpot {subscription} event has no occurredAt")
    at = datetime.fromtimestamp(occurred / 1000, UTC)
    portal = event.get("portalId")
    if action == "associationChange":
        return _hubspot_association(event, portal, at)
    object_id = _text(event, "objectId")
    if object_id is None:
        raise ValueError(f"HubSpot {subscription} event has no objectId")
    if object_type == "contact":
        subject = Identity("hubspot", hubspot_id(portal, object_id))
        return _hubspot_contact(action, event, subject, at)
    if object_type == "deal":
        return _hubspot_deal(action, event, hubspot_id(portal, object_id), at)
    return []


def _hubspot_contact(
    action: str, event: Mapping[str, Any], subject: Identity, at: datetime
) -> list[Record]:
    if action == "creation":
        return [Contact(subject, (subject,), at, (("created", "hubspot"),))]
    if action == "propertyChange":
        name = HUBSPOT_CONTACT_PROPERTIES.get(str(event.get("propertyName")))
        if name is None:
            return []
        value = _text(event, "propertyValue")
        if name != "email":
            return [Contact(subject, (subject,), at, ((name, value),))]
        email = normalise_email(value)
        linked = (Identity("email", email),) if email else ()
        return [Contact(subject, (subject, *linked), at, (("email", email),))]
    if action == "merge":
        portal = event.get("portalId")
        ids = [_text(event, "newObjectId"), _text(event, "primaryObjectId")]
        ids += [str(merged) for merged in event.get("mergedObjectIds") or []]
        merged = _unique(Identity("hubspot", hubspot_id(portal, i)) for i in ids if i)
        return [Contact(merged[0] if merged else subject, _unique((*merged, subject)), at)]
    if action in ("deletion", "privacyDeletion"):
        return [Erasure(subject, at)]
    return []


def _hubspot_deal(action: str, event: Mapping[str, Any], key: str, at: datetime) -> list[Record]:
    if action == "creation":
        return [Deal(key, at)]
    if action == "propertyChange":
        name = HUBSPOT_DEAL_PROPERTIES.get(str(event.get("propertyName")))
        if name is None:
            return []
        return [Deal(key, at, ((name, _text(event, "propertyValue")),))]
    if action in ("deletion", "privacyDeletion"):
        return [Deal(key, at, (("deleted", "1"),))]
    if action == "restore":
        return [Deal(key, at, (("deleted", None),))]
    return []


def _hubspot_association(event: Mapping[str, Any], portal: object, at: datetime) -> list[Record]:
    # "DEAL_TO_CONTACT", "CONTACT_TO_DEAL", or with a label suffix ("CONTACT_TO_DEAL_UNLABELED").
    association = str(event.get("associationType", "")).upper()
    sides = [side.split("_")[0] for side in association.split("_TO_")]
    if sorted(sides) != ["CONTACT", "DEAL"]:
        return []
    from_id, to_id = _text(event, "fromObjectId"), _text(event, "toObjectId")
    if from_id is None or to_id is None:
        raise ValueError("HubSpot association event without fromObjectId/toObjectId")
    contact_id, deal_id = (from_id, to_id) if sides[0] == "CONTACT" else (to_id, from_id)
    contact = Identity("hubspot", hubspot_id(portal, contact_id))
    removed = event.get("associationRemoved") is True
    deal = Deal(
        hubspot_id(portal, deal_id), at, ((f"contact:{contact.value}", None if removed else "1"),)
    )
    return [deal] if removed else [Contact(contact, (contact,), at), deal]


# --- Stripe: one object per event; several events may describe one payment --------------------

_STRIPE_EMAILS = (
    ("email",),
    ("customer_details", "email"),
    ("customer_email",),
    ("billing_details", "email"),
    ("receipt_email",),
)
_STRIPE_NAMES = (("name",), ("customer_details", "name"), ("customer_name",))
_STRIPE_NAMES_OF_PAYERS = (*_STRIPE_NAMES, ("billing_details", "name"))
_UTM = ("utm_source", "utm_medium", "utm_campaign")


def _stripe(event_type: str, payload: Any, received_at: datetime | None) -> list[Record]:
    obj = _get(payload, "data", "object")
    if not isinstance(obj, Mapping):
        raise ValueError(f"Stripe event {event_type} has no data.object")
    handler = _STRIPE_HANDLERS.get(event_type)
    if handler is None:
        return []
    at = _dated(_unix(_get(payload, "created")), received_at, f"Stripe event {event_type}")
    return handler(obj, at)


def _ref(obj: Any, name: str) -> str | None:
    """A reference to another Stripe object: its id, or the id of the expanded object."""
    return _text(obj, name) if isinstance(_get(obj, name), str) else _text(obj, name, "id")


def _stripe_person(
    obj: Mapping[str, Any], at: datetime, customer: str | None, extra: tuple[Property, ...] = ()
) -> Contact | None:
    emails = [e for e in (normalise_email(_get(obj, *path)) for path in _STRIPE_EMAILS) if e]
    ids = [Identity("stripe", customer)] if customer else []
    linked = _unique([*ids, *(Identity("email", email) for email in emails)])
    if not linked:
        return None
    names = _STRIPE_NAMES if obj.get("object") == "customer" else _STRIPE_NAMES_OF_PAYERS
    name = next((n for n in (_text(obj, *path) for path in names) if n), None)
    properties: tuple[Property, ...] = (("email", emails[0]),) if emails else ()
    properties += (("name", name),) if name else ()
    return Contact(linked[0], linked, at, properties + extra)


def _stripe_customer(obj: Mapping[str, Any], at: datetime) -> list[Record]:
    metadata = obj.get("metadata")
    utm = tuple((name, _text(metadata, name)) for name in _UTM if _text(metadata, name))
    person = _stripe_person(obj, at, _text(obj, "id"), utm)
    return [person] if person else []


def _stripe_payment(
    obj: Mapping[str, Any], at: datetime, amount: int | None, refunded: int | None = None
) -> list[Record]:
    """The payer and the payment `obj` describes, keyed on its payment intent when there is one."""
    person = _stripe_person(obj, at, _ref(obj, "customer"))
    records: list[Record] = [person] if person else []
    currency = currency_code(_text(obj, "currency"))
    if currency is None:
        return records
    identities = person.identities if person else ()
    key = f"stripe:{_payment_intent(obj) or _text(obj, 'id')}"
    if amount is not None:
        records.append(Payment(key, identities, amount, currency, at))
    if refunded is not None:
        paid_at = _unix(obj.get("created")) or at
        records.append(Refund(key, identities, refunded, currency, at, paid_at))
    return records


def _payment_intent(obj: Mapping[str, Any]) -> str | None:
    intent = _ref(obj, "payment_intent")
    if intent is not None:
        return intent
    # Invoices of newer API versions name their payments in `payments` (when expanded).
    for payment in _get(obj, "payments", "data") or []:
        intent = _ref(_get(payment, "payment"), "payment_intent")
        if intent is not None:
            return intent
    return None


def _stripe_checkout(obj: Mapping[str, Any], at: datetime) -> list[Record]:
    # Subscription checkouts are paid by their invoice: invoice.paid counts that money.
    paid = obj.get("mode") == "payment" and obj.get("payment_status") == "paid"
    records = _stripe_payment(obj, at, _amount(obj, "amount_total") if paid else None)
    people = [r for r in records if isinstance(r, Contact)]
    if people:
        metadata = obj.get("metadata")
        records.append(
            Touchpoint(
                key=f"stripe:checkout:{_text(obj, 'id')}",
                identities=people[0].identities,
                source=_text(metadata, "utm_source") or "stripe",
                campaign=_text(metadata, "utm_campaign") or _text(metadata, "campaign"),
                at=_unix(obj.get("created")) or at,
            )
        )
    return records


def _stripe_intent(obj: Mapping[str, Any], at: datetime) -> list[Record]:
    return _stripe_payment(obj, at, _amount(obj, "amount_received", "amount"))


def _stripe_charge(obj: Mapping[str, Any], at: datetime) -> list[Record]:
    paid = obj.get("paid") is True or obj.get("status") == "succeeded"
    return _stripe_payment(obj, at, _amount(obj, "amount_captured", "amount") if paid else None)


def _stripe_refund(obj: Mapping[str, Any], at: datetime) -> list[Record]:
    paid = obj.get("paid") is True or obj.get("status") == "succeeded"
    amount = _amount(obj, "amount_captured", "amount") if paid else None
    return _stripe_payment(obj, at, amount, _amount(obj, "amount_refunded"))


def _stripe_invoice(obj: Mapping[str, Any], at: datetime) -> list[Record]:
    return _stripe_payment(obj, at, _amount(obj, "amount_paid"))


_STRIPE_HANDLERS: dict[str, Callable[[Mapping[str, Any], datetime], list[Record]]] = {
    "customer.created": _stripe_customer,
    "customer.updated": _stripe_customer,
    "checkout.session.completed": _stripe_checkout,
    "payment_intent.succeeded": _stripe_intent,
    "charge.succeeded": _stripe_charge,
    "invoice.paid": _stripe_invoice,
    "charge.refunded": _stripe_refund,
}


# --- GitHub: activity by `sender`; emails from push commit authors ---------------------------


def _is_noreply(email: str) -> bool:
    local, _, domain = email.partition("@")
    return domain.endswith("noreply.github.com") or local in ("noreply", "no-reply")


def _github_email(value: Any) -> str | None:
    email = normalise_email(value)
    return email if email and not _is_noreply(email) else None


def _github_person(user: Mapping[str, Any], at: datetime) -> Contact | None:
    user_id = _text(user, "id")
    if user_id is None or user.get("type") == "Bot":
        return None
    subject = Identity("github", user_id)
    email = _github_email(user.get("email"))
    properties: tuple[Property, ...] = tuple(
        (name, value)
        for name, value in (
            ("login", _text(user, "login")),
            ("name", _text(user, "name")),
            ("company", _text(user, "company")),
            ("email", email),
        )
        if value
    )
    linked = (subject, Identity("email", email)) if email else (subject,)
    return Contact(subject, linked, at, properties)


def _github_touch(event_type: str, payload: Mapping[str, Any]) -> tuple[str | None, Any] | None:
    """(touchpoint key or None, the event's time) of an activity, or None to ignore the event."""
    action = payload.get("action")
    if event_type in ("star", "watch"):  # one star fires both: one key
        if action not in ("created", "started"):
            return None
        user = _text(payload, "sender", "id")
        return f"github:star:{_text(payload, 'repository', 'id')}:{user}", payload.get("starred_at")
    if event_type == "fork":
        forkee = payload.get("forkee")
        return f"github:fork:{_text(forkee, 'id')}", _get(forkee, "created_at")
    if event_type in ("issues", "pull_request"):
        item = payload.get("issue" if event_type == "issues" else "pull_request")
        if action == "opened":
            return f"github:{event_type}:{_text(item, 'id')}", _get(item, "created_at")
        return None, _get(item, "updated_at")
    return None


def _github(event_type: str, payload: Any, received_at: datetime | None) -> list[Record]:
    if not isinstance(payload, Mapping):
        raise ValueError("a GitHub payload must be a JSON object")
    if event_type == "push":
        return _github_push(payload, received_at)
    activity = _github_touch(event_type, payload)
    sender = payload.get("sender")
    if activity is None or not isinstance(sender, Mapping):
        return []
    key, when = activity
    at = _dated(_iso(when), received_at, f"GitHub {event_type}")
    person = _github_person(sender, at)
    if person is None:
        return []
    if key is None:
        return [person]
    campaign = _text(payload, "repository", "full_name")
    return [person, Touchpoint(key, person.identities, "github", campaign, at)]


def _github_push(payload: Mapping[str, Any], received_at: datetime | None) -> list[Record]:
    """One contact per commit author email (noreply addresses skipped), linked to the sender's
    GitHub id when the author is the sender."""
    sender = payload.get("sender")
    login, sender_id = _text(sender, "login"), _text(sender, "id")
    pusher = Identity("github", sender_id) if sender_id and _get(sender, "type") != "Bot" else None
    at_default = _iso(_get(payload, "head_commit", "timestamp")) or received_at
    records: list[Record] = []
    seen: set[str] = set()
    for commit in payload.get("commits") or []:
        author = _get(commit, "author")
        email = _github_email(_get(author, "email"))
        if email is None or email in seen:
            continue
        seen.add(email)
        at = _dated(_iso(_get(commit, "timestamp")) or at_default, None, "GitHub push commit")
        linked: tuple[Identity, ...] = (Identity("email", email),)
        if pusher is not None and login and _text(author, "username") == login:
            linked += (pusher,)
        name = _text(author, "name")
        properties: tuple[Property, ...] = (("email", email),) + ((("name", name),) if name else ())
        records.append(Contact(linked[0], linked, at, properties))
    return records


_EXTRACTORS: dict[str, Extractor] = {
    "hubspot": _hubspot,
    "stripe": _stripe,
    "github": _github,
}
