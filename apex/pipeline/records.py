"""The normalised records extract() makes of inbound events, whatever their source."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

# The kinds of identifier that identify a person, in the order a lead lists them.
IDENTITY_KINDS = ("email", "hubspot", "stripe", "github")

# Objects that carry versioned properties without identifying a person.
HUBSPOT_DEAL = "hubspot_deal"
HUBSPOT_COMPANY = "hubspot_company"
PAYMENT = "payment"  # a payment by its key: the key it is linked to, its refunds and disputes

Property = tuple[str, str | None]
"""A property a record states: (name, value); None means the source cleared or removed it."""


@dataclass(frozen=True)
class Versioned:
    """A stored property: its value (None once cleared) and when the source set it."""

    value: str | None
    at: datetime


LABEL = "#"
"""Separates an association property's object from its label: "contact:<key>#<label>"."""


def link(kind: str, key: str, label: str | None = None) -> str:
    """The property that states an association with the `kind` object `key` ("contact",
    "company", "deal"): "kind:key", or "kind:key#label" for one of several associations
    between the two objects (HubSpot's labels and primary flag), so removing one leaves the
    others."""
    return f"{kind}:{key}{LABEL}{label}" if label else f"{kind}:{key}"


def fold_links(properties: Mapping[str, Versioned]) -> dict[str, Versioned]:
    """`properties` with the labelled associations with each object folded into its "kind:key"
    (and the unlabelled one, if stored): set ("1", as of the earliest set) while any is set, else
    removed (None, as of the latest removal). Other properties are left as they are."""
    folded: dict[str, Versioned] = {}
    labelled: dict[str, list[Versioned]] = {}
    for name, version in properties.items():
        base, separator, _ = name.partition(LABEL)
        if separator:
            labelled.setdefault(base, []).append(version)
        else:
            folded[name] = version
    for base, versions in labelled.items():
        versions += [folded[base]] if base in folded else []
        live = [version.at for version in versions if version.value]
        if live:
            folded[base] = Versioned("1", min(live))
        else:
            folded[base] = Versioned(None, max(version.at for version in versions))
    return folded


@dataclass(frozen=True, order=True)
class Identity:
    """An identifier of a source object: a person's when `kind` is one of IDENTITY_KINDS.

    Values are normalised: emails trimmed and lower-cased, HubSpot ids "portal-<portal>:<id>",
    Stripe customer ids and GitHub user ids as given.
    """

    kind: str
    value: str


@dataclass(frozen=True)
class Contact:
    """What a source says about a person at `at`: the identities it links (all one person) and
    properties of `subject`, one of them. Per property, the newest `at` wins."""

    subject: Identity
    identities: tuple[Identity, ...]
    at: datetime
    properties: tuple[Property, ...] = ()


@dataclass(frozen=True)
class Touchpoint:
    """A marketing touch: the person met us through `source` (and `campaign`) at `at`.

    `key` identifies the touch, so the same touch described twice is recorded once.
    """

    key: str
    identities: tuple[Identity, ...]
    source: str
    campaign: str | None
    at: datetime


@dataclass(frozen=True)
class Payment:
    """Money captured so far, in minor units. `key` names the payment (its intent, else its
    charge, else its invoice), so however many events describe it, it counts once, at the
    largest amount any of them states. `aliases` are other keys of the same payment (its
    invoice, its charge): money counted under one of them before the link was known moves to
    `key`, and later events under an alias count under `key`.

    An `amount` of 0 says nothing was ever captured (an authorisation canceled or expired):
    whatever was counted for `key` is removed.
    """

    key: str
    identities: tuple[Identity, ...]
    amount: int
    currency: str
    at: datetime
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refund:
    """Money taken back from the payment `key` (minor units, positive), as of `at`.

    `part` says which: "" the running total of refunds the payment states (a Stripe charge's
    `amount_refunded`), "refund:<id>" one refund (0 once it failed or was canceled),
    "dispute:<id>" a dispute (its amount once lost, else 0). The payment loses the larger of its
    running total and the sum of its refunds, plus its lost disputes, each counted once however
    often or in whatever order they are described. `paid_at` is when the refunded payment was
    made, if known: the refund is credited where the payment was.
    """

    key: str
    identities: tuple[Identity, ...]
    amount: int
    currency: str
    at: datetime
    paid_at: datetime
    part: str = ""


@dataclass(frozen=True)
class Notification:
    """A notification that carries no content, only a reference (a Stripe thin event): the
    source's enricher fetches the event and replaces this by `fetched`, the records it carries.
    Left unfetched (no API credentials), the event is ignored with `reason`."""

    source: str
    event_id: str
    reason: str
    fetched: tuple[Record, ...] | None = None


@dataclass(frozen=True)
class Deal:
    """Properties of a CRM deal at `at`: stage, amount, currency, deleted, `contact:<id>`
    ("1" while associated with that HubSpot contact, None once removed) and `company:<id>`."""

    key: str
    at: datetime
    properties: tuple[Property, ...] = ()


@dataclass(frozen=True)
class Erasure:
    """The source deleted the person `subject` at `at`: erase their personal data."""

    subject: Identity
    at: datetime


@dataclass(frozen=True)
class Company:
    """Properties of a CRM company at `at`: name, deleted, and `contact:<id>` ("1" while
    associated with that HubSpot contact, None once removed). Its contacts' leads show its name
    (a contact states the link as its own property `company:<key>`)."""

    key: str
    at: datetime
    properties: tuple[Property, ...] = ()


Record = Contact | Touchpoint | Payment | Refund | Deal | Company | Erasure | Notification


def normalise_email(value: object) -> str | None:
    """The email trimmed and lower-cased, or None if `value` is not an email address."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or " " in email or len(email) > 320:
        return None
    return email


def currency_code(value: str | None) -> str | None:
    """An ISO 4217 code, lower-cased as Stripe writes it, or None if `value` is not one."""
    code = (value or "").strip().lower()
    return code if len(code) == 3 and code.isascii() and code.isalpha() else None
