"""What a partner can do in the notify service: read the inbox, set preferences,
choose channels, register phones for push."""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import pagination
from shared.db import utcnow
from shared.errors import Conflict, Invalid, NotFound, Unauthorized
from shared.outbox import emit

from . import SOURCE, devices
from . import channels as registry
from .handlers import recipient
from .tables import channels, deliveries, ended_sessions, notifications, outbox, recipients
from .tables import devices as device_rows


def _view(s: Session, rows) -> list[dict]:
    ids = [r.id for r in rows]
    by_note: dict[str, list] = {i: [] for i in ids}
    if ids:
        for d in s.execute(
            select(deliveries)
            .where(deliveries.c.notification_id.in_(ids))
            .order_by(deliveries.c.channel)
        ):
            by_note[d.notification_id].append(
                {
                    "channel": d.kind,
                    "status": d.status,
                    "attempts": d.attempts,
                    "delivered_at": d.delivered_at,
                }
            )
    return [
        {
            "id": r.id,
            "milestone_id": r.milestone_id,
            "title": r.title,
            "body": r.body,
            "created_at": r.created_at,
            "read_at": r.read_at,
            "deliveries": by_note[r.id],
        }
        for r in rows
    ]


def inbox(s: Session, partner_id: str, query: dict) -> dict:
    stmt = select(notifications).where(notifications.c.partner_id == partner_id)
    if query.get("unread"):
        stmt = stmt.where(notifications.c.read_at.is_(None))
    return pagination.newest_first(
        s, stmt, notifications.c.created_at, notifications.c.id, query, lambda page: _view(s, page)
    )


def mark_read(s: Session, partner_id: str, notification_id: str) -> dict:
    row = s.execute(
        select(notifications).where(
            notifications.c.id == notification_id, notifications.c.partner_id == partner_id
        )
    ).first()
    if row is None:
        raise NotFound("No such notification.")
    if row.read_at is None:
        s.execute(
            update(notifications)
            .where(notifications.c.id == notification_id)
            .values(read_at=utcnow())
        )
        row = s.execute(select(notifications).where(notifications.c.id == notification_id)).first()
    return _view(s, [row])[0]


def _preferences(row) -> dict:
    quiet = {"start": row.quiet_start, "end": row.quiet_end} if row.quiet_start else None
    return {
        "channels": {"in_app": row.in_app, "email": row.email_on, "push": row.push_on},
        "quiet_hours": quiet,
        "share_milestones_with_partner": row.share_milestones_with_partner,
    }


def preferences(s: Session, partner_id: str) -> dict:
    return _preferences(recipient(s, partner_id))


def change_preferences(s: Session, partner_id: str, changes: dict) -> dict:
    """Change the fields named, keep the rest; tell the milestones service."""
    row = recipient(s, partner_id)
    values: dict = {}
    names = {"in_app": "in_app", "email": "email_on", "push": "push_on"}
    for key, value in (changes.get("channels") or {}).items():
        values[names[key]] = value
    if "quiet_hours" in changes:
        quiet = changes["quiet_hours"]
        values.update(
            quiet_start=quiet["start"] if quiet else None, quiet_end=quiet["end"] if quiet else None
        )
    if "share_milestones_with_partner" in changes:
        values["share_milestones_with_partner"] = changes["share_milestones_with_partner"]
    if values:
        s.execute(update(recipients).where(recipients.c.id == partner_id).values(**values))
    row = s.execute(select(recipients).where(recipients.c.id == row.id)).one()
    emit(
        s,
        outbox,
        "notify.preferences.changed",
        source=SOURCE,
        subject=partner_id,
        data={
            "partner_id": partner_id,
            "share_milestones_with_partner": row.share_milestones_with_partner,
        },
    )
    return _preferences(row)


# --- delivery targets ---

MAX_CHANNELS = (
    10  # an account's delivery targets, all types together: a handful is what a person uses
)


def _channel_view(row, *, with_secret: bool = False) -> dict:
    out = {"id": row.id, "type": row.type, "created_at": row.created_at}
    channel = registry.get(row.type)
    out[(channel.field if channel else None) or "url"] = row.target
    if with_secret and row.secret:
        out["secret"] = row.secret
    return out


