"""devices: the phones a partner registered for native push (FCM), each tied
to the login session it was registered under; and ended_sessions, the login
sessions the journal said ended, so that a still-valid token of one registers
no device

Revision ID: 0008_push
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0008_push"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("platform", sa.String(8), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["partner_id"], ["recipients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token", name="uq_devices_token"),
    )
    op.create_index("ix_devices_partner_id", "devices", ["partner_id"])
    op.create_index("ix_devices_session_id", "devices", ["session_id"])
    op.create_table(
        "ended_sessions",
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("ended_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )
    op.create_index("ix_ended_sessions_partner_id", "ended_sessions", ["partner_id"])
    op.create_index("ix_ended_sessions_ended_at", "ended_sessions", ["ended_at"])


def downgrade() -> None:
    op.drop_table("ended_sessions")
    op.drop_table("devices")
