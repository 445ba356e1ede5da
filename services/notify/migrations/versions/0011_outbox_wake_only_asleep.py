"""outbox: the trigger wakes the relay only while a relay is asleep (PostgreSQL)

See shared.outbox.SLEEP_LOCK.

Revision ID: 0011_wake_only_asleep
Revises: 0010_channel_keys
"""

from collections.abc import Sequence

from alembic import op

from shared.outbox import WAKE_ONLY_ASLEEP_DOWN, WAKE_ONLY_ASLEEP_UP, migrate_wake_trigger

revision: str = "0011_wake_only_asleep"
down_revision: str | Sequence[str] | None = "0010_channel_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    migrate_wake_trigger(op, WAKE_ONLY_ASLEEP_UP)


def downgrade() -> None:
    migrate_wake_trigger(op, WAKE_ONLY_ASLEEP_DOWN)
