"""inbound events: the reason an event is ignored

Revision ID: 4d
Revises: 3c
Create Date: 2026-12-01 11:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4d"
down_revision: str | None = "3c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_events") as batch:
        batch.add_column(sa.Column("reason", sa.String(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound_events") as batch:
        batch.drop_column("reason")
