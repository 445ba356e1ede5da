"""outbox: a trigger wakes the relay (PostgreSQL)

A statement-level trigger on the outbox sends the relay's NOTIFY when an event
row is inserted, instead of a statement of its own in every transaction.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from alembic import op

from shared.outbox import WAKE_TRIGGER_DOWN, WAKE_TRIGGER_UP, migrate_wake_trigger

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    migrate_wake_trigger(op, WAKE_TRIGGER_UP)


def downgrade() -> None:
    migrate_wake_trigger(op, WAKE_TRIGGER_DOWN)
