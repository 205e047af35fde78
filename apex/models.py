"""The tables. Every write goes through the store functions of the module that owns the table."""

from __future__ import annotations

import sqlalchemy as sa

from apex.db import UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime()),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("events", sa.JSON(), nullable=False),
    sa.Column("description", sa.String(500), nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),  # active | paused | disabled
    sa.Column("disabled_reason", sa.String(500)),
    sa.Column("secret", sa.Text(), nullable=False),  # Fernet token
    sa.Column("previous_secret", sa.Text()),  # Fernet token, valid until previous_secret_expires_at
    sa.Column("previous_secret_expires_at", UTCDateTime()),
    sa.Column("failing_since", UTCDateTime()),
    sa.Column("rate_limit", sa.Integer()),  # requests per second, all workers; None: unlimited
    sa.Column("concurrency", sa.Integer()),  # requests in flight, all workers; None: the default
    # Endpoint health (apex.delivery.circuit): closed | open; while open, only probes are sent.
    sa.Column("circuit", sa.String(16), nullable=False, server_default="closed"),
    sa.Column("circuit_since", UTCDateTime()),
    sa.Column("circuit_reason", sa.String(500)),
    sa.Column("unreachable_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("probe_at", UTCDateTime()),  # open: when the next probe may go
    sa.Column("probe_interval", sa.Integer()),  # open: seconds from one probe to the next
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("deleted_at", UTCDateTime()),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_events_created_at", "created_at"),  # retention
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("event_id", sa.ForeignKey("events.id"), nullable=False),
    sa.Column("subscription_id", sa.ForeignKey("subscriptions.id"), nullable=False),
    # pending | in_flight | delivered | failed | skipped | cancelled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime()),
    sa.Column("lease_until", UTCDateTime()),
    sa.Column("enqueued_at", UTCDateTime()),
    sa.Column("last_status_code", sa.Integer()),
    sa.Column("last_error", sa.String(500)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("delivered_at", UTCDateTime()),
    sa.UniqueConstraint("event_id", "subscription_id", name="uq_deliveries_event_subscription"),
    sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_deliveries_finished", "status", "updated_at"),  # retention
    # A subscription's log, newest first, read in index order from any cursor (and its rows
    # for every other per-subscription query: it leads with subscription_id).
    sa.Index("ix_deliveries_subscription_created", "subscription_id", "created_at", "id"),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("delivery_id", sa.ForeignKey("deliveries.id"), nullable=False, index=True),
    sa.Column("attempted_at", UTCDateTime(), nullable=False),
    sa.Column("duration_ms", sa.Integer(), nullable=False),
    sa.Column("status_code", sa.Integer()),
    sa.Column("error", sa.String(500)),
    sa.Column("response_body", sa.Text()),
)

inbound_events = sa.Table(
    "inbound_events",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("dedupe_key", sa.String(400), nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("headers", sa.JSON(), nullable=False),
    # queued | processed | ignored | failed
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("error", sa.String(1000)),
    sa.Column("reason", sa.String(1000)),  # why an `ignored` event carries nothing Apex uses
    sa.Column("result", sa.JSON()),
    sa.Column("next_attempt_at", UTCDateTime()),
    sa.Column("enqueued_at", UTCDateTime()),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("processed_at", UTCDateTime()),
    sa.UniqueConstraint("source", "dedupe_key", name="uq_inbound_events_source_dedupe"),
    sa.Index("ix_inbound_events_due", "status", "next_attempt_at"),
    sa.Index("ix_inbound_events_processed", "status", "processed_at"),  # retention
    # GET /api/inbound newest first, by status or not, in index order from any cursor (and
    # retention's failed events by age).
    sa.Index("ix_inbound_events_status_received", "status", "received_at", "id"),
    sa.Index("ix_inbound_events_received", "received_at", "id"),
)

# Per-source counts of processed records not yet reported by a connector.synced event.
connector_stats = sa.Table(
    "connector_stats",
    metadata,
    sa.Column("source", sa.String(16), primary_key=True),
    sa.Column("records", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("leads_created", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("leads_updated", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("batches", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_synced_at", UTCDateTime()),
)
