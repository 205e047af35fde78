"""The pipeline's tables (on apex.models.metadata), and the dialect-aware insert and the width
fit their store functions share."""

from __future__ import annotations

import sqlalchemy as sa

from apex.db import UTCDateTime
from apex.models import metadata

# A person, stitched from every identity we have seen for them. email/name/company/source are
# cached from object_properties and touchpoints by identity.settle(); `shape_digest` is the digest
# of the lead's last published shape, so an unchanged lead publishes nothing.
leads = sa.Table(
    "leads",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("email", sa.String(320), index=True),
    sa.Column("name", sa.String(300)),
    sa.Column("company", sa.String(300)),
    sa.Column("source", sa.String(200), index=True),  # the first touch's source
    sa.Column("shape_digest", sa.String(64)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("erased_at", UTCDateTime()),
    sa.Index("ix_leads_created", "created_at", "id"),  # GET /api/leads newest first
)

# Who is who: the primary key makes one (kind, value) belong to one lead, so concurrent workers
# cannot create two leads for one person.
lead_identities = sa.Table(
    "lead_identities",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("value", sa.String(320), primary_key=True),
    sa.Column("lead_id", sa.ForeignKey("leads.id"), nullable=False, index=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

# The ids of leads merged into another, so old ids still resolve.
lead_aliases = sa.Table(
    "lead_aliases",
    metadata,
    sa.Column("alias_id", sa.String(40), primary_key=True),
    sa.Column("lead_id", sa.ForeignKey("leads.id"), nullable=False, index=True),
    sa.Column("merged_at", UTCDateTime(), nullable=False),
)

# What sources said about their objects (contacts, customers, users, deals), one row per
# property: the value with the newest occurred_at wins, whatever order events arrive in.
object_properties = sa.Table(
    "object_properties",
    metadata,
    sa.Column("object_kind", sa.String(16), primary_key=True),
    sa.Column("object_value", sa.String(320), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text()),
    sa.Column("occurred_at", UTCDateTime(), nullable=False),
)

touchpoints = sa.Table(
    "touchpoints",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("lead_id", sa.ForeignKey("leads.id"), nullable=False, index=True),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("campaign", sa.String(200)),
    sa.Column("occurred_at", UTCDateTime(), nullable=False),
)

# Won deals and payments (positive), refunds (negative). The key is the payment or deal, so one
# payment counts once. attributed_at is the time touches are judged against: a refund's payment's.
conversions = sa.Table(
    "conversions",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("lead_id", sa.ForeignKey("leads.id"), index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # payment | deal | refund
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("occurred_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("attributed_at", UTCDateTime(), nullable=False),
)

goals = sa.Table(
    "goals",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("metric", sa.String(16), nullable=False),  # leads | revenue | conversions
    sa.Column("target", sa.BigInteger(), nullable=False),
    sa.Column("source", sa.String(200)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("reached_at", UTCDateTime()),
    sa.Column("reached_value", sa.BigInteger()),
)

# One row per processed inbound event (keyed by a digest of it): processing it again is a no-op.
# `outbox` holds the events it planned until they are published.
pipeline_runs = sa.Table(
    "pipeline_runs",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("counts", sa.JSON(), nullable=False),
    sa.Column("outbox", sa.JSON()),
    sa.Column("processed_at", UTCDateTime(), nullable=False),
)


def fit(value: str | None, column: sa.Column[str]) -> str | None:
    """`value` cut to the width of `column`: sources may send longer text than we keep."""
    width = getattr(column.type, "length", None)
    return value[:width] if value is not None and width else value
