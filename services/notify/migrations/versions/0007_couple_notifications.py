"""notifications.couple_id: the couple whose milestone a notification celebrates,
so that the erasure which ends a couple removes its milestones from the other
partner's inbox; and ended_couples, so that a late announcement of one is not
shown

The couple's notifications stored before (no owner) are given the couple their
recipient is in now: the one whose milestone it was.

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
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("couple_id", sa.String(length=36), nullable=True))
        batch.create_index("ix_notifications_couple_id", ["couple_id"])
    op.execute(
        "UPDATE notifications SET couple_id = (SELECT r.couple_id FROM recipients r "
        "WHERE r.id = notifications.partner_id) WHERE owner_id IS NULL"
    )
    op.create_table(
        "ended_couples",
        sa.Column("couple_id", sa.String(36), nullable=False),
        sa.Column("ended_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("couple_id"),
    )


def downgrade() -> None:
    op.drop_table("ended_couples")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index("ix_notifications_couple_id")
        batch.drop_column("couple_id")
