"""sessions with refresh tokens, password resets, throttles, invite expiry

Sessions (one per device login) with their refresh tokens kept as hashes;
password reset links kept as hashes; failed attempts counted per key in a
table every web worker and process shares; an invite code's expiry (7 days;
existing codes expire 7 days after they were made). The per-account failure
count of the accounts table goes: an account is never locked any more.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INVITE_TTL = timedelta(days=7)


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column("device_name", sa.String(length=80), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["accounts.id"],
            name=op.f("fk_sessions_partner_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index(op.f("ix_sessions_partner_id"), "sessions", ["partner_id"])
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("issued_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("retired_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_refresh_tokens_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_refresh_tokens")),
    )
    op.create_index(op.f("ix_refresh_tokens_session_id"), "refresh_tokens", ["session_id"])
    op.create_table(
        "password_resets",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["accounts.id"],
            name=op.f("fk_password_resets_partner_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_password_resets")),
    )
    op.create_index(op.f("ix_password_resets_partner_id"), "password_resets", ["partner_id"])
    op.create_table(
        "throttles",
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_throttles")),
    )
    op.create_index("ix_throttles_last_failure", "throttles", ["last_failure_at"])

    op.add_column(
        "couples",
        sa.Column("invite_expires_at", shared.db.UTCDateTime(timezone=True), nullable=True),
    )
    couples = sa.table(
        "couples",
        sa.column("id", sa.String),
        sa.column("created_at", shared.db.UTCDateTime()),
        sa.column("invite_expires_at", shared.db.UTCDateTime()),
    )
    conn = op.get_bind()
    for couple_id, created_at in conn.execute(sa.select(couples.c.id, couples.c.created_at)).all():
        conn.execute(
            sa.update(couples)
            .where(couples.c.id == couple_id)
            .values(invite_expires_at=created_at + INVITE_TTL)
        )
    with op.batch_alter_table("couples") as batch:
        batch.alter_column(
            "invite_expires_at", existing_type=shared.db.UTCDateTime(timezone=True), nullable=False
        )
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("failed_logins")
        batch.drop_column("failed_since")


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("failed_logins", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(
            sa.Column("failed_since", shared.db.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("couples") as batch:
        batch.drop_column("invite_expires_at")
    op.drop_index("ix_throttles_last_failure", table_name="throttles")
    op.drop_table("throttles")
    op.drop_index(op.f("ix_password_resets_partner_id"), table_name="password_resets")
    op.drop_table("password_resets")
    op.drop_index(op.f("ix_refresh_tokens_session_id"), table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    op.drop_index(op.f("ix_sessions_partner_id"), table_name="sessions")
    op.drop_table("sessions")
