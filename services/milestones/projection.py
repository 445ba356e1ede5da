"""The milestones service's view of the journal, built from events alone.

Every handler is idempotent (the consumer records each event id in the same
transaction) and order-independent: an entry's stored state carries the time
of the event that produced it, so an older event arriving late changes nothing,
and a deletion that arrives before its entry leaves a tombstone. Each change
recomputes the daily aggregate of the dates it touched, from the entries of
that day, and marks the partner for evaluation.

Each entry keeps its visibility. A day has two aggregates: of every entry
(``days``: the partner's own milestones and progress) and of the shared ones
alone (``shared_days``: the couple's milestones), so nothing the other partner
can read is derived from a private entry.

An erasure ends the couple: its milestones are removed, the couple is
remembered as ended (``ended_couples``) and the remaining partner leaves it;
what they had shared until then becomes private (as the journal makes it),
and a late event never attaches anyone to the ended couple, nor shares
anything in it.

Several consumers may take one queue: each handler first locks the row of the
partner its event is about (PostgreSQL; SQLite writers are serialized by the
file), so the events of one partner are applied one at a time. A version
compared, or a day aggregate rebuilt, from a read that a concurrent
transaction was about to change would otherwise lose that change.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import and_, bindparam, case, delete, or_, select, update
from sqlalchemy.orm import Session

from shared.db import insert_if_new, on_conflict_statement, utcnow
from shared.events import Event
from shared.outbox import forget_published

from .tables import (
    batches,
    days,
    ended_couples,
    entries,
    milestones,
    outbox,
    partners,
    shared_days,
)

# When two events about one entry carry the same time, the later kind of change wins.
_RANK = {"journal.entry.recorded": 0, "journal.entry.revised": 1, "journal.entry.deleted": 2}


# The statements of the event path are built once and executed with each
# event's values, on the transaction's connection: building a statement costs
# more CPU than sending it.
_ENTRY = select(entries).where(entries.c.id == bindparam("eid"))
_PARTNER_ROW = select(partners).where(partners.c.id == bindparam("pid"))
_UPDATE_ENTRY = update(entries).where(
    entries.c.id == bindparam("eid")
)  # SET: the columns of the values given
_DAY_ENTRIES = select(
    entries.c.kind, entries.c.occurred_at, entries.c.measures, entries.c.visibility
).where(
    and_(
        entries.c.partner_id == bindparam("pid"),
        entries.c.local_date == bindparam("day"),
        entries.c.deleted.is_(False),
    )
)
_DELETE_DAY = {
    t: delete(t).where(t.c.partner_id == bindparam("pid"), t.c.local_date == bindparam("day"))
    for t in (days, shared_days)
}
_ENDED = select(ended_couples.c.ended_at).where(ended_couples.c.couple_id == bindparam("couple"))
_DIRTY = (
    update(partners)
    .where(partners.c.id == bindparam("b_pid"))
    .values(dirty_since=bindparam("b_now"))
)
_REPLAY_FROM = bindparam("b_day", type_=partners.c.replay_from.type)
_DIRTY_FROM = _DIRTY.values(
    replay_from=case(
        (
            or_(partners.c.replay_from.is_(None), partners.c.replay_from > _REPLAY_FROM),
            _REPLAY_FROM,
        ),
        else_=partners.c.replay_from,
    )
)
_DAY_COLUMNS = (
    "entries",
    "episodes",
    "detail",
    "ritual_count",
    "ratings",
    "activities",
    "conflicts",
    "conflicts_repaired_24h",
    "weekly_check_ins",
)


@on_conflict_statement
def _upsert_partner(insert):
    stmt = insert(partners).values(
        id=bindparam("pid"), share_milestones_with_partner=False, erased=False
    )
    return stmt.on_conflict_do_update(
        index_elements=[partners.c.id], set_={"id": stmt.excluded.id}
    ).returning(*partners.c)


@on_conflict_statement
def _upsert_day(insert, table=days):
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c.partner_id, table.c.local_date],
        set_={c: stmt.excluded[c] for c in _DAY_COLUMNS},
    )


@on_conflict_statement
def _count_in(insert):
    """One more event of a batch applied: its row made by the first, counted up by the others;
    returns (applied, size)."""
    stmt = insert(batches).values(
        id=bindparam("bid"),
        partner_id=bindparam("pid"),
        couple_id=bindparam("couple"),
        size=bindparam("size"),
        applied=1,
        last_applied_at=bindparam("now"),
    )
    return stmt.on_conflict_do_update(
        index_elements=[batches.c.id],
        set_={"applied": batches.c.applied + 1, "last_applied_at": stmt.excluded.last_applied_at},
    ).returning(batches.c.applied, batches.c.size)


_BATCH_DONE = delete(batches).where(batches.c.id == bindparam("bid"))


def _count_in_batch(s: Session, partner_id: str, ev: Event) -> None:
    """An entry recorded in a batch of several: counted in, so that no evaluation of the partner or
    their couple judges the batch half applied (``evaluation.due_partners``). The batch's row goes
    with its last event; each event is applied once (the consumer's ``processed_events``)."""
    of = ev.data.get("batch")
    if not of or of["size"] < 2:
        return
    db, bid = s.connection(), str(of["id"])
    couple = str(ev.data["couple_id"]) if ev.data.get("couple_id") else None
    applied, size = db.execute(
        _count_in(db),
        {"bid": bid, "pid": partner_id, "couple": couple, "size": of["size"], "now": utcnow()},
    ).one()
    if applied >= size:
        db.execute(_BATCH_DONE, {"bid": bid})


def _partner(s: Session, partner_id: str):
    """The partner's row, created on first sight (events arrive in any order),
    locked until the transaction ends: one partner's events apply one at a time.
    One statement: an upsert that touches the row locks it, as FOR UPDATE would,
    and returns it; two consumers seeing a new partner at once make one row."""
    db = s.connection()
    return db.execute(_upsert_partner(db), {"pid": partner_id}).one()


def partner_registered(s: Session, ev: Event) -> None:
    d = ev.data
    row = _partner(s, str(d["partner_id"]))
    if not row.erased:
        s.execute(update(partners).where(partners.c.id == row.id).values(timezone=d["timezone"]))


def couple_partnered(s: Session, ev: Event) -> None:
    """A couple formed; one ended by an erasure before this arrived attaches no one."""
    couple_id = str(ev.data["couple_id"])
    ended = s.connection().execute(_ENDED, {"couple": couple_id}).scalar()
    for pid in sorted(map(str, ev.data["partner_ids"])):  # locked in one order: no deadlock
        row = _partner(s, pid)
        if not row.erased and ended is not None:
            _leave_couple(s, row, couple_id, ended)
        elif not row.erased:
            s.execute(update(partners).where(partners.c.id == pid).values(couple_id=couple_id))
            mark_dirty(s, pid, None)


def preferences_changed(s: Session, ev: Event) -> None:
    pid = str(ev.data["partner_id"])
    row = _partner(s, pid)
    if row.erased or (row.sharing_version is not None and row.sharing_version > ev.time):
        return
    s.execute(
        update(partners)
        .where(partners.c.id == pid)
        .values(
            share_milestones_with_partner=bool(ev.data["share_milestones_with_partner"]),
            sharing_version=ev.time,
        )
    )


def _is_newer(existing, ev: Event) -> bool:
    if existing is None:
        return True
    if ev.time != existing.version:
        return ev.time > existing.version
    current = (
        2 if existing.deleted else 1
    )  # a stored live entry may be recorded or revised: assume revised
    return _RANK[ev.type] > current


def _newer_change(s: Session, ev: Event):
    """(the partner's row, entry id, the stored entry or None) if this event is
    news; None if it is older than what is stored or its partner was erased."""
    partner, entry_id = _partner(s, str(ev.data["partner_id"])), str(ev.data["entry_id"])
    if partner.erased:
        return None
    existing = s.connection().execute(_ENTRY, {"eid": entry_id}).first()
    return (partner, entry_id, existing) if _is_newer(existing, ev) else None


def entry_changed(s: Session, ev: Event):
    """journal.entry.recorded and journal.entry.revised: the entry as it now is.
    Returns the partner's row as it now stands if the entry changed (None if
    the event was old news, or its partner erased)."""
    partner = _partner(s, str(ev.data["partner_id"]))
    if partner.erased:
        return None
    _count_in_batch(s, partner.id, ev)  # counted whether or not it is news
    pid, entry_id, d = partner.id, str(ev.data["entry_id"]), ev.data
    db = s.connection()
    couple_id = str(d["couple_id"]) if d.get("couple_id") else None
    # The couple the partner is in is live; another one may have ended (a late event of a former couple).
    ended = (
        db.execute(_ENDED, {"couple": couple_id}).scalar()
        if couple_id and couple_id != partner.couple_id
        else None
    )
    if ended is not None:
        partner = _leave_couple(s, partner, couple_id, ended)
    # Shared in a couple that has ended, or before the partner's couple ended: private now, as in the journal.
    shared = (
        d["visibility"] == "shared"
        and ended is None
        and not (partner.left_couple_at is not None and ev.time <= partner.left_couple_at)
    )
    measures = {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in d.items()
        if k
        not in {
            "entry_id",
            "couple_id",
            "partner_id",
            "kind",
            "occurred_at",
            "local_date",
            "visibility",
            "batch",
        }
        and v is not None
    }
    values = dict(
        partner_id=pid,
        couple_id=couple_id,
        kind=d["kind"],
        occurred_at=d["occurred_at"],
        local_date=d["local_date"],
        measures=measures,
        deleted=False,
        version=ev.time,
        visibility="shared" if shared else "private",
    )
    # A new entry (the usual case) is one statement; one seen before is read and compared.
    existing = None
    if db.execute(insert_if_new(db, entries.c.id), {"id": entry_id, **values}).first() is None:
        existing = db.execute(_ENTRY, {"eid": entry_id}).first()
        if not _is_newer(existing, ev):
            return None
        db.execute(_UPDATE_ENTRY, {"eid": entry_id, **values})
    if couple_id and ended is None and partner.couple_id is None:
        s.execute(
            update(partners).where(partners.c.id == pid).values(couple_id=values["couple_id"])
        )
        partner = SimpleNamespace(**{**partner._mapping, "couple_id": values["couple_id"]})
    touched = {d["local_date"]}
    if existing is not None and not existing.deleted and existing.local_date:
        touched.add(existing.local_date)
    for day in touched:
        recompute_day(s, pid, day)
    mark_dirty(s, pid, min(touched))
    return partner


def entry_deleted(s: Session, ev: Event) -> None:
    change = _newer_change(s, ev)
    if change is None:
        return
    partner, entry_id, existing = change
    pid = partner.id
    if existing is None:  # the deletion came first: a tombstone keeps the late "recorded" out
        s.execute(
            entries.insert().values(id=entry_id, partner_id=pid, deleted=True, version=ev.time)
        )
        return
    s.execute(update(entries).where(entries.c.id == entry_id).values(deleted=True, version=ev.time))
    if not existing.deleted and existing.local_date:
        recompute_day(s, pid, existing.local_date)
        mark_dirty(s, pid, existing.local_date)


def partner_erased(s: Session, ev: Event) -> None:
    """Remove the partner's data and personal milestones; a tombstone stays.
    Their couple ends: its milestones go, and the other partner leaves it."""
    pid = str(ev.data["partner_id"])
    row = _partner(s, pid)
    couple_id = str(ev.data["couple_id"]) if ev.data.get("couple_id") else row.couple_id
    s.execute(delete(entries).where(entries.c.partner_id == pid))
    for table in (days, shared_days):
        s.execute(delete(table).where(table.c.partner_id == pid))
    s.execute(delete(milestones).where(milestones.c.owner_key == pid))
    s.execute(delete(batches).where(batches.c.partner_id == pid))
    forget_published(s, outbox, pid)
    s.execute(
        update(partners)
        .where(partners.c.id == pid)
        .values(
            erased=True,
            timezone=None,
            couple_id=None,
            dirty_since=None,
            replay_from=None,
            next_scheduled_at=None,
        )
    )
    if couple_id:
        _end_couple(s, couple_id, ev.time)


def _end_couple(s: Session, couple_id: str, at: datetime) -> None:
    """The couple's milestones removed, the couple remembered as ended (at its first erasure's time,
    whatever is redelivered), and each partner still in it leaves it."""
    db = s.connection()
    db.execute(
        insert_if_new(db, ended_couples.c.couple_id),
        {"couple_id": couple_id, "ended_at": at},
    )
    ended = db.execute(_ENDED, {"couple": couple_id}).scalar()
    s.execute(delete(milestones).where(milestones.c.owner_key == couple_id))
    forget_published(s, outbox, couple_id)
    # The other partner: as the couple's events told us, or (if those are still to come) by their entries.
    remaining = set(
        s.execute(
            select(partners.c.id).where(
                partners.c.couple_id == couple_id, partners.c.erased.is_(False)
            )
        ).scalars()
    )
    remaining.update(
        s.execute(
            select(entries.c.partner_id).where(entries.c.couple_id == couple_id).distinct()
        ).scalars()
    )
    for pid in sorted(remaining):  # locked in one order: no deadlock
        row = _partner(s, pid)
        if not row.erased:
            _leave_couple(s, row, couple_id, ended)


_LEFT = (
    update(partners)
    .where(
        partners.c.id == bindparam("b_pid"),
        or_(partners.c.left_couple_at.is_(None), partners.c.left_couple_at < bindparam("b_at")),
    )
    .values(left_couple_at=bindparam("b_at"))
)


def _leave_couple(s: Session, partner, couple_id: str, ended: datetime):
    """The partner leaves an ended couple: no longer in it, and every entry they had shared until it
    ended (or shared in it) is private, their shared aggregate of those days rebuilt. Idempotent.
    Returns the partner's row as it now stands."""
    if (
        partner.couple_id != couple_id
        and partner.left_couple_at is not None
        and partner.left_couple_at >= ended
    ):
        return partner  # left already
    db = s.connection()
    if partner.couple_id == couple_id:
        db.execute(update(partners).where(partners.c.id == partner.id).values(couple_id=None))
    db.execute(_LEFT, {"b_pid": partner.id, "b_at": ended})
    was_shared = and_(
        entries.c.partner_id == partner.id,
        entries.c.visibility == "shared",
        or_(entries.c.version <= ended, entries.c.couple_id == couple_id),
    )
    touched = set(
        db.execute(
            select(entries.c.local_date).where(was_shared, entries.c.deleted.is_(False)).distinct()
        ).scalars()
    )
    db.execute(update(entries).where(was_shared).values(visibility="private"))
    for day in sorted(touched):
        recompute_day(s, partner.id, day)
    return db.execute(_PARTNER_ROW, {"pid": partner.id}).one()


HANDLERS = {
    "journal.partner.registered": partner_registered,
    "journal.couple.partnered": couple_partnered,
    "journal.entry.recorded": entry_changed,
    "journal.entry.revised": entry_changed,
    "journal.entry.deleted": entry_deleted,
    "journal.partner.erased": partner_erased,
    "notify.preferences.changed": preferences_changed,
}


def mark_dirty(s: Session, partner_id: str, day: date | None) -> None:
    """Ask for an evaluation once the partner's events settle; `day` is the
    earliest local date whose data changed (late data is replayed from there)."""
    if day is None:
        s.connection().execute(_DIRTY, {"b_pid": partner_id, "b_now": utcnow()})
    else:
        s.connection().execute(_DIRTY_FROM, {"b_pid": partner_id, "b_now": utcnow(), "b_day": day})


def recompute_day(s: Session, partner_id: str, day: date) -> None:
    """Rebuild one day's aggregates from that day's live entries: of them all, and of the shared ones."""
    db = s.connection()
    rows = db.execute(_DAY_ENTRIES, {"pid": partner_id, "day": day}).all()
    for table, mine in ((days, rows), (shared_days, [r for r in rows if r.visibility == "shared"])):
        if not mine:
            db.execute(_DELETE_DAY[table], {"pid": partner_id, "day": day})
        else:
            db.execute(
                _upsert_day(db, table),
                {"partner_id": partner_id, "local_date": day, **_day_row(mine)},
            )


def _day_row(rows) -> dict:
    """One day's aggregate of the entries given."""
    agg = dict(
        entries=len(rows),
        episodes=0,
        intensities=[],
        communication=[],
        connection=[],
        understanding=[],
        rituals=[],
        activities=0,
        conflicts=0,
        conflicts_repaired_24h=0,
        weekly_check_ins=0,
    )
    for kind, occurred_at, m, _ in rows:
        if kind == "anxious_episode":
            agg["episodes"] += 1
            agg["intensities"].append(int(m["intensity"]))
        elif kind == "daily_reflection":
            if m.get("communication") is not None:
                agg["communication"].append(int(m["communication"]))
        elif kind == "check_in":
            agg["weekly_check_ins"] += 1
            for k in ("connection", "understanding"):
                if m.get(k) is not None:
                    agg[k].append(int(m[k]))
        elif kind == "ritual":
            agg["rituals"].append(m["ritual"])
        elif kind == "independence_activity":
            agg["activities"] += 1
        elif kind == "conflict":
            agg["conflicts"] += 1
            repaired = m.get("repaired_at")
            if repaired and datetime.fromisoformat(repaired) - occurred_at <= timedelta(hours=24):
                agg["conflicts_repaired_24h"] += 1
    lists = ("intensities", "communication", "connection", "understanding", "rituals")
    # sorted: the same day always gives the same row, whatever the order
    detail = {k: sorted(agg.pop(k)) for k in lists}
    row = dict(
        detail=detail,
        ritual_count=len(detail["rituals"]),
        ratings=len(detail["communication"]),
        **agg,
    )
    assert row.keys() == set(_DAY_COLUMNS)
    return row
