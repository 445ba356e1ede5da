"""days: the five lists packed into one JSON column, and a count of ratings

Evaluation decodes one column a row instead of five, and finds rated days by
an integer.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LISTS = ("intensities", "communication", "connection", "understanding", "rituals")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _days(*columns: str):
    return sa.table(
        "days",
        sa.column("partner_id", sa.String()),
        sa.column("local_date", sa.Date()),
        *(sa.column(c, JSON) for c in columns),
        sa.column("ratings", sa.Integer()),
    )


def upgrade() -> None:
    with op.batch_alter_table("days") as batch:
        batch.add_column(sa.Column("detail", JSON, nullable=True))
        batch.add_column(sa.Column("ratings", sa.Integer(), nullable=False, server_default="0"))
    days = _days("detail", *LISTS)
    conn = op.get_bind()
    for row in conn.execute(sa.select(days)).all():
        detail = {k: list(getattr(row, k) or []) for k in LISTS}
        conn.execute(
            sa.update(days)
            .where(days.c.partner_id == row.partner_id, days.c.local_date == row.local_date)
            .values(detail=detail, ratings=len(detail["communication"]))
        )
    with op.batch_alter_table("days") as batch:
        batch.alter_column("detail", existing_type=JSON, nullable=False)
        for k in LISTS:
            batch.drop_column(k)


def downgrade() -> None:
    with op.batch_alter_table("days") as batch:
        for k in LISTS:
            batch.add_column(sa.Column(k, JSON, nullable=True))
    days = _days("detail", *LISTS)
    conn = op.get_bind()
    for row in conn.execute(sa.select(days)).all():
        conn.execute(
            sa.update(days)
            .where(days.c.partner_id == row.partner_id, days.c.local_date == row.local_date)
            .values(**{k: row.detail[k] for k in LISTS})
        )
    with op.batch_alter_table("days") as batch:
        for k in LISTS:
            batch.alter_column(k, existing_type=JSON, nullable=False)
        batch.drop_column("ratings")
        batch.drop_column("detail")
