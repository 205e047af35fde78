"""Webhook subscriptions: URL and event rules, create / read / update / delete, secret rotation."""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from apex.catalog import WILDCARD, is_known
from apex.db import reading, utcnow
from apex.delivery import destinations
from apex.delivery.circuit import Health
from apex.delivery.destinations import Policy
from apex.delivery.signing import generate_secret
from apex.errors import ConflictError, NotFoundError
from apex.ids import new_id
from apex.models import deliveries, subscriptions
from apex.secretbox import SecretBox

MAX_URL_LENGTH = 2048
_CANCELLABLE = ("pending", "in_flight", "skipped")
STATUSES = ("active", "paused", "disabled")
# A URL is printable ASCII (RFC 3986; other characters are percent-encoded, IDN hosts punycoded).
# This refuses CR, LF, TAB, NUL, spaces and bidi marks: urlsplit silently drops some of them, a
# header or log line would carry the others, and a bidi mark makes a URL read as another one.
_PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x21, 0x7F))


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    events: list[str]
    description: str
    status: str
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    rate_limit: int | None = None  # requests per second over all workers; None: unlimited
    concurrency: int | None = None  # requests in flight over all workers; None: the default
    health: Health = field(default_factory=Health)

    def wants(self, event_type: str) -> bool:
        return WILDCARD in self.events or event_type in self.events


@dataclass(frozen=True)
class SigningSecrets:
    """The secrets that sign a delivery now: the current one, then a still-valid previous one."""

    current: str
    previous: str | None

    def active(self) -> list[str]:
        return [self.current] + ([self.previous] if self.previous else [])


def url_problem(
    url: str, allow_http: bool, allow_private: bool = False, policy: Policy | None = None
) -> str | None:
    """Why `url` is not an acceptable destination, or None if it is.

    The URL's form is judged here (length, printable ASCII, no #fragment), then the destination
    rules of apex.delivery.destinations, which apply again before every attempt: `policy` when
    given, else one of `allow_http` and `allow_private` with the default ports. A host written
    as a private address in any form (or `localhost`) is refused here already; a name that
    resolves to one is refused at delivery time, when it is resolved."""
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters, got {len(url)}"
    unsafe = next((c for c in url if c not in _PRINTABLE_ASCII), None)
    if unsafe is not None:
        return (
            "must be printable ASCII without spaces (percent-encode the rest), got "
            f"U+{ord(unsafe):04X} ({unicodedata.name(unsafe, 'a control character')}) "
            f"at {url.index(unsafe)}{_punycode_hint(url)}"
        )
    if "#" in url:
        return "must not contain a #fragment"
    return destinations.check(url, policy or destinations.Policy(allow_http, allow_private))


def _punycode_hint(url: str) -> str:
    """How to write a non-ASCII host ('; the host reads as xn--...'), when that is the problem."""
    try:
        hostname = urlsplit(url).hostname
    except ValueError:
        return ""
    if not hostname or hostname.isascii():
        return ""
    try:
        name = destinations.parse_host(hostname).name
    except ValueError:
        return ""
    return f"; the host reads as {name!r}, write it so"


def events_problem(events: list[str]) -> str | None:
    """Why `events` is not an acceptable event list, or None if it is."""
    if not events:
        return "must list at least one event type"
    unknown = [e for e in events if e != WILDCARD and not is_known(e)]
    if unknown:
        return f"unknown event type(s): {', '.join(map(repr, unknown))}"
    duplicates = sorted({e for e in events if events.count(e) > 1})
    if duplicates:
        return f"duplicate event type(s): {', '.join(map(repr, duplicates))}"
    return None


def _from_row(row: Any) -> Subscription:
    return Subscription(
        id=row.id,
        url=row.url,
        events=list(row.events),
        description=row.description,
        status=row.status,
        disabled_reason=row.disabled_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        rate_limit=row.rate_limit,
        concurrency=row.concurrency,
        health=Health(*(row._mapping[name] for name in Health.__dataclass_fields__)),
    )


_LIVE = subscriptions.c.deleted_at.is_(None)


def create(
    engine: Engine,
    box: SecretBox,
    url: str,
    events: list[str],
    secret: str | None = None,
    description: str = "",
    rate_limit: int | None = None,
    concurrency: int | None = None,
) -> tuple[Subscription, str]:
    """Create an active subscription; return it and its signing secret (the only time it is shown).

    Inputs are trusted: the API layer has validated them with url_problem / events_problem
    (SubscriptionCreateSchema loads a body into exactly these keyword arguments).
    """
    now = utcnow()
    secret = secret or generate_secret()
    sub = Subscription(new_id("wh"), url, list(events), description, "active", None, now, now,
                       rate_limit, concurrency)  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            subscriptions.insert().values(
                id=sub.id,
                url=sub.url,
                events=sub.events,
                description=description,
                rate_limit=rate_limit,
                concurrency=concurrency,
                status=sub.status,
                secret=box.seal(secret),
                created_at=now,
                updated_at=now,
            )
        )
    return sub, secret