def add_channel(s: Session, partner_id: str, data: dict, *, allow_private: bool) -> dict:
    """A delivery target, as its channel checks it (webhook and Apprise targets must not reach
    private addresses); at most ``MAX_CHANNELS`` an account."""
    recipient(s, partner_id)
    kind = data["type"]
    channel = registry.get(kind)
    try:
        target = channel.check(data[channel.field], allow_private=allow_private)
    except registry.TargetRefused as e:
        raise Invalid(
            f"The request has invalid fields: {channel.field}", errors={channel.field: [e.message]}
        ) from None
    # Counted under the account's row lock (after the target checks, which may wait on DNS):
    # two requests at once cannot both take the last place.
    s.execute(select(recipients.c.id).where(recipients.c.id == partner_id).with_for_update())
    held = s.execute(
        select(func.count()).select_from(channels).where(channels.c.partner_id == partner_id)
    ).scalar()
    if held >= MAX_CHANNELS:
        raise Conflict(
            f"An account has at most {MAX_CHANNELS} channels; remove one before adding another."
        )
    row = {
        "id": str(uuid.uuid4()),
        "partner_id": partner_id,
        "type": kind,
        "target": target,
        "secret": secrets.token_hex(32) if channel.signed else None,
        "created_at": utcnow(),
    }
    s.execute(channels.insert().values(**row))
    return _channel_view(
        s.execute(select(channels).where(channels.c.id == row["id"])).one(), with_secret=True
    )


def list_channels(s: Session, partner_id: str) -> dict:
    rows = s.execute(
        select(channels)
        .where(channels.c.partner_id == partner_id)
        .order_by(channels.c.created_at, channels.c.id)
    ).all()
    return {"items": [_channel_view(r) for r in rows]}


def remove_channel(s: Session, partner_id: str, channel_id: str) -> None:
    gone = s.execute(
        delete(channels).where(channels.c.id == channel_id, channels.c.partner_id == partner_id)
    )
    if gone.rowcount != 1:
        raise NotFound("No such channel.")


# --- phones, for native push ---

MAX_DEVICES = 10  # an account's registered phones: a handful is what a person has


def _device_view(row, session_id: str | None) -> dict:
    return {
        "id": row.id,
        "platform": row.platform,
        "token_hint": devices.hint(row.token),
        "this_session": row.session_id == session_id,
        "created_at": row.created_at,
    }


def register_device(
    s: Session, partner_id: str, session_id: str | None, data: dict
) -> tuple[dict, int]:
    """Register the app's push token under the caller's login session (201), or move
    a token the caller registered before to this session (200). A token is one app
    install's: if another account registered it, it is that account's no longer.
    Refused: a token of no session, or of one that has ended (401); an 11th device (409)."""
    if session_id is None:
        raise Unauthorized(
            "This token belongs to no login session; sign in again to register a device."
        )
    recipient(s, partner_id)
    # Under the account's row lock, as the session's end is (handlers.session_ended): one waits for the other.
    s.execute(select(recipients.c.id).where(recipients.c.id == partner_id).with_for_update())
    if s.execute(
        select(ended_sessions.c.session_id).where(ended_sessions.c.session_id == session_id)
    ).first():
        raise Unauthorized("This login session has ended; sign in again to register a device.")
    token, platform = data["token"], data["platform"]
    held = s.execute(select(device_rows).where(device_rows.c.token == token)).first()
    if held is not None and held.partner_id == partner_id:
        s.execute(
            update(device_rows)
            .where(device_rows.c.id == held.id)
            .values(session_id=session_id, platform=platform)
        )
        return _device_view(
            s.execute(select(device_rows).where(device_rows.c.id == held.id)).one(), session_id
        ), 200
    count = s.execute(
        select(func.count()).select_from(device_rows).where(device_rows.c.partner_id == partner_id)
    ).scalar()
    if count >= MAX_DEVICES:
        raise Conflict(
            f"An account has at most {MAX_DEVICES} devices; remove one before adding another."
        )
    if held is not None:
        devices.forget(s, device_rows.c.id == held.id)
    row = {
        "id": str(uuid.uuid4()),
        "partner_id": partner_id,
        "session_id": session_id,
        "platform": platform,
        "token": token,
        "created_at": utcnow(),
    }
    try:
        with s.begin_nested():
            s.execute(device_rows.insert().values(**row))
    except IntegrityError:  # another account registered the same token at this very moment
        raise Conflict(
            "This device was registered by another request at the same moment; try again."
        ) from None
    return _device_view(
        s.execute(select(device_rows).where(device_rows.c.id == row["id"])).one(), session_id
    ), 201


def list_devices(s: Session, partner_id: str, session_id: str | None) -> dict:
    rows = s.execute(
        select(device_rows)
        .where(device_rows.c.partner_id == partner_id)
        .order_by(device_rows.c.created_at, device_rows.c.id)
    ).all()
    return {"items": [_device_view(r, session_id) for r in rows]}


def remove_device(s: Session, partner_id: str, device_id: str) -> None:
    if not devices.forget(
        s, and_(device_rows.c.id == device_id, device_rows.c.partner_id == partner_id)
    ):
        raise NotFound("No such device.")
