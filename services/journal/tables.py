"""The journal's own database."""
from __future__ import annotations

from sqlalchemy import Column, Date, ForeignKey, Index, Integer, String, Table, Text

from shared.consumer import processed_events_table
from shared.db import JSONType, UTCDateTime, service_metadata
from shared.outbox import outbox_table

metadata = service_metadata()

couples = Table(
    "couples", metadata,
    Column("id", String(36), primary_key=True),
    Column("invite_code", String(16), nullable=False, unique=True),
    Column("partner_count", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

accounts = Table(
    "accounts", metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("display_name", String(80), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("couple_id", String(36), ForeignKey("couples.id"), nullable=True, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # Login throttling: failures inside the current window.
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("failed_since", UTCDateTime(), nullable=True),
)

entries = Table(
    "entries", metadata,
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