def list_all(engine: Engine) -> list[Subscription]:
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(subscriptions).where(_LIVE).order_by(subscriptions.c.created_at)
        ).all()
    return [_from_row(r) for r in rows]


def get(conn: Connection | Engine, sub_id: str) -> Subscription:
    """Raises NotFoundError for an unknown or deleted id."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return get(c, sub_id)
    row = conn.execute(sa.select(subscriptions).where(subscriptions.c.id == sub_id, _LIVE)).first()
    if row is None:
        raise NotFoundError(f"No webhook {sub_id}")
    return _from_row(row)


def signing_secrets(conn: Connection, box: SecretBox, sub_id: str) -> SigningSecrets:
    """The secrets to sign with now. Raises NotFoundError for an unknown id."""
    row = conn.execute(
        sa.select(
            subscriptions.c.secret,
            subscriptions.c.previous_secret,
            subscriptions.c.previous_secret_expires_at,
        ).where(subscriptions.c.id == sub_id)
    ).first()
    if row is None:
        raise NotFoundError(f"No webhook {sub_id}")
    previous = None
    if (
        row.previous_secret
        and row.previous_secret_expires_at
        and row.previous_secret_expires_at > utcnow()
    ):
        previous = box.open(row.previous_secret)
    return SigningSecrets(box.open(row.secret), previous)


def update(engine: Engine, sub_id: str, changes: dict[str, Any]) -> Subscription:
    """Apply validated changes (url, events, description, status active|paused, rate_limit,
    concurrency).

    Re-activating a disabled subscription clears its failure record, and that or a new URL
    closes its endpoint's circuit (the deliveries that waited are found by the next sweep).
    Raises NotFoundError.
    """
    with engine.begin() as conn:
        current = get(conn, sub_id)
        values: dict[str, Any] = dict(changes)
        if values.get("status") == "active" and current.status != "active":
            values.update(disabled_reason=None, failing_since=None, **asdict(Health()))
        if "url" in values and values["url"] != current.url:
            values.update(asdict(Health()))
        values["updated_at"] = utcnow()
        conn.execute(subscriptions.update().where(subscriptions.c.id == sub_id).values(**values))
        return get(conn, sub_id)


def delete(engine: Engine, sub_id: str) -> list[str]:
    """Delete a subscription; cancel (and record as cancelled) its pending deliveries.

    Returns the ids of the cancelled deliveries. Raises NotFoundError for an unknown id.
    The row is kept (soft delete) so its delivery log stays readable.
    """
    now = utcnow()
    with engine.begin() as conn:
        get(conn, sub_id)
        cancelled = list(
            conn.execute(
                sa.select(deliveries.c.id).where(
                    deliveries.c.subscription_id == sub_id,
                    deliveries.c.status.in_(_CANCELLABLE),
                )
            ).scalars()
        )
        if cancelled:
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(cancelled), deliveries.c.status.in_(_CANCELLABLE))
                .values(
                    status="cancelled",
                    last_error="subscription deleted",
                    next_attempt_at=None,
                    lease_until=None,
                    updated_at=now,
                )
            )
        conn.execute(
            subscriptions.update()
            .where(subscriptions.c.id == sub_id)
            .values(deleted_at=now, status="disabled", disabled_reason="deleted", updated_at=now)
        )
    return cancelled


def rotate_secret(
    engine: Engine, box: SecretBox, sub_id: str, overlap: timedelta, secret: str | None = None
) -> tuple[Subscription, str, datetime]:
    """Replace the signing secret; the old one keeps signing for `overlap`.

    Returns the subscription, the new secret (shown once) and when the old one expires.
    Raises NotFoundError, and ConflictError while a previous rotation's overlap is running (a
    second rotation would drop a secret receivers may still be verifying with).
    """
    new_secret = secret or generate_secret()
    now = utcnow()
    expires = now + overlap
    with engine.begin() as conn:
        sub = get(conn, sub_id)
        old, running_until = conn.execute(
            sa.select(subscriptions.c.secret, subscriptions.c.previous_secret_expires_at)
            .where(subscriptions.c.id == sub_id)
            .with_for_update()
        ).one()
        if running_until is not None and running_until > now:
            raise ConflictError(
                f"Webhook {sub_id} was rotated recently; its previous secret signs until "
                f"{running_until.strftime('%Y-%m-%dT%H:%M:%SZ')}. Rotate again after that."
            )
        conn.execute(
            subscriptions.update()
            .where(subscriptions.c.id == sub_id)
            .values(
                secret=box.seal(new_secret),
                previous_secret=old,
                previous_secret_expires_at=expires,
                updated_at=now,
            )
        )
    return replace(sub, updated_at=now), new_secret, expires
