"""indexes for retention: finished deliveries by status and age, events by age, inbound
events by status and processing time

Revision ID: 6f
Revises: 5e
Create Date: 2026-12-01 18:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "6f"
down_revision: str | None = "5e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_deliveries_finished", "deliveries", ["status", "updated_at"])
    op.create_index("ix_events_created_at", "events", ["created_at"])
    op.create_index("ix_inbound_events_processed", "inbound_events", ["status", "processed_at"])


def downgrade() -> None:
    op.drop_index("ix_inbound_events_processed", table_name="inbound_events")
    op.drop_index("ix_events_created_at", table_name="events")
    op.drop_index("ix_deliveries_finished", table_name="deliveries")
