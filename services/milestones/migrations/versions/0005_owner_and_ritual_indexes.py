"""indexes: what an owner holds, and the ritual days

`milestones.owner_key` had no index of its own (the once-ever constraint
leads with the type), so reading what a partner and their couple hold was a
scan of every couple's milestones. `ix_days_rituals` holds the ritual days
alone (with their count, on PostgreSQL), so a couple's ritual total reads
those and not every day of their history.

Revision ID: 0005
Revises: 0004
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index("ix_milestones_owner_key", "milestones", ["owner_key"])
    op.create_index("ix_days_rituals", "days", ["partner_id", "local_date"], postgresql_include=["ritual_count"],
                    postgresql_where=sa.text("ritual_count > 0"), sqlite_where=sa.text("ritual_count > 0"))


def downgrade() -> None:
    op.drop_index("ix_days_rituals", table_name="days")
    op.drop_index("ix_milestones_owner_key", table_name="milestones")
