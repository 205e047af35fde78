"""HubSpot: id-only events, one object and at most one property each."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from apex.pipeline.records import (
    Contact,
    Deal,
    Erasure,
    Identity,
    Record,
    normalise_email,
)
from apex.sources.reading import text, unique

_OBJECT_TYPE_IDS = {"0-1": "contact", "0-3": "deal"}
CONTACT_PROPERTIES = {
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
DEAL_PROPERTIES = {
    "dealstage": "stage",
    "amount": "amount",
    "deal_currency_code": "currency",
}


def hubspot_id(portal: object, object_id: str) -> str:
    """How a HubSpot object is named across portals: "portal-<portal>:<id>"."""
    return f"portal-{portal}:{object_id}" if portal is not None else object_id


def extract(event_type: str, payload: Any, received_at: datetime | None) -> list[Record]:
    events = payload if isinstance(payload, list) else [payload]
    return [record for event in events for record in _hubspot_event(event_type, event)]


def _hubspot_event(event_type: str, event: Any) -> list[Record]:
    if not isinstance(event, Mapping):
        raise ValueError("a HubSpot event must be a JSON object")
    subscription = text(event, "subscriptionType") or event_type
    object_type, _, action = subscription.partition(".")
    if object_type == "object":
        object_type = _OBJECT_TYPE_IDS.get(str(event.get("objectTypeId")), "")
    occurred = event.get("occurredAt")
    if isinstance(occurred, bool) or not isinstance(occurred, int):
        raise ValueError(f"HubSpot {subscription} event has no occurredAt")
    at = datetime.fromtimestamp(occurred / 1000, UTC)
    portal = event.get("portalId")
    if action == "associationChange":
        return _hubspot_association(event, portal, at)
    object_id = text(event, "objectId")
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
        name = CONTACT_PROPERTIES.get(str(event.get("propertyName")))
        if name is None:
            return []
        value = text(event, "propertyValue")
        if name != "email":
            return [Contact(subject, (subject,), at, ((name, value),))]
        email = normalise_email(value)
        linked = (Identity("email", email),) if email else ()
        return [Contact(subject, (subject, *linked), at, (("email", email),))]
    if action == "merge":
        portal = event.get("portalId")
        ids = [text(event, "newObjectId"), text(event, "primaryObjectId")]
        ids += [str(merged) for merged in event.get("mergedObjectIds") or []]
        merged = unique(Identity("hubspot", hubspot_id(portal, i)) for i in ids if i)
        return [Contact(merged[0] if merged else subject, unique((*merged, subject)), at)]
    if action in ("deletion", "privacyDeletion"):
        return [Erasure(subject, at)]
    return []


def _hubspot_deal(action: str, event: Mapping[str, Any], key: str, at: datetime) -> list[Record]:
    if action == "creation":
        return [Deal(key, at)]
    if action == "propertyChange":
        name = DEAL_PROPERTIES.get(str(event.get("propertyName")))
        if name is None:
            return []
        return [Deal(key, at, ((name, text(event, "propertyValue")),))]
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
    from_id, to_id = text(event, "fromObjectId"), text(event, "toObjectId")
    if from_id is None or to_id is None:
        raise ValueError("HubSpot association event without fromObjectId/toObjectId")
    contact_id, deal_id = (from_id, to_id) if sides[0] == "CONTACT" else (to_id, from_id)
    contact = Identity("hubspot", hubspot_id(portal, contact_id))
    removed = event.get("associationRemoved") is True
    deal = Deal(
        hubspot_id(portal, deal_id), at, ((f"contact:{contact.value}", None if removed else "1"),)
    )
    return [deal] if removed else [Contact(contact, (contact,), at), deal]
