"""days.ritual_count: the couple's ritual total as a SUM

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("days") as batch:
        batch.add_column(
            sa.Column("ritual_count", sa.Integer(), nullable=False, server_default="0")
        )
    days = sa.table(
        "days",
        sa.column("rituals", sa.JSON()),
        sa.column("ritual_count", sa.Integer()),
        sa.column("partner_id", sa.String()),
        sa.column("local_date", sa.Date()),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(days.c.partner_id, days.c.local_date, days.c.rituals)).all()
    for pid, day, rituals in rows:
        if rituals:
            conn.execute(
                sa.update(days)
                .where(days.c.partner_id == pid, days.c.local_date == day)
                .values(ritual_count=len(rituals))
            )


def downgrade() -> None:
    with op.batch_alter_table("days") as batch:
        batch.drop_column("ritual_count")
