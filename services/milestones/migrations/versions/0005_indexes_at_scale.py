"""indexes that keep a statement's cost with its own partner or couple

- `ix_milestones_owner_key`: what an owner holds (the once-ever constraint
  leads with the type, so reading it was a scan of every milestone).
- `ix_days_rituals`: the ritual days alone (with their count, on PostgreSQL),
  so a couple's ritual count does not read every day of their history.
- `ix_outbox_unpublished`: the rows still to publish, so the relay's claim
  stays a short read whatever its backlog.
- `ix_partners_scheduled` now holds the live partners alone: the evaluator's
  every tick walked every erased partner's tombstone.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.outbox import create_unpublished_index

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_milestones_owner_key", "milestones", ["owner_key"])
    op.create_index(
        "ix_days_rituals",
        "days",
        ["partner_id", "local_date"],
        postgresql_include=["ritual_count"],
        postgresql_where=sa.text("ritual_count > 0"),
        sqlite_where=sa.text("ritual_count > 0"),
    )
    create_unpublished_index(op)
    op.drop_index("ix_partners_scheduled", table_name="partners")
    op.create_index(
        "ix_partners_scheduled",
        "partners",
        ["next_scheduled_at"],
        postgresql_where=sa.text("erased IS false"),
        sqlite_where=sa.text("erased IS 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_partners_scheduled", table_name="partners")
    op.create_index("ix_partners_scheduled", "partners", ["next_scheduled_at"])
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_index("ix_days_rituals", table_name="days")
    op.drop_index("ix_milestones_owner_key", table_name="milestones")
