"""The notify service's event handlers: who the partners are, and a
notification for each milestone and recipient, once."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.config import token_ttl_seconds
from shared.db import insert_if_new, utcnow
from shared.events import Event
from shared.outbox import emit_many, forget_published

from . import SOURCE, celebrate, channels, chart, delivery, devices, resets, stream
from .tables import channels as channel_rows
from .tables import (
    deliveries,
    ended_couples,
    ended_sessions,
    notifications,
    outbox,
    recipients,
)
from .tables import devices as device_rows


def recipient(s: Session, partner_id: str):
    """The recipient's row, created on first sight (events arrive in any order)."""
    row = s.execute(select(recipients).where(recipients.c.id == partner_id)).first()
    if row is None:
        try:
            with s.begin_nested():
                s.execute(recipients.insert().values(id=partner_id))
        except IntegrityError:
            pass  # created by a concurrent request or consumer
        row = s.execute(select(recipients).where(recipients.c.id == partner_id)).first()
    return row


def partner_registered(s: Session, ev: Event) -> None:
    d = ev.data
    row = recipient(s, str(d["partner_id"]))
    if not row.erased:
        s.execute(
            update(recipients)
            .where(recipients.c.id == row.id)
            .values(
                email=d["email"],
                display_name=celebrate.display_name(d.get("display_name")),
                timezone=d["timezone"],
            )
        )


def _ended(s: Session, couple_id: str) -> bool:
    """Whether an erasure has ended the couple."""
    return (
        s.execute(
            select(ended_couples.c.couple_id).where(ended_couples.c.couple_id == couple_id)
        ).first()
        is not None
    )


def couple_partnered(s: Session, ev: Event) -> None:
    """A couple formed; one ended by an erasure before this arrived attaches no one."""
    couple_id = str(ev.data["couple_id"])
    if _ended(s, couple_id):
        return
    for pid in map(str, ev.data["partner_ids"]):
        if not recipient(s, pid).erased:
            s.execute(
                update(recipients)
                .where(recipients.c.id == pid)
                .values(couple_id=str(ev.data["couple_id"]))
            )


def partner_erased(s: Session, ev: Event) -> None:
    """Her inbox, her channels, and her own milestones in her partner's inbox
    (they carry her name and her numbers) are removed; a tombstone stays.
    Her couple ends: its milestones leave her partner's inbox too, with their
    deliveries still to send, and a late announcement of one is shown to no one."""
    pid = str(ev.data["partner_id"])
    row = recipient(s, pid)
    couple_id = str(ev.data["couple_id"]) if ev.data.get("couple_id") else row.couple_id
    hers = or_(notifications.c.partner_id == pid, notifications.c.owner_id == pid)
    if couple_id:
        s.execute(
            insert_if_new(s, ended_couples.c.couple_id),
            {"couple_id": couple_id, "ended_at": ev.time},
        )
        s.execute(
            update(recipients).where(recipients.c.couple_id == couple_id).values(couple_id=None)
        )
        hers = or_(hers, notifications.c.couple_id == couple_id)
    s.execute(
        delete(deliveries).where(
            deliveries.c.notification_id.in_(select(notifications.c.id).where(hers))
        )
    )
    s.execute(delete(notifications).where(hers))
    forget_published(s, outbox, pid)
    s.execute(delete(channel_rows).where(channel_rows.c.partner_id == pid))
    devices.forget(s, device_rows.c.partner_id == pid)
    s.execute(delete(ended_sessions).where(ended_sessions.c.partner_id == pid))
    resets.forget(s, pid)
    s.execute(
        update(recipients)
        .where(recipients.c.id == pid)
        .values(erased=True, email=None, display_name=None, timezone=None, couple_id=None)
    )


def ended_sessions_kept() -> timedelta:
    """How long an ended session is remembered: well past the last token of it
    (``TOKEN_TTL_SECONDS``), which could register a device until it expires."""
    return max(timedelta(days=7), 2 * timedelta(seconds=token_ttl_seconds()))


