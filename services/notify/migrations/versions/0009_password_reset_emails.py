"""reset_emails: password reset links to send, at once and once

The journal publishes `journal.password.reset_requested`; the delivery worker
sends the link by SMTP and then deletes the row (with its token).

Revision ID: 0009_reset_emails
Revises: 0008_push
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0009_reset_emails"
down_revision: str | Sequence[str] | None = "0008_push"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reset_emails",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column("token", sa.String(length=128), nullable=False),
        sa.Column("expires_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("due_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reset_emails")),
    )
    op.create_index(op.f("ix_reset_emails_partner_id"), "reset_emails", ["partner_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_reset_emails_partner_id"), table_name="reset_emails")
    op.drop_table("reset_emails")
