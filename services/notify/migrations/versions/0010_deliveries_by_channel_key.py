"""deliveries.kind and deliveries.target_id: a delivery names its channel (the
channels registry's kind) and the key of the row it goes to (a channels row, a
devices row for a push), not a string to parse; `channel` stays as the
at-most-once key, kind[:target_id]

Revision ID: 0010_channel_keys
Revises: 0009_reset_emails
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_channel_keys"
down_revision: str | Sequence[str] | None = "0009_reset_emails"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# kind[:target_id] split, in each dialect's words
_SPLIT = {
    "postgresql": "UPDATE deliveries SET kind = split_part(channel, ':', 1), "
    "target_id = NULLIF(split_part(channel, ':', 2), '')",
    "sqlite": "UPDATE deliveries SET "
    "kind = CASE WHEN instr(channel, ':') > 0 THEN substr(channel, 1, instr(channel, ':') - 1) "
    "ELSE channel END, "
    "target_id = CASE WHEN instr(channel, ':') > 0 THEN substr(channel, instr(channel, ':') + 1) END",
}


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("kind", sa.String(10), nullable=True))
        batch.add_column(sa.Column("target_id", sa.String(36), nullable=True))
    op.execute(_SPLIT[op.get_bind().dialect.name])
    with op.batch_alter_table("deliveries") as batch:
        batch.alter_column("kind", existing_type=sa.String(10), nullable=False)
        batch.create_index("ix_deliveries_target", ["kind", "target_id"])


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_target")
        batch.drop_column("target_id")
        batch.drop_column("kind")
