"""batches of entries being applied: a replay waits for the whole batch

`batches`: one row per batch of entries (``POST /v1/entries/batch``) whose
events are not all applied yet; neither its partner nor their couple is
evaluated while it is there (for at most ``evaluation.BATCH_HOLD`` after its
last event).

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("couple_id", sa.String(36), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False),
        sa.Column("last_applied_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
    )
    op.create_index("ix_batches_partner_id", "batches", ["partner_id"])
    op.create_index("ix_batches_couple_id", "batches", ["couple_id"])


def downgrade() -> None:
    op.drop_index("ix_batches_couple_id", table_name="batches")
    op.drop_index("ix_batches_partner_id", table_name="batches")
    op.drop_table("batches")
