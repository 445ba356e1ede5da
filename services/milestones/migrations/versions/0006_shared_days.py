"""a couple's milestones from shared entries alone; couples ended by an erasure

- `entries.visibility`: every entry's, as its events carry it. The entries
  stored before it have an unknown visibility and are taken as private (the
  safe side): they keep counting toward their author's own milestones and
  progress, and no longer toward the couple's. Nothing is backfilled: an
  entry's next event (a revision) stores its visibility.
- `shared_days`: the daily aggregate of the shared entries alone, with the
  columns of `days` and its ritual days' index; it starts empty, as every
  stored entry is private.
- `ended_couples` and `partners.left_couple_at`: a couple ended by an
  erasure, so that a late event never attaches anyone to it again, and what
  was shared in it stays private.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import shared.db

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("entries") as batch:
        batch.add_column(
            sa.Column("visibility", sa.String(8), nullable=False, server_default="private")
        )
    with op.batch_alter_table("partners") as batch:
        batch.add_column(
            sa.Column("left_couple_at", shared.db.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "shared_days",
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("episodes", sa.Integer(), nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("ritual_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ratings", sa.Integer(), server_default="0", nullable=False),
        sa.Column("activities", sa.Integer(), nullable=False),
        sa.Column("conflicts", sa.Integer(), nullable=False),
        sa.Column("conflicts_repaired_24h", sa.Integer(), nullable=False),
        sa.Column("weekly_check_ins", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("partner_id", "local_date"),
    )
    op.create_index(
        "ix_shared_days_rituals",
        "shared_days",
        ["partner_id", "local_date"],
        postgresql_include=["ritual_count"],
        postgresql_where=sa.text("ritual_count > 0"),
        sqlite_where=sa.text("ritual_count > 0"),
    )
    op.create_table(
        "ended_couples",
        sa.Column("couple_id", sa.String(36), nullable=False),
        sa.Column("ended_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("couple_id"),
    )


def downgrade() -> None:
    op.drop_table("ended_couples")
    op.drop_index("ix_shared_days_rituals", table_name="shared_days")
    op.drop_table("shared_days")
    with op.batch_alter_table("partners") as batch:
        batch.drop_column("left_couple_at")
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("visibility")
