"""The notify service's own database."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from shared.consumer import processed_events_table
from shared.db import JSONType, UTCDateTime, service_metadata
from shared.outbox import outbox_table

metadata = service_metadata()

# A partner as the events and their own preferences told us; `erased` is a
# tombstone that late events respect.
recipients = Table(
    "recipients",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(320), nullable=True),
    Column("display_name", String(80), nullable=True),
    Column("timezone", String(64), nullable=True),
    Column("couple_id", String(36), nullable=True),
    Column("erased", Boolean, nullable=False, server_default="0"),
    Column("in_app", Boolean, nullable=False, server_default="1"),
    Column("email_on", Boolean, nullable=False, server_default="1"),
    Column("push_on", Boolean, nullable=False, server_default="1"),
    Column("quiet_start", String(5), nullable=True),  # "22:00", the recipient's local time
    Column("quiet_end", String(5), nullable=True),
    Column("share_milestones_with_partner", Boolean, nullable=False, server_default="0"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "partner_id", String(36), ForeignKey("recipients.id", ondelete="CASCADE"), nullable=False
    ),
    Column("milestone_id", String(36), nullable=False),
    # whose milestone it is (a partner's own; null for the couple's): erased with her
    Column("owner_id", String(36), nullable=True, index=True),
    # the couple whose milestone it is (a couple's own; null for a partner's): removed when the couple ends
    Column("couple_id", String(36), nullable=True, index=True),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("read_at", UTCDateTime(), nullable=True),
    # The numbers of the email's chart (chart.chart_data), null for a milestone without one; never any text.
    Column("chart", JSONType, nullable=True),
    # One milestone makes at most one notification per recipient, whatever is redelivered.
    UniqueConstraint("milestone_id", "partner_id", name="uq_notifications_once"),
    Index("ix_notifications_inbox", "partner_id", "created_at", "id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "notification_id",
        String(36),
        ForeignKey("notifications.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # The channel (channels/ registry): in_app, email, webhook, apprise, push...
    Column("kind", String(10), nullable=False),
    # The key of the row it goes to: a channels row, a devices row for a push; null for the
    # inbox and for the account's own email address.
    Column("target_id", String(36), nullable=True),
    # The at-most-once key, kind[:target_id] (channels.key): written, compared, never parsed.
    Column("channel", String(60), nullable=False),
    Column("status", String(12), nullable=False),  # pending, sending, delivered, failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", String(300), nullable=True),
    Column("due_at", UTCDateTime(), nullable=True),
    Column("claimed_until", UTCDateTime(), nullable=True),  # a send in progress
    Column("delivered_at", UTCDateTime(), nullable=True),
    # Each channel delivers a notification at most once.
    UniqueConstraint("notification_id", "channel", name="uq_deliveries_once"),
    Index("ix_deliveries_due", "status", "due_at"),
    Index("ix_deliveries_target", "kind", "target_id"),
)

channels = Table(
    "channels",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "partner_id",
        String(36),
        ForeignKey("recipients.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column(
        "type", String(10), nullable=False
    ),  # its kind (channels/ registry): email, webhook, apprise
    Column("target", Text, nullable=False),  # an address or a URL
    Column("secret", String(64), nullable=True),  # a webhook's HMAC key
    Column("created_at", UTCDateTime(), nullable=False),
)

# A phone's push registration, tied to the login session it was made under: the
# session's end (journal.session.ended) removes it. `token` is an FCM registration
# token (both platforms'), a secret: never logged, never shown whole.
devices = Table(
    "devices",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "partner_id",
        String(36),
        ForeignKey("recipients.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("session_id", String(36), nullable=False, index=True),
    Column("platform", String(8), nullable=False),  # fcm (Android), apns (iOS, through FCM)
    Column("token", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # A token is one app install's: registered again, by whoever signed in there last, it moves.
    UniqueConstraint("token", name="uq_devices_token"),
)

# Login sessions the journal said ended: a token of one (valid until it expires) registers no device.
ended_sessions = Table(
    "ended_sessions",
    metadata,
    Column("session_id", String(36), primary_key=True),
    Column("partner_id", String(36), nullable=False, index=True),
    Column("ended_at", UTCDateTime(), nullable=False, index=True),
)

# Couples ended by an erasure: a late announcement of their milestone is shown to no one.
ended_couples = Table(
    "ended_couples",
    metadata,
    Column("couple_id", String(36), primary_key=True),
    Column("ended_at", UTCDateTime(), nullable=False),  # the erasure's event time
)

# Password reset emails to send: transactional, sent once and at once (no pacing, no quiet hours, never in
# the inbox). The link's token is here only until the email is sent, fails for good or expires (resets.py).
reset_emails = Table(
    "reset_emails",
    metadata,
    Column("id", String(36), primary_key=True),  # the journal's event id
    Column("partner_id", String(36), nullable=False, index=True),
    Column("token", String(128), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("status", String(12), nullable=False),  # pending, sending
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("claimed_until", UTCDateTime(), nullable=True),  # a send in progress
)

outbox = outbox_table(metadata)
processed_events = processed_events_table(metadata)
