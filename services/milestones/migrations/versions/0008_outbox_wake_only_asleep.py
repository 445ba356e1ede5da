"""outbox: the trigger wakes the relay only while a relay is asleep (PostgreSQL)

See shared.outbox.SLEEP_LOCK.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

from shared.outbox import WAKE_ONLY_ASLEEP_DOWN, WAKE_ONLY_ASLEEP_UP, migrate_wake_trigger

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    migrate_wake_trigger(op, WAKE_ONLY_ASLEEP_UP)


def downgrade() -> None:
    migrate_wake_trigger(op, WAKE_ONLY_ASLEEP_DOWN)
