"""deliveries: claimed_until (a send in progress) and the due index

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(
            sa.Column("claimed_until", shared.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.create_index("ix_deliveries_due", ["status", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_due")
        batch.drop_column("claimed_until")
