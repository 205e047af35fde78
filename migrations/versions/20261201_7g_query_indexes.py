"""indexes for queries that must not slow down as tables grow: a subscription's delivery log
(replacing the index on subscription_id alone, which it leads with), inbound events newest
first by status or not, leads newest first

Revision ID: 7g
Revises: 6f
Create Date: 2026-12-01 20:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "7g"
down_revision: str | None = "6f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_subscription_created",
        "deliveries",
        ["subscription_id", "created_at", "id"],
    )
    op.drop_index("ix_deliveries_subscription_id", table_name="deliveries")
    op.create_index(
        "ix_inbound_events_status_received", "inbound_events", ["status", "received_at", "id"]
    )
    op.create_index("ix_inbound_events_received", "inbound_events", ["received_at", "id"])
    op.create_index("ix_leads_created", "leads", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_leads_created", table_name="leads")
    op.drop_index("ix_inbound_events_received", table_name="inbound_events")
    op.drop_index("ix_inbound_events_status_received", table_name="inbound_events")
    op.create_index("ix_deliveries_subscription_id", "deliveries", ["subscription_id"])
    op.drop_index("ix_deliveries_subscription_created", table_name="deliveries")
