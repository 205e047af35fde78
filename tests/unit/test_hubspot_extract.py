"""apex.sources.hubspot.extract: the records each HubSpot subscription type carries, or why it
carries nothing Apex uses; legacy and generic (object.*) shapes, both type spellings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apex.pipeline import identity
from apex.pipeline.extract import extract
from apex.pipeline.records import Company, Contact, Deal, Erasure, Identity, Property, Record
from apex.sources.hubspot import extract as hubspot_extract
from apex.sources.source import UnusableEventError

PORTAL = 48120977
RECEIVED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
AT = datetime.fromtimestamp(1764165600123 / 1000, UTC)
JANE_HS = Identity("hubspot", "portal-48120977:90210554101")
JANE_EMAIL = Identity("email", "jane.doe@acme.io")
DEAL = "portal-48120977:31887406213"
ACME = "portal-48120977:7700112233"
Links = tuple[Property, ...]


def hubspot(subscription: str, **fields: Any) -> dict[str, Any]:
    event = {
        "eventId": 1950336821,
        "subscriptionId": 2841002,
        "portalId": PORTAL,
        "appId": 3310452,
        "occurredAt": 1764165600123,
        "subscriptionType": subscription,
        "attemptNumber": 0,
        "objectId": 90210554101,
        "changeSource": "FORM",
    }
    event.update(fields)
    return {name: value for name, value in event.items() if value is not None}


def association(
    subscription: str, kind: str, from_id: int, to_id: int, removed: bool = False, **fields: Any
) -> dict[str, Any]:
    return hubspot(
        subscription,
        **{
            "objectId": None,
            "associationType": kind,
            "fromObjectId": from_id,
            "toObjectId": to_id,
            "associationRemoved": removed,
            "isPrimaryAssociation": False,
            **fields,
        },
    )


def generic_association(
    from_type: str, from_id: int, to_type: str, to_id: int, **fields: Any
) -> dict[str, Any]:
    return hubspot(
        "object.associationChange",
        objectId=None,
        associationCategory="HUBSPOT_DEFINED",
        associationTypeId=fields.pop("type_id", 4),
        fromObjectTypeId=from_type,
        fromObjectId=from_id,
        toObjectTypeId=to_type,
        toObjectId=to_id,
        associationRemoved=fields.pop("removed", False),
        isPrimaryAssociation=fields.pop("primary", False),
        **fields,
    )


def linked(label: str, removed: bool = False, to: str = f"contact:{JANE_HS.value}") -> Links:
    """The link properties an association change states: `to` with its label set, or removed
    (and the link as stored before labels were kept cleared too)."""
    if not removed:
        return ((f"{to}#{label}", "1"),)
    return ((f"{to}#{label}", None), (to, None))


CASES: list[tuple[str, dict[str, Any], list[Record]]] = [
    # --- contacts, legacy
    (
        "contact creation",
        hubspot("contact.creation", changeFlag="CREATED"),
        [Contact(JANE_HS, (JANE_HS,), AT, (("created", "hubspot"),))],
    ),
    (
        "contact email, normalised and linked",
        hubspot("contact.propertyChange", propertyName="email", propertyValue=" Jane.Doe@ACME.io "),
        [Contact(JANE_HS, (JANE_HS, JANE_EMAIL), AT, (("email", "jane.doe@acme.io"),))],
    ),
    (
        "contact email cleared",
        hubspot("contact.propertyChange", propertyName="email", propertyValue=""),
        [Contact(JANE_HS, (JANE_HS,), AT, (("email", None),))],
    ),
    (
        "contact first name",
        hubspot("contact.propertyChange", propertyName="firstname", propertyValue="Jane"),
        [Contact(JANE_HS, (JANE_HS,), AT, (("first_name", "Jane"),))],
    ),
    (
        "contact analytics source",
        hubspot(
            "contact.propertyChange",
            propertyName="hs_analytics_source",
            propertyValue="PAID_SEARCH",
        ),
        [Contact(JANE_HS, (JANE_HS,), AT, (("analytics_source", "PAID_SEARCH"),))],
    ),
    (
        "contact merge links the merged contacts to the primary",
        hubspot(
            "contact.merge",
            primaryObjectId=90210554101,
            mergedObjectIds=[90210559999],
            newObjectId=90210554101,
            numberOfPropertiesMoved=7,
        ),
        [Contact(JANE_HS, (JANE_HS, Identity("hubspot", "portal-48120977:90210559999")), AT)],
    ),
    ("contact deletion", hubspot("contact.deletion"), [Erasure(JANE_HS, AT)]),
    ("contact privacy deletion", hubspot("contact.privacyDeletion"), [Erasure(JANE_HS, AT)]),
    (
        "contact restore lifts the deletion",
        hubspot("contact.restore"),
        [Contact(JANE_HS, (JANE_HS,), AT, ((identity.ERASED, None),))],
    ),
    # --- deals, legacy
    (
        "deal creation",
        hubspot("deal.creation", objectId=31887406213),
        [Deal(DEAL, AT, (("created", "1"),))],
    ),
    (
        "deal stage",
        hubspot(
            "deal.propertyChange",
            objectId=31887406213,
            propertyName="dealstage",
            propertyValue="closedwon",
        ),
        [Deal(DEAL, AT, (("stage", "closedwon"),))],
    ),
    (
        "deal amount, kept as the string HubSpot sends",
        hubspot(
            "deal.propertyChange",
            objectId=31887406213,
            propertyName="amount",
            propertyValue="12000",
        ),
        [Deal(DEAL, AT, (("amount", "12000"),))],
    ),
    (
        "deal currency",
        hubspot(
            "deal.propertyChange",
            objectId=31887406213,
            propertyName="deal_currency_code",
            propertyValue="EUR",
        ),
        [Deal(DEAL, AT, (("currency", "EUR"),))],
    ),
    (
        "deal deletion",
        hubspot("deal.deletion", objectId=31887406213),
        [Deal(DEAL, AT, (("deleted", "1"),))],
    ),
    (
        "deal privacy deletion",
        hubspot("deal.privacyDeletion", objectId=31887406213),
        [Deal(DEAL, AT, (("deleted", "1"),))],
    ),
    (
        "deal restore",
        hubspot("deal.restore", objectId=31887406213),
        [Deal(DEAL, AT, (("deleted", None),))],
    ),
    (
        "deal merge: the merged deal is gone, the primary stays",
        hubspot(
            "deal.merge",
            objectId=31887406213,
            primaryObjectId=31887406213,
            mergedObjectIds=[31887409999],
            newObjectId=31887406213,
        ),
        [Deal("portal-48120977:31887409999", AT, (("deleted", "1"),))],
    ),
    # --- companies, legacy
    (
        "company creation",
        hubspot("company.creation", objectId=7700112233),
        [Company(ACME, AT, (("created", "1"),))],
    ),
    (
        "company name",
        hubspot(
            "company.propertyChange", objectId=7700112233, propertyName="name", propertyValue="Acme"
        ),
        [Company(ACME, AT, (("name", "Acme"),))],
    ),
    (
        "company deletion",
        hubspot("company.deletion", objectId=7700112233),
        [Company(ACME, AT, (("deleted", "1"),))],
    ),
    (
        "company restore",
        hubspot("company.restore", objectId=7700112233),
        [Company(ACME, AT, (("deleted", None),))],
    ),
    (
        "company merge into a new company: both merged ones are gone",
        hubspot(
            "company.merge",
            objectId=7700112233,
            primaryObjectId=7700112233,
            mergedObjectIds=[7700119999],
            newObjectId=7700110000,
        ),
        [
            Company(ACME, AT, (("deleted", "1"),)),
            Company("portal-48120977:7700119999", AT, (("deleted", "1"),)),
        ],
    ),
    # --- associations, legacy shape
    (
        "deal to contact association: the contact and the link",
        association("deal.associationChange", "DEAL_TO_CONTACT", 31887406213, 90210554101),
        [Contact(JANE_HS, (JANE_HS,), AT), Deal(DEAL, AT, linked("CONTACT_DEAL"))],
    ),
    (
        "contact to deal association, primary",
        association(
            "contact.associationChange",
            "CONTACT_TO_DEAL",
            90210554101,
            31887406213,
            isPrimaryAssociation=True,
        ),
        [Contact(JANE_HS, (JANE_HS,), AT), Deal(DEAL, AT, linked("CONTACT_DEAL/primary"))],
    ),
    (
        "contact to deal association removed: only the link goes",
        association("contact.associationChange", "CONTACT_TO_DEAL", 90210554101, 31887406213, True),
        [Deal(DEAL, AT, linked("CONTACT_DEAL", removed=True))],
    ),
    (
        "contact to company association: the contact states the link, the company too",
        association("contact.associationChange", "CONTACT_TO_COMPANY", 90210554101, 7700112233),
        [
            Contact(JANE_HS, (JANE_HS,), AT, linked("COMPANY_CONTACT", to=f"company:{ACME}")),
            Company(ACME, AT, linked("COMPANY_CONTACT")),
        ],
    ),
    (
        "company to contact association removed",
        association(
            "company.associationChange", "COMPANY_TO_CONTACT", 7700112233, 90210554101, True
        ),
        [
            Contact(JANE_HS, (JANE_HS,), AT, linked("COMPANY_CONTACT", True, f"company:{ACME}")),
            Company(ACME, AT, linked("COMPANY_CONTACT", removed=True)),
        ],
    ),
    (
        "deal to company association, kept on both",
        association("deal.associationChange", "DEAL_TO_COMPANY", 31887406213, 7700112233),
        [
            Deal(DEAL, AT, linked("COMPANY_DEAL", to=f"company:{ACME}")),
            Company(ACME, AT, linked("COMPANY_DEAL", to=f"deal:{DEAL}")),
        ],
    ),
    (
        "labelled association type",
        association(
            "contact.associationChange", "CONTACT_TO_DEAL_UNLABELED", 90210554101, 31887406213
        ),
        [Contact(JANE_HS, (JANE_HS,), AT), Deal(DEAL, AT, linked("CONTACT_DEAL_UNLABELED"))],
    ),
    (
        "association removed spelled as a string",
        association(
            "deal.associationChange",
            "DEAL_TO_CONTACT",
            31887406213,
            90210554101,
            associationRemoved="true",
        ),
        [Deal(DEAL, AT, linked("CONTACT_DEAL", removed=True))],
    ),
    # --- generic object.* events
    (
        "generic contact creation",
        hubspot("object.creation", objectTypeId="0-1"),
        [Contact(JANE_HS, (JANE_HS,), AT, (("created", "hubspot"),))],
    ),
    (
        "generic contact property",
        hubspot(
            "object.propertyChange",
            objectTypeId="0-1",
            propertyName="company",
            propertyValue="Acme",
        ),
        [Contact(JANE_HS, (JANE_HS,), AT, (("company", "Acme"),))],
    ),
    (
        "generic contact deletion",
        hubspot("object.deletion", objectTypeId="0-1"),
        [Erasure(JANE_HS, AT)],
    ),
    (
        "generic contact merge",
        hubspot(
            "object.merge",
            objectTypeId="0-1",
            primaryObjectId=90210554101,
            mergedObjectIds=[90210559999],
            newObjectId=90210554101,
        ),
        [Contact(JANE_HS, (JANE_HS, Identity("hubspot", "portal-48120977:90210559999")), AT)],
    ),
    (
        "generic contact restore",
        hubspot("object.restore", objectTypeId="0-1"),
        [Contact(JANE_HS, (JANE_HS,), AT, ((identity.ERASED, None),))],
    ),
    (
        "generic company name",
        hubspot(
            "object.propertyChange",
            objectTypeId="0-2",
            objectId=7700112233,
            propertyName="name",
            propertyValue="Acme",
        ),
        [Company(ACME, AT, (("name", "Acme"),))],
    ),
    (
        "generic deal stage",
        hubspot(
            "object.propertyChange",
            objectTypeId="0-3",
            objectId=31887406213,
            propertyName="dealstage",
            propertyValue="closedwon",
        ),
        [Deal(DEAL, AT, (("stage", "closedwon"),))],
    ),
    (
        "generic deal to contact association",
        generic_association("0-3", 31887406213, "0-1", 90210554101, type_id=3),
        [Contact(JANE_HS, (JANE_HS,), AT), Deal(DEAL, AT, linked("HUBSPOT_DEFINED/3"))],
    ),
    (
        "generic contact to deal association removed",
        generic_association("0-1", 90210554101, "0-3", 31887406213, removed=True),
        [Deal(DEAL, AT, linked("HUBSPOT_DEFINED/3", removed=True))],
    ),
    (
        "generic contact to company association, primary",
        generic_association("0-1", 90210554101, "0-2", 7700112233, type_id=1, primary=True),
        [
            Contact(JANE_HS, (JANE_HS,), AT, linked("HUBSPOT_DEFINED/1", to=f"company:{ACME}")),
            Company(ACME, AT, linked("HUBSPOT_DEFINED/1")),
        ],
    ),
    # --- the docs' spelling and odd times
    (
        "eventType spelling",
        hubspot("", subscriptionType=None, eventType="contact.creation"),
        [Contact(JANE_HS, (JANE_HS,), AT, (("created", "hubspot"),))],
    ),
    (
        "no occurredAt: as of receipt",
        hubspot("contact.creation", occurredAt=None),
        [Contact(JANE_HS, (JANE_HS,), RECEIVED, (("created", "hubspot"),))],
    ),
    (
        "occurredAt as digits",
        hubspot("contact.creation", occurredAt="1764165600123"),
        [Contact(JANE_HS, (JANE_HS,), AT, (("created", "hubspot"),))],
    ),
    (
        "occurredAt in seconds is not a time HubSpot sends: as of receipt",
        hubspot("contact.creation", occurredAt=1764165600),
        [Contact(JANE_HS, (JANE_HS,), RECEIVED, (("created", "hubspot"),))],
    ),
    (
        "no portal id",
        hubspot("contact.creation", portalId=None),
        [
            Contact(
                Identity("hubspot", "90210554101"),
                (Identity("hubspot", "90210554101"),),
                AT,
                (("created", "hubspot"),),
            )
        ],
    ),
]


@pytest.mark.parametrize(("event", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_extracts_hubspot_events(event: dict[str, Any], expected: list[Record]) -> None:
    event_type = event.get("subscriptionType") or event.get("eventType") or "unknown"
    assert extract("hubspot", event_type, event, {}, RECEIVED) == expected


UNUSABLE: list[tuple[str, Any, str]] = [
    ("ticket creation", hubspot("ticket.creation"), "ticket.creation events carry nothing"),
    (
        "ticket property",
        hubspot("ticket.propertyChange", propertyName="subject"),
        "ticket.propertyChange",
    ),
    ("product deletion", hubspot("product.deletion"), "product.deletion"),
    ("line item merge", hubspot("line_item.merge"), "line_item.merge"),
    (
        "conversation message",
        hubspot("conversation.newMessage", messageId="m1", messageType="MESSAGE"),
        "conversation.newMessage",
    ),
    (
        "conversation privacy deletion",
        hubspot("conversation.privacyDeletion"),
        "conversation.privacyDeletion",
    ),
    ("generic ticket", hubspot("object.creation", objectTypeId="0-5"), "objectTypeId '0-5'"),
    (
        "generic custom object",
        hubspot("object.propertyChange", objectTypeId="2-123456"),
        "objectTypeId '2-123456'",
    ),
    ("generic without objectTypeId", hubspot("object.creation"), "objectTypeId None"),
    (
        "untracked contact property",
        hubspot("contact.propertyChange", propertyName="phone", propertyValue="+49"),
        "property 'phone'",
    ),
    (
        "untracked deal property",
        hubspot("deal.propertyChange", propertyName="closedate", propertyValue="1"),
        "property 'closedate'",
    ),
    (
        "untracked company property",
        hubspot("company.propertyChange", propertyName="domain", propertyValue="acme.io"),
        "property 'domain'",
    ),
    ("property change without a name", hubspot("contact.propertyChange"), "property None"),
    ("unknown contact action", hubspot("contact.somethingNew"), "contact.somethingNew"),
    ("unknown company action", hubspot("company.bogus"), "company.bogus"),
    (
        "contact to ticket association",
        association("contact.associationChange", "CONTACT_TO_TICKET", 1, 2),
        "contact and ticket",
    ),
    (
        "line item to deal association",
        association("deal.associationChange", "LINE_ITEM_TO_DEAL", 1, 2),
        "line_item and deal",
    ),
    (
        "contact to contact association",
        association("contact.associationChange", "CONTACT_TO_CONTACT", 1, 2),
        "contact and contact",
    ),
    (
        "parent to child company",
        association("company.associationChange", "PARENT_COMPANY_TO_CHILD_COMPANY", 1, 2),
        "child_company",
    ),
    ("generic deal to ticket", generic_association("0-3", 1, "0-5", 2), "deal and 0-5"),
    (
        "association without a type",
        hubspot("object.associationChange", objectId=None, fromObjectId=1, toObjectId=2),
        "None",
    ),
    (
        "association without its ends",
        association("deal.associationChange", "DEAL_TO_CONTACT", 1, 2, toObjectId=None),
        "fromObjectId/toObjectId",
    ),
    ("no object id", hubspot("contact.creation", objectId=None), "no usable objectId"),
    (
        "object id that is not an id",
        hubspot("contact.creation", objectId={"id": 1}),
        "no usable objectId",
    ),
    ("boolean object id", hubspot("contact.creation", objectId=True), "no usable objectId"),
    ("huge object id", hubspot("contact.creation", objectId=10**60), "no usable objectId"),
    ("not an object", "contact.creation", "must be a JSON object"),
    ("null", None, "must be a JSON object"),
    ("a batch of nothing usable", [hubspot("ticket.creation"), 5], "ticket.creation"),
]


@pytest.mark.parametrize(
    ("event", "reason"), [c[1:] for c in UNUSABLE], ids=[c[0] for c in UNUSABLE]
)
def test_an_event_apex_cannot_use_is_unusable_with_the_reason(event: Any, reason: str) -> None:
    event_type = event.get("subscriptionType", "unknown") if isinstance(event, dict) else "unknown"
    with pytest.raises(UnusableEventError, match=reason.replace("(", r"\(")):
        extract("hubspot", event_type, event, {}, RECEIVED)


def test_an_event_without_any_time_is_unusable() -> None:
    with pytest.raises(UnusableEventError, match="occurredAt"):
        extract("hubspot", "contact.creation", hubspot("contact.creation", occurredAt=None), {})


def test_a_batch_gives_the_records_of_its_usable_events_in_order() -> None:
    batch = [
        hubspot("contact.creation"),
        hubspot("ticket.creation"),
        hubspot("contact.propertyChange", propertyName="email", propertyValue="jane.doe@acme.io"),
    ]
    records = extract("hubspot", "contact.creation", batch, {})
    assert [type(r) for r in records] == [Contact, Contact]
    assert JANE_EMAIL in records[1].identities  # type: ignore[union-attr]


def test_restore_clears_the_property_identity_marks_erased_by() -> None:
    assert hubspot_extract.ERASED == identity.ERASED


ODD_VALUES: list[Any] = [
    None,
    "",
    " ",
    [],
    {},
    [1, {"a": None}],
    {"id": 1},
    True,
    1.5,
    -1,
    0,
    10**200,
    "x" * 5000,
    "0-1",
    "CONTACT_TO_DEAL",
    "\u202e\x00",
]
TEMPLATES = [
    hubspot("contact.propertyChange", propertyName="email", propertyValue="jane.doe@acme.io"),
    hubspot("deal.merge", primaryObjectId=1, mergedObjectIds=[2, 3], newObjectId=4),
    association("deal.associationChange", "DEAL_TO_CONTACT", 31887406213, 90210554101),
    generic_association("0-1", 90210554101, "0-2", 7700112233),
]


@pytest.mark.parametrize("template", TEMPLATES, ids=[t["subscriptionType"] for t in TEMPLATES])
def test_odd_content_in_any_field_gives_records_or_a_reason_never_a_crash(
    template: dict[str, Any],
) -> None:
    for field in [*template, "objectTypeId", "eventType"]:
        for value in ODD_VALUES:
            event = dict(template, **{field: value})
            try:
                records = extract("hubspot", "contact.creation", event, {}, RECEIVED)
            except UnusableEventError as exc:
                assert str(exc), (field, value)
                continue
            assert isinstance(records, list), (field, value)
            for record in records:
                for name, _ in getattr(record, "properties", ()):
                    assert len(name) <= 100, (field, value, name)  # object_properties.name
