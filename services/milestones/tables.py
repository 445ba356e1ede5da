"""The milestones service's own database: its view of partners, couples and
entries (built from events alone), per-partner daily aggregates (of every
entry, and of the shared ones alone), and the milestones achieved."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from shared.consumer import processed_events_table
from shared.db import JSONType, UTCDateTime, service_metadata
from shared.outbox import outbox_table

metadata = service_metadata()

# A partner as the events told us. A row can exist before `registered` arrives
# (events come in any order); `erased` is a tombstone that late events respect.
partners = Table(
    "partners",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("couple_id", String(36), nullable=True, index=True),
    Column("timezone", String(64), nullable=True),
    Column("share_milestones_with_partner", Boolean, nullable=False, server_default="0"),
    Column("sharing_version", UTCDateTime(), nullable=True),  # time of the preference event applied
    Column("erased", Boolean, nullable=False, server_default="0"),
    # Evaluation bookkeeping: coalesced after new data, and on a daily schedule.
    Column("dirty_since", UTCDateTime(), nullable=True),
    Column("replay_from", Date, nullable=True),  # earliest local date touched by late data
    Column("next_scheduled_at", UTCDateTime(), nullable=True),
    Column("evaluated_through", Date, nullable=True),
    # When their couple ended (the event time of the other partner's erasure): what they had shared until
    # then is private now, whenever its event arrives.
    Column("left_couple_at", UTCDateTime(), nullable=True),
    Index("ix_partners_dirty", "dirty_since"),
    # The live partners alone: erased ones (tombstones, kept for ever) are never scheduled.
    Index(
        "ix_partners_scheduled",
        "next_scheduled_at",
        postgresql_where=text("erased IS false"),
        sqlite_where=text("erased IS 0"),
    ),
)

# Every entry's measures (no note ever arrives). `version` is the event time of
# the state stored, so an older event arriving late changes nothing.
entries = Table(
    "entries",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("partner_id", String(36), nullable=False),
    Column("couple_id", String(36), nullable=True),
    Column("kind", String(32), nullable=True),
    Column("occurred_at", UTCDateTime(), nullable=True),
    Column("local_date", Date, nullable=True),
    Column("measures", JSONType, nullable=True),
    Column("deleted", Boolean, nullable=False, server_default="0"),
    Column("version", UTCDateTime(), nullable=False),
    # "shared" or "private": only shared entries feed the couple's milestones
    Column("visibility", String(8), nullable=False, server_default="private"),
    Index("ix_entries_partner_day", "partner_id", "local_date"),
)


def _day_table(name: str) -> Table:
    """One row per partner and local date, recomputed from `entries` whenever one of
    that day's entries changes: evaluation reads a few hundred of these at most."""
    return Table(
        name,
        metadata,
        Column("partner_id", String(36), primary_key=True),
        Column("local_date", Date, primary_key=True),
        Column("entries", Integer, nullable=False),
        Column("episodes", Integer, nullable=False),
        # The day's lists in one column (one decode a row, not five): {"intensities",
        # "communication", "connection", "understanding", "rituals"}, each sorted.
        Column("detail", JSONType, nullable=False),
        # len(detail.rituals), so the couple's ritual total is a SUM, not a read of every day
        Column("ritual_count", Integer, nullable=False, server_default="0"),
        # len(detail.communication), so rated days are found without decoding a row
        Column("ratings", Integer, nullable=False, server_default="0"),
        Column("activities", Integer, nullable=False),
        Column("conflicts", Integer, nullable=False),
        Column("conflicts_repaired_24h", Integer, nullable=False),
        Column("weekly_check_ins", Integer, nullable=False),
        # The ritual days alone, their count in the index (PostgreSQL): a couple's ritual total reads these.
        Index(
            f"ix_{name}_rituals",
            "partner_id",
            "local_date",
            postgresql_include=["ritual_count"],
            postgresql_where=text("ritual_count > 0"),
            sqlite_where=text("ritual_count > 0"),
        ),
    )


# Every entry of the partner's: their own milestones and progress.
days = _day_table("days")
# The entries the partner shared alone: the couple's milestones read nothing else, so nothing
# the other partner sees is derived from a private entry.
shared_days = _day_table("shared_days")

milestones = Table(
    "milestones",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("type", String(40), nullable=False),
    Column("level", Integer, nullable=False),
    Column("couple_id", String(36), nullable=True, index=True),
    Column("partner_id", String(36), nullable=True, index=True),
    # whose milestone it is: the partner id, or the couple id for a couple's own
    Column("owner_key", String(36), nullable=False),
    Column("achieved_at", UTCDateTime(), nullable=False),
    Column("as_of", Date, nullable=False),
    Column("headline", Text, nullable=False),
    Column("evidence", JSONType, nullable=False),
    # Once, ever: a level of a type is achieved by its owner one time.
    UniqueConstraint("type", "level", "owner_key", name="uq_milestones_once"),
    # What an owner holds (an evaluation reads it): not from the constraint, whose first column is the type.
    Index("ix_milestones_owner_key", "owner_key"),
)

# Couples ended by an erasure: a late event never attaches anyone to one again.
ended_couples = Table(
    "ended_couples",
    metadata,
    Column("couple_id", String(36), primary_key=True),
    Column("ended_at", UTCDateTime(), nullable=False),  # the erasure's event time
)

# Batches of entries being applied (``POST /v1/entries/batch``): each of the batch's events counts
# itself in; the row goes when the last one is applied. Until then neither its partner nor their
# couple is evaluated (``evaluation.HELD``), so a replay never judges half a batch.
batches = Table(
    "batches",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("partner_id", String(36), nullable=False, index=True),
    Column("couple_id", String(36), nullable=True, index=True),
    Column("size", Integer, nullable=False),  # the batch's entries (and events)
    Column("applied", Integer, nullable=False),  # its events applied so far
    Column("last_applied_at", UTCDateTime(), nullable=False),
)

outbox = outbox_table(metadata)
processed_events = processed_events_table(metadata)
