"""subscriptions: endpoint health (a circuit per subscription) and per-subscription limits

Revision ID: 5e
Revises: 4d
Create Date: 2026-12-01 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import apex.db

revision: str = "5e"
down_revision: str | None = "4d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("rate_limit", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("concurrency", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("circuit", sa.String(length=16), nullable=False, server_default="closed")
        )
        batch.add_column(
            sa.Column("circuit_since", apex.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("circuit_reason", sa.String(length=500), nullable=True))
        batch.add_column(
            sa.Column("unreachable_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("probe_at", apex.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("probe_interval", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        for name in (
            "probe_interval",
            "probe_at",
            "unreachable_count",
            "circuit_reason",
            "circuit_since",
            "circuit",
            "concurrency",
            "rate_limit",
        ):
            batch.drop_column(name)
