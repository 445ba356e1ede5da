"""outbox: an index of the rows still to publish

The relay claims the oldest unpublished rows. With `ix_outbox_pending`
alone (published_at, seq), a backlog of some 20,000 rows (a few minutes of
broker outage) turned each claim into a walk of every row kept, published
or not; `ix_outbox_unpublished` holds the unpublished ones in order.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

from shared.outbox import create_unpublished_index

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_unpublished_index(op)


def downgrade() -> None:
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
