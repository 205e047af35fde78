"""HubSpot: id-only events, one object and at most one property each; legacy `contact.*`,
`company.*`, `deal.*` subscriptions and generic `object.*` ones, `subscriptionType` or
`eventType`, association changes in both shapes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from apex.pipeline.records import (
    Company,
    Contact,
    Deal,
    Erasure,
    Identity,
    Property,
    Record,
    link,
    normalise_email,
)
from apex.sources.reading import text, unique
from apex.sources.source import UnusableEventError

# The CRM objects Apex tracks, by the objectTypeId generic (object.*) events carry.
OBJECT_TYPE_IDS = {"0-1": "contact", "0-2": "company", "0-3": "deal"}
TRACKED = frozenset(OBJECT_TYPE_IDS.values())
# Other object names legacy subscriptions and association types use, longest first so that
# LINE_ITEM is not read as LINE.
_ASSOCIATED_NAMES = ("LINE_ITEM", "CONTACT", "COMPANY", "DEAL", "TICKET", "PRODUCT", "QUOTE")
ERASED = "erased"  # identity.ERASED: the property that marks a contact deleted at its source

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
COMPANY_PROPERTIES = {"name": "name"}
_PROPERTIES = {
    "contact": CONTACT_PROPERTIES,
    "deal": DEAL_PROPERTIES,
    "company": COMPANY_PROPERTIES,
}

# HubSpot object ids are numbers; anything else (or absurdly long) names no object we can use.
_OBJECT_ID = re.compile(r"[0-9A-Za-z_-]{1,40}")
# An association's label as kept in a property name, and the width of object_properties.name:
# a link whose labelled name would not fit is kept unlabelled.
_LABEL = re.compile(r"[0-9A-Za-z_/-]{1,60}")
_NAME_WIDTH = 100
# HubSpot-defined association types come in pairs, one per direction (company to contact 280
# is contact to company 279): one association, whichever side's event tells of it.
_REVERSE_TYPE_IDS = {"2": "1", "4": "3", "6": "5", "280": "279", "342": "341"}
# occurredAt in milliseconds: from 2000 to 2100, anything else is not a time HubSpot sends.
_EARLIEST_MS, _LATEST_MS = 946_684_800_000, 4_102_444_800_000


def hubspot_id(portal: object, object_id: str) -> str:
    """How a HubSpot object is named across portals: "portal-<portal>:<id>"."""
    return f"portal-{portal}:{object_id}" if portal is not None else object_id


def extract(event_type: str, payload: Any, received_at: datetime | None) -> list[Record]:
    """The records of one stored HubSpot event (or of each event of a batch), in order.

    Raises UnusableEventError when it carries nothing Apex uses: an object type Apex does not
    track (tickets, products, line items, conversations, other objectTypeIds), a property Apex
    does not read, an association between objects other than contacts, companies and deals, or
    a shape it cannot read. Never raises anything else for odd content.
    """
    if not isinstance(payload, list):
        return _event(event_type, payload, received_at)
    records: list[Record] = []
    unusable: list[str] = []
    for event in payload:
        try:
            records += _event(event_type, event, received_at)
        except UnusableEventError as exc:
            unusable.append(str(exc))
    if not records and unusable:
        raise UnusableEventError("; ".join(dict.fromkeys(unusable))[:900])
    return records


def _event(event_type: str, event: Any, received_at: datetime | None) -> list[Record]:
    if not isinstance(event, Mapping):
        raise UnusableEventError("A HubSpot event must be a JSON object")
    subscription = text(event, "subscriptionType") or text(event, "eventType") or event_type
    object_type, _, action = subscription.partition(".")
    at = _occurred(event, received_at, subscription)
    portal = _object_id(event.get("portalId"))
    if action == "associationChange":
        return _association(event, subscription, portal, at)
    if object_type == "object":
        type_id = text(event, "objectTypeId")
        object_type = OBJECT_TYPE_IDS.get(type_id or "", "")
        if not object_type:
            raise UnusableEventError(
                f"HubSpot {subscription} of objectTypeId {type_id!r} carries nothing Apex uses "
                "(it tracks 0-1 contacts, 0-2 companies and 0-3 deals)"
            )
    if object_type not in TRACKED:
        raise UnusableEventError(
            f"HubSpot {subscription} events carry nothing Apex uses "
            "(it tracks contacts, companies and deals)"
        )
    object_id = _object_id(event.get("objectId"))
    if object_id is None:
        raise UnusableEventError(f"HubSpot {subscription} event has no usable objectId")
    key = hubspot_id(portal, object_id)
    if action == "propertyChange":
        return [_property_change(object_type, event, subscription, key, at)]
    if action == "merge":
        return _merge(object_type, event, portal, key, at)
    if object_type == "contact":
        return _contact(action, subscription, Identity("hubspot", key), at)
    return _object(object_type, action, subscription, key, at)


def _occurred(event: Mapping[str, Any], received_at: datetime | None, what: str) -> datetime:
    occurred = event.get("occurredAt")
    if isinstance(occurred, str) and occurred.isdigit() and len(occurred) <= 15:
        occurred = int(occurred)
    if isinstance(occurred, int) and not isinstance(occurred, bool):
        if _EARLIEST_MS <= occurred <= _LATEST_MS:
            return datetime.fromtimestamp(occurred / 1000, UTC)
    if received_at is not None:
        return received_at  # no usable occurredAt: as of when it was received
    raise UnusableEventError(f"HubSpot {what} event has no usable occurredAt")


def _object_id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    found = str(value).strip() if isinstance(value, str) or abs(value) < 10**40 else ""
    return found if _OBJECT_ID.fullmatch(found) else None


def _record(object_type: str, key: str, at: datetime, properties: tuple[Property, ...]) -> Record:
    subject = Identity("hubspot", key)
    if object_type == "contact":
        return Contact(subject, (subject,), at, properties)
    if object_type == "company":
        return Company(key, at, properties)
    return Deal(key, at, properties)


def _property_change(
    object_type: str, event: Mapping[str, Any], subscription: str, key: str, at: datetime
) -> Record:
    theirs = text(event, "propertyName")
    ours = _PROPERTIES[object_type].get(theirs or "")
    if ours is None:
        raise UnusableEventError(
            f"HubSpot {subscription} of property {theirs!r} carries nothing Apex uses "
            f"(it reads {', '.join(_PROPERTIES[object_type])})"
        )
    value = text(event, "propertyValue")
    if ours != "email":
        return _record(object_type, key, at, ((ours, value),))
    subject = Identity("hubspot", key)
    email = normalise_email(value)
    linked = (Identity("email", email),) if email else ()
    return Contact(subject, (subject, *linked), at, (("email", email),))


def _merge(
    object_type: str, event: Mapping[str, Any], portal: str | None, key: str, at: datetime
) -> list[Record]:
    """A contact merge links every id involved into one person. A deal or company merge leaves
    one object (the new one, else the primary): the others are gone, as if deleted."""
    merged = event.get("mergedObjectIds")
    ids = [event.get("newObjectId"), event.get("primaryObjectId")]
    ids += merged if isinstance(merged, list) else []
    keys = list(dict.fromkeys(hubspot_id(portal, i) for i in map(_object_id, ids) if i))
    if object_type == "contact":
        subject = Identity("hubspot", keys[0] if keys else key)
        everyone = unique(
            (subject, *(Identity("hubspot", k) for k in keys), Identity("hubspot", key))
        )
        return [Contact(subject, everyone, at)]
    survivor = keys[0] if keys else key
    gone = [k for k in dict.fromkeys([*keys, key]) if k != survivor]
    return [_record(object_type, k, at, (("deleted", "1"),)) for k in gone] or [
        _record(object_type, survivor, at, ())
    ]


def _contact(action: str, subscription: str, subject: Identity, at: datetime) -> list[Record]:
    if action == "creation":
        return [Contact(subject, (subject,), at, (("created", "hubspot"),))]
    if action in ("deletion", "privacyDeletion"):
        return [Erasure(subject, at)]
    if action == "restore":  # deleted, then restored within HubSpot's 90 days: news again
        return [Contact(subject, (subject,), at, ((ERASED, None),))]
    raise UnusableEventError(f"HubSpot {subscription} events carry nothing Apex uses")


def _object(
    object_type: str, action: str, subscription: str, key: str, at: datetime
) -> list[Record]:
    if action == "creation":
        return [_record(object_type, key, at, (("created", "1"),))]
    if action in ("deletion", "privacyDeletion"):
        return [_record(object_type, key, at, (("deleted", "1"),))]
    if action == "restore":
        return [_record(object_type, key, at, (("deleted", None),))]
    raise UnusableEventError(f"HubSpot {subscription} events carry nothing Apex uses")


def _association(
    event: Mapping[str, Any], subscription: str, portal: str | None, at: datetime
) -> list[Record]:
    """An association added or removed between two objects, in either shape: legacy
    (`associationType` such as CONTACT_TO_DEAL) or generic (`fromObjectTypeId`/`toObjectTypeId`
    with `associationCategory`/`associationTypeId`). Each label (associationTypeId, else
    associationType and primary flag) is a link of its own: the two stay linked while any is."""
    kinds = _association_kinds(event)
    from_id, to_id = _object_id(event.get("fromObjectId")), _object_id(event.get("toObjectId"))
    if kinds is None or not set(kinds) <= TRACKED or kinds[0] == kinds[1]:
        described = " and ".join(kinds) if kinds else repr(event.get("associationType"))
        raise UnusableEventError(
            f"HubSpot {subscription} between {described} carries nothing Apex uses "
            "(it links contacts, companies and deals)"
        )
    if from_id is None or to_id is None:
        raise UnusableEventError(f"HubSpot {subscription} has no usable fromObjectId/toObjectId")
    ends = {kinds[0]: hubspot_id(portal, from_id), kinds[1]: hubspot_id(portal, to_id)}
    removed = event.get("associationRemoved") in (True, "true", "TRUE", "True")
    label = _label(event)
    contact, company, deal = ends.get("contact"), ends.get("company"), ends.get("deal")
    records: list[Record] = []
    if contact is not None:
        person = Identity("hubspot", contact)
        # The person exists once associated; a removal needs no lead made for it.
        if not removed or company is not None:
            linked = _link("company", company, label, removed) if company is not None else ()
            records.append(Contact(person, (person,), at, linked))
    if deal is not None:
        if contact is not None:
            records.append(Deal(deal, at, _link("contact", contact, label, removed)))
        elif company is not None:
            records.append(Deal(deal, at, _link("company", company, label, removed)))
    if company is not None:
        if contact is not None:
            records.append(Company(company, at, _link("contact", contact, label, removed)))
        elif deal is not None:
            records.append(Company(company, at, _link("deal", deal, label, removed)))
    return records


def _link(kind: str, key: str, label: str | None, removed: bool) -> tuple[Property, ...]:
    """The association with `key` as one change states it: its label set or removed (the
    object stays linked while another label remains, see records.fold_links). A removal also
    clears the link as stored before labels were kept. A label too long to name is left out."""
    plain = link(kind, key)
    labelled = link(kind, key, label)
    name = labelled if len(labelled) <= _NAME_WIDTH else plain
    if not removed:
        return ((name, "1"),)
    return ((name, None), (plain, None)) if name != plain else ((name, None),)


def _label(event: Mapping[str, Any]) -> str | None:
    """Which of the associations between two objects a change is about, the same from either
    side: "category/typeId" ("HUBSPOT_DEFINED/3", a HubSpot-defined type read as its
    reverse's where it has one, see _REVERSE_TYPE_IDS), else the legacy associationType's words
    in order ("CONTACT_DEAL" for DEAL_TO_CONTACT and CONTACT_TO_DEAL, with "/primary" for the
    primary one), or None when the event does not say (or says it unreadably)."""
    type_id = _object_id(event.get("associationTypeId"))
    category = text(event, "associationCategory") or ""
    if type_id is not None:
        if category == "HUBSPOT_DEFINED":
            type_id = _REVERSE_TYPE_IDS.get(type_id, type_id)
        label = f"{category}/{type_id}"
    else:
        words = (text(event, "associationType") or "").upper().split("_")
        legacy = "_".join(sorted(word for word in words if word and word != "TO"))
        primary = event.get("isPrimaryAssociation") in (True, "true", "TRUE", "True")
        label = f"{legacy}/primary" if legacy and primary else legacy
    return label if _LABEL.fullmatch(label) else None


def _association_kinds(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """The object types an association change links, from → to, lower-case ("contact",
    "deal", "line_item", "0-5", …), or None when the event does not say."""
    from_type, to_type = text(event, "fromObjectTypeId"), text(event, "toObjectTypeId")
    if from_type and to_type:
        return (OBJECT_TYPE_IDS.get(from_type, from_type), OBJECT_TYPE_IDS.get(to_type, to_type))
    association = (text(event, "associationType") or "").upper()
    left, separator, right = association.partition("_TO_")
    if not separator:
        return None
    sides = [_name(left, at_end=True), _name(right, at_end=False)]
    return (sides[0], sides[1]) if sides[0] and sides[1] else None


def _name(side: str, at_end: bool) -> str | None:
    """The object name a side of CONTACT_TO_DEAL-like text starts (right side) or ends (left
    side: PRIMARY_COMPANY reads as COMPANY) with."""
    for name in _ASSOCIATED_NAMES:
        if side == name or (side.endswith("_" + name) if at_end else side.startswith(name + "_")):
            return name.lower()
    return side.lower() or None
