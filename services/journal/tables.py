"""The journal's own database."""

from __future__ import annotations

from sqlalchemy import Column, Date, ForeignKey, Index, Integer, String, Table, Text

from shared.consumer import processed_events_table
from shared.db import JSONType, UTCDateTime, service_metadata
from shared.outbox import outbox_table

metadata = service_metadata()

couples = Table(
    "couples",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("invite_code", String(16), nullable=False, unique=True),
    Column("partner_count", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # The invite code works until then (7 days after it was made or re-issued), and while the couple has one partner.
    Column("invite_expires_at", UTCDateTime(), nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("display_name", String(80), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("couple_id", String(36), ForeignKey("couples.id"), nullable=True, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

# A device's session: what one login on one device holds. Its refresh tokens are kept only as hashes.
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "partner_id",
        String(36),
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("device_name", String(80), nullable=True),  # what the app sent at login
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),  # 60 days after the last refresh (sliding)
)

# Every refresh token a session was given: SHA-256 of the token, never the token. The current one has no
# retired_at; a retired one presented again ends the session (reuse detection).
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column(
        "session_id",
        String(36),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("issued_at", UTCDateTime(), nullable=False),
    Column("retired_at", UTCDateTime(), nullable=True),
)

# Password reset links: SHA-256 of the link's token; single use, 30 minutes.
password_resets = Table(
    "password_resets",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column(
        "partner_id",
        String(36),
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
)

# Failed attempts (logins, resets, joins) by key: an (account, client address) pair or a client address
# (services/journal/throttle.py). Shared by every web worker and process, since it is in the database.
throttles = Table(
    "throttles",
    metadata,
    Column("key", String(120), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure_at", UTCDateTime(), nullable=False),
    Column("blocked_until", UTCDateTime(), nullable=True),
    Index("ix_throttles_last_failure", "last_failure_at"),
)

entries = Table(
    "entries",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("author_id", String(36), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("utc_offset_minutes", Integer, nullable=False),
    Column("local_date", Date, nullable=False),
    Column("visibility", String(8), nullable=False),
    Column("note", Text, nullable=True),
    Column("measures", JSONType, nullable=False),
    Column("body_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_entries_author_time", "author_id", "occurred_at", "id"),
)

outbox = outbox_table(metadata)
processed_events = processed_events_table(metadata)