def session_ended(s: Session, ev: Event) -> None:
    """The devices registered under the session go, with their pushes still
    waiting; the session is remembered as ended, so that a token of it (valid
    until it expires) registers no device again. Under the account's row lock,
    as registering is: one waits for the other, so neither misses the other."""
    pid, sid = str(ev.data["partner_id"]), str(ev.data["session_id"])
    row = recipient(s, pid)
    s.execute(select(recipients.c.id).where(recipients.c.id == pid).with_for_update())
    if not row.erased:  # an erased account keeps nothing, and its tokens are refused anyway
        s.execute(
            insert_if_new(s, ended_sessions.c.session_id),
            {"session_id": sid, "partner_id": pid, "ended_at": ev.time},
        )
    devices.forget(s, and_(device_rows.c.session_id == sid, device_rows.c.partner_id == pid))
    s.execute(
        delete(ended_sessions).where(ended_sessions.c.ended_at < utcnow() - ended_sessions_kept())
    )


def _recipients(s: Session, ids: list[str]) -> dict[str, object]:
    """The recipients' rows, read together; each one missing created (as ``recipient`` does)."""
    rows = {r.id: r for r in s.execute(select(recipients).where(recipients.c.id.in_(ids)))}
    for pid in ids:
        if pid not in rows:
            rows[pid] = recipient(s, pid)
    return rows


def milestone_achieved(s: Session, ev: Event) -> None:
    """One notification per recipient in the audience; the inbox has it at once.

    The notification keeps only the numbers of the email's chart from the
    milestone's evidence (chart.chart_data), none of the rest. The audience's
    rows and channels are read together, the notes, their events and the deliveries each
    written together: a couple's milestone is 7 statements."""
    m = ev.data
    owner_id = str(m["partner_id"]) if m.get("partner_id") else None
    couple_id = str(m["couple_id"]) if m.get("couple_id") and not owner_id else None
    if couple_id and _ended(s, couple_id):
        return  # the couple's, announced before an erasure ended it: it went with the couple
    numbers = chart.chart_data(m)
    audience = list(dict.fromkeys(map(str, m["audience"])))
    people = _recipients(s, list(dict.fromkeys(([owner_id] if owner_id else []) + audience)))
    owner_name = None
    if owner_id:
        if people[owner_id].erased:
            return  # announced before she erased her account: nothing of hers is kept, nor shown
        owner_name = people[owner_id].display_name
    now = utcnow()
    notes = [
        {
            "id": str(uuid.uuid4()),
            "partner_id": pid,
            "milestone_id": str(m["id"]),
            "owner_id": owner_id,
            "couple_id": couple_id,
            "title": celebrate.title_for(m, pid, owner_name),
            "body": celebrate.body_for(m),
            "created_at": now,
            **({"chart": numbers} if numbers is not None else {}),  # else SQL NULL, not a JSON null
        }
        for pid in audience
        if not people[pid].erased
    ]
    if not notes:
        return
    on = delivery.planned_channels()
    theirs = delivery.targets_of(s, on, [note["partner_id"] for note in notes])
    # Every recipient's note in one statement; the recipients who have it already get none.
    add_notes = insert_if_new(
        s, notifications.c.partner_id, (notifications.c.milestone_id, notifications.c.partner_id)
    )
    new = {row.partner_id for row in s.execute(add_notes, notes)}
    woken, planned, delivered = [], [], []
    for note in notes:
        pid = note["partner_id"]
        if pid not in new:
            continue
        woken.append(pid)
        row = people[pid]
        if row.in_app:
            planned.append(
                {
                    "id": str(uuid.uuid4()),
                    "notification_id": note["id"],
                    "channel": channels.IN_APP,
                    "kind": channels.IN_APP,
                    "target_id": None,
                    "status": "delivered",
                    "attempts": 1,
                    "due_at": None,
                    "delivered_at": now,
                }
            )
            delivered.append(
                (
                    pid,
                    {
                        "notification_id": note["id"],
                        "milestone_id": note["milestone_id"],
                        "partner_id": pid,
                        "channel": channels.IN_APP,
                    },
                )
            )
        planned += delivery.planned(row, theirs[pid], note["id"], due=now, on=on)
    emit_many(s, outbox, "notify.notification.delivered", source=SOURCE, events_=delivered)
    if planned:
        s.execute(deliveries.insert(), planned)
    stream.wake_on_commit(s, woken)


HANDLERS = {
    "journal.partner.registered": partner_registered,
    "journal.couple.partnered": couple_partnered,
    "journal.partner.erased": partner_erased,
    "journal.session.ended": session_ended,
    "milestones.milestone.achieved": milestone_achieved,
    "journal.password.reset_requested": resets.password_reset_requested,
}
