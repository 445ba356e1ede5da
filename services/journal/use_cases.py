"""What a partner can do in the journal, one function per use case.

Each function runs inside the caller's unit of work (a SQLAlchemy session in a
transaction) and records the events it causes in the outbox, in the same
transaction, so a change and its event commit together or not at all.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from argon2 import PasswordHasher
from cachetools import LRUCache
from sqlalchemy import and_, bindparam, delete, exists, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import pagination
from shared.db import insert_rows, utcnow
from shared.entry_kinds import ALL_MEASURES, kind_errors
from shared.errors import Conflict, Forbidden, Invalid, NotFound, Refused, Unauthorized
from shared.outbox import (
    emit,
    emit_many,
    forget_published,
    insert_if_new_with_event,
    writes_in_one_statement,
)

from . import sessions, throttle
from .tables import accounts, couples, entries, outbox

SOURCE = "/journal"
FUTURE_TOLERANCE = timedelta(minutes=10)
INVITE_TTL = timedelta(days=7)
INVITE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud, typed on a phone


# --- accounts and tokens ---


def sign_up(s: Session, hasher: PasswordHasher, data: dict) -> dict:
    email = data["email"].strip().lower()
    if s.execute(select(accounts.c.id).where(accounts.c.email == email)).first():
        raise Conflict(
            "An account with this email already exists.", errors={"email": ["Already registered."]}
        )
    row = {
        "id": str(uuid.uuid4()),
        "email": email,
        "password_hash": hasher.hash(data["password"]),
        "display_name": data["display_name"].strip(),
        "timezone": data["timezone"],
        "created_at": utcnow(),
        "couple_id": None,
    }
    try:
        with s.begin_nested():
            s.execute(accounts.insert().values(**row))
    except IntegrityError:  # the same email raced in from a concurrent sign-up
        raise Conflict(
            "An account with this email already exists.", errors={"email": ["Already registered."]}
        ) from None
    emit(
        s,
        outbox,
        "journal.partner.registered",
        source=SOURCE,
        subject=row["id"],
        data={
            "partner_id": row["id"],
            "email": email,
            "display_name": row["display_name"],
            "timezone": row["timezone"],
        },
    )
    return account_view(row)


def account_view(row) -> dict:
    r = row if isinstance(row, dict) else row._mapping
    return {k: r[k] for k in ("id", "email", "display_name", "timezone", "couple_id", "created_at")}


def current_account(s: Session, partner_id: str):
    row = s.execute(select(accounts).where(accounts.c.id == partner_id)).first()
    if row is None:
        raise Unauthorized("This account no longer exists.")
    return row


# --- couples ---


def _couple_view(s: Session, couple_id: str, *, with_code: bool) -> dict:
    c = s.execute(select(couples).where(couples.c.id == couple_id)).one()
    partners = s.execute(
        select(accounts.c.id, accounts.c.display_name)
        .where(accounts.c.couple_id == couple_id)
        .order_by(accounts.c.created_at)
    ).all()
    open_ = with_code and c.partner_count < 2
    return {
        "id": c.id,
        "invite_code": c.invite_code if open_ else None,
        "invite_expires_at": c.invite_expires_at if open_ else None,
        "partners": [{"id": p.id, "display_name": p.display_name} for p in partners],
    }


def _invite_code() -> str:
    return "".join(secrets.choice(INVITE_ALPHABET) for _ in range(10))


def start_couple(s: Session, partner_id: str) -> dict:
    me = current_account(s, partner_id)
    if me.couple_id:
        raise Conflict("You are already in a couple.")
    couple_id, now = str(uuid.uuid4()), utcnow()
    s.execute(
        couples.insert().values(
            id=couple_id,
            invite_code=_invite_code(),
            partner_count=1,
            created_at=now,
            invite_expires_at=now + INVITE_TTL,
        )
    )
    # Conditional: of concurrent requests by one partner, one couple wins and the rest roll back.
    if (
        s.execute(
            update(accounts)
            .where(accounts.c.id == partner_id, accounts.c.couple_id.is_(None))
            .values(couple_id=couple_id)
        ).rowcount
        != 1
    ):
        raise Conflict("You are already in a couple.")
    return _couple_view(s, couple_id, with_code=True)


def reissue_invite(s: Session, partner_id: str) -> dict:
    """A new invite code for the caller's couple, valid 7 days; the old one stops working."""
    me = current_account(s, partner_id)
    if not me.couple_id:
        raise NotFound("You are not in a couple yet.")
    now = utcnow()
    if (
        s.execute(
            update(couples)
            .where(couples.c.id == me.couple_id, couples.c.partner_count < 2)
            .values(invite_code=_invite_code(), invite_expires_at=now + INVITE_TTL)
        ).rowcount
        != 1
    ):
        raise Conflict("This couple already has two partners.")
    return _couple_view(s, me.couple_id, with_code=True)


NO_SUCH_INVITE = "No couple has this invite code."
EXPIRED_INVITE = "This invite code has expired; your partner can make a new one."


def join_couple(s: Session, partner_id: str, invite_code: str, client: str) -> dict | str:
    """Join with a partner's invite code. A wrong or expired code counts as a failure per (account,
    address) and per address (``throttle``): guessing is slowed, never anyone else. Such a code is
    answered with the reason (``NO_SUCH_INVITE``, ``EXPIRED_INVITE``) for the caller to commit the
    count and then refuse."""
    me = current_account(s, partner_id)
    if me.couple_id:
        raise Conflict("You are already in a couple.")
    now = utcnow()
    pair, by_address = throttle.JOIN.key(partner_id, client), throttle.JOIN_ADDRESS.key(client)
    throttle.check(s, [pair, by_address], now)
    code = invite_code.strip().upper().replace("-", "").replace(" ", "")
    c = s.execute(
        select(couples.c.id, couples.c.invite_expires_at).where(couples.c.invite_code == code)
    ).first()
    if c is None or c.invite_expires_at <= now:
        throttle.failed(s, [(throttle.JOIN, pair), (throttle.JOIN_ADDRESS, by_address)], now)
        return NO_SUCH_INVITE if c is None else EXPIRED_INVITE
    throttle.succeeded(s, pair)
    no_such_code = Invalid(NO_SUCH_INVITE, errors={"invite_code": [NO_SUCH_INVITE]})
    # One atomic step on every database: a third partner can never slip in.
    taken = s.execute(
        update(couples)
        .where(couples.c.id == c.id, couples.c.partner_count < 2)
        .values(partner_count=couples.c.partner_count + 1)
    )
    if taken.rowcount != 1:
        if s.execute(select(couples.c.id).where(couples.c.id == c.id)).first() is None:
            raise no_such_code  # ended by an erasure while this join waited for it
        raise Conflict("This couple already has two partners.")
    if (
        s.execute(
            update(accounts)
            .where(accounts.c.id == partner_id, accounts.c.couple_id.is_(None))
            .values(couple_id=c.id)
        ).rowcount
        != 1
    ):
        raise Conflict("You are already in a couple.")
    view = _couple_view(s, c.id, with_code=False)
    emit(
        s,
        outbox,
        "journal.couple.partnered",
        source=SOURCE,
        subject=c.id,
        data={"couple_id": c.id, "partner_ids": [p["id"] for p in view["partners"]]},
    )
    return view


def my_couple(s: Session, partner_id: str) -> dict:
    me = current_account(s, partner_id)
    if not me.couple_id:
        raise NotFound("You are not in a couple yet.")
    return _couple_view(s, me.couple_id, with_code=True)


def _partner_of(s: Session, me) -> str | None:
    if not me.couple_id:
        return None
    return s.execute(
        select(accounts.c.id).where(accounts.c.couple_id == me.couple_id, accounts.c.id != me.id)
    ).scalar()


# --- entries ---


def _json_measures(data: dict) -> dict:
    out = {}
    for k in ALL_MEASURES:
        v = data.get(k)
        if v is None:
            continue
        out[k] = v.isoformat() if isinstance(v, datetime) else v
    return out


def _fingerprint(
    kind: str, occurred_at: datetime, visibility: str, note: str | None, measures: dict
) -> str:
    canonical = json.dumps(
        {
            "kind": kind,
            "occurred_at": occurred_at.isoformat(),
            "visibility": visibility,
            "note": note,
            "measures": measures,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_times(occurred_at: datetime, measures: dict, now: datetime) -> None:
    errors = {}
    if occurred_at > now + FUTURE_TOLERANCE:
        errors["occurred_at"] = ["Must not be more than 10 minutes in the future."]
    if occurred_at.year < 1970:
        errors["occurred_at"] = ["Must not be before 1970."]
    repaired = measures.get("repaired_at")
    if repaired is not None:
        r = repaired if isinstance(repaired, datetime) else datetime.fromisoformat(repaired)
        if r > now + FUTURE_TOLERANCE:
            errors["repaired_at"] = ["Must not be more than 10 minutes in the future."]
        elif r < occurred_at:
            errors["repaired_at"] = ["A conflict is repaired after it occurred."]
    if errors:
        raise Invalid("The request has invalid fields: " + ", ".join(sorted(errors)), errors=errors)


def _offset_minutes(t: datetime) -> int:
    return int(t.utcoffset().total_seconds() // 60)


def entry_view(row) -> dict:
    r = row._mapping if not isinstance(row, dict) else row
    tz = timezone(timedelta(minutes=r["utc_offset_minutes"]))
    view = {
        "id": r["id"],
        "kind": r["kind"],
        "author_id": r["author_id"],
        "occurred_at": r["occurred_at"].astimezone(tz).isoformat(),
        "local_date": r["local_date"],
        "visibility": r["visibility"],
        "note": r["note"],
        "created_at": r["created_at"],
        "updated_at": r["updated_at"],
    }
    view.update(r["measures"])
    return view


def _event_data(row: dict, couple_id: str | None) -> dict:
    data = {
        "entry_id": row["id"],
        "couple_id": couple_id,
        "partner_id": row["author_id"],
        "kind": row["kind"],
        "occurred_at": row["occurred_at"].astimezone(
            timezone(timedelta(minutes=row["utc_offset_minutes"]))
        ),
        "local_date": row["local_date"],
        "visibility": row["visibility"],
    }
    for k, v in row["measures"].items():
        data[k] = datetime.fromisoformat(v) if k == "repaired_at" else v
    return data  # never the note


def republish_couple(s: Session, couple_id: str) -> int:
    """Every event a couple's history is made of, published again through the
    outbox (new event ids, stamped now): both partners, the couple, and each
    entry as it stands today (deleted entries are gone). A consumer whose view
    was lost or damaged rebuilds it from them; one whose view is whole changes
    nothing (the same content, newer). For the operator:
    ``tandem republish --couple ID``. Returns how many events were queued."""
    members = s.execute(
        select(accounts).where(accounts.c.couple_id == couple_id).order_by(accounts.c.created_at)
    ).all()
    if not members:
        raise NotFound("No such couple.")
    for a in members:
        emit(
            s,
            outbox,
            "journal.partner.registered",
            source=SOURCE,
            subject=a.id,
            data={
                "partner_id": a.id,
                "email": a.email,
                "display_name": a.display_name,
                "timezone": a.timezone,
            },
        )
    emit(
        s,
        outbox,
        "journal.couple.partnered",
        source=SOURCE,
        subject=couple_id,
        data={"couple_id": couple_id, "partner_ids": [a.id for a in members]},
    )
    n = len(members) + 1
    for row in s.execute(
        select(entries)
        .where(entries.c.author_id.in_([a.id for a in members]))
        .order_by(entries.c.occurred_at, entries.c.id)
    ).mappings():
        emit(
            s,
            outbox,
            "journal.entry.recorded",
            source=SOURCE,
            subject=couple_id,
            data=_event_data(dict(row), couple_id),
        )
        n += 1
    return n


# Built once: the hot path of the API (an entry a request) executes them with its values.
_AUTHOR = select(accounts.c.id, accounts.c.timezone, accounts.c.couple_id).where(
    accounts.c.id == bindparam("pid")
)
# In the entry's one statement on PostgreSQL: the author's account as remembered (``Authors``), still.
_AUTHOR_AS_KNOWN = exists().where(
    accounts.c.id == bindparam("author_id"),
    accounts.c.timezone == bindparam("author_timezone"),
    accounts.c.couple_id.is_not_distinct_from(bindparam("author_couple_id")),
)


class Authors:
    """What an entry takes from its author's account (time zone, couple), remembered
    in this process by account id, never written anywhere: a partner records many
    entries between the few changes of either. Never trusted alone: the entry's one
    statement inserts only while the account still holds them (``_AUTHOR_AS_KNOWN``),
    and if it does not (a couple formed or joined, the account erased, by any
    process) the account is read again. A round trip and a statement an entry
    fewer on PostgreSQL; elsewhere the account is read in the entry's transaction."""

    REMEMBERED = 4096  # accounts at most; the least recently used is forgotten first

    def __init__(self) -> None:
        self._known: LRUCache[str, tuple[str, str | None]] = LRUCache(maxsize=self.REMEMBERED)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def get(self, partner_id: str) -> tuple[str, str | None] | None:
        with self._lock:
            return self._known.get(partner_id)

    def remember(self, partner_id: str, timezone_: str, couple_id: str | None) -> None:
        with self._lock:
            self._known[partner_id] = (timezone_, couple_id)

    def forget(self, partner_id: str) -> None:
        with self._lock:
            self._known.pop(partner_id, None)


AUTHORS = Authors()


_TAKEN = "An entry with this id already exists with other content."


def _replay_or_taken(existing, partner_id: str, fingerprint: str) -> tuple[dict, bool]:
    """The stored entry if this is its replay (same author, same content), else a 409 (never
    saying whose the id is, nor what it holds)."""
    r = existing if isinstance(existing, dict) else existing._mapping
    if r["author_id"] == partner_id and r["body_hash"] == fingerprint:
        return entry_view(existing), False
    raise Conflict(_TAKEN, errors={"id": ["Already used for another entry."]})


def _entry_row(
    partner_id: str, data: dict, measures: dict, fingerprint: str, tz_name: str, now: datetime
) -> dict:
    occurred_at: datetime = data["occurred_at"]
    return {
        "id": str(data["id"]),
        "author_id": partner_id,
        "kind": data["kind"],
        "occurred_at": occurred_at,
        "utc_offset_minutes": _offset_minutes(occurred_at),
        "local_date": occurred_at.astimezone(ZoneInfo(tz_name)).date(),
        "visibility": data["visibility"],
        "note": data.get("note"),
        "measures": measures,
        "body_hash": fingerprint,
        "created_at": now,
        "updated_at": now,
    }


def _fingerprint_of(data: dict) -> tuple[dict, str]:
    """(the entry's measures as stored, the fingerprint of its content)."""
    measures = _json_measures(data)
    fingerprint = _fingerprint(
        data["kind"], data["occurred_at"], data["visibility"], data.get("note"), measures
    )
    return measures, fingerprint


def record_entry(
    s: Session | Connection,
    partner_id: str,
    data: dict,
    now: datetime | None = None,
    *,
    read_author: bool = False,
) -> tuple[dict, bool]:
    """Record an entry; (entry, created). Idempotent on the client's id. In a unit of work, or on
    PostgreSQL on an autocommit connection: its one write is one statement (the entry with its event),
    and with its author remembered (``Authors``) the only one."""
    now = now or utcnow()
    # Core statements straight on the connection: less per statement than the ORM
    db = s if isinstance(s, Connection) else s.connection()
    remembering = writes_in_one_statement(db)  # the entry's statement checks what is remembered
    known = AUTHORS.get(partner_id) if remembering and not read_author else None
    if known is None:
        me = db.execute(_AUTHOR, {"pid": partner_id}).first()
        if me is None:
            AUTHORS.forget(partner_id)
            raise Unauthorized("This account no longer exists.")
        tz_name, couple_id = me.timezone, me.couple_id
        if remembering:
            AUTHORS.remember(partner_id, tz_name, couple_id)
    else:
        tz_name, couple_id = known
    entry_id = str(data["id"])
    measures, fingerprint = _fingerprint_of(data)

    def stored():
        return db.execute(select(entries).where(entries.c.id == entry_id)).first()

    def is_replay(existing) -> bool:
        return (
            existing is not None
            and existing.author_id == partner_id
            and existing.body_hash == fingerprint
        )

    try:
        _check_times(data["occurred_at"], measures, now)
    except Invalid:
        if (existing := stored()) is not None:
            # stored when its times were fine: a replay is answered as before
            return _replay_or_taken(existing, partner_id, fingerprint)
        raise
    row = _entry_row(partner_id, data, measures, fingerprint, tz_name, now)
    guard = (
        {}
        if known is None
        else {
            "guard": _AUTHOR_AS_KNOWN,
            "guard_params": {
                "author_id": partner_id,
                "author_timezone": tz_name,
                "author_couple_id": couple_id,
            },
        }
    )
    # Stored with its event (one statement on PostgreSQL), or the id was there already (a replay, or a race with
    # one), or (remembered) the account is no longer as remembered.
    if (
        insert_if_new_with_event(
            s,
            entries.c.id,
            row,
            outbox,
            "journal.entry.recorded",
            source=SOURCE,
            subject=couple_id or partner_id,
            data=_event_data(row, couple_id),
            from_validated=True,  # the entry's EntryCreate, the account's ids
            **guard,
        )
        is None
    ):
        existing = stored()
        if known is not None and not is_replay(
            existing
        ):  # the account as it is now decides (gone: a 401)
            AUTHORS.forget(partner_id)
            return record_entry(s, partner_id, data, now, read_author=True)
        return _replay_or_taken(existing, partner_id, fingerprint)
    return entry_view(row), True


# The author's account, locked against a change (a couple formed or joined, an erasure) until the
# batch commits: every entry of a batch carries the account as it is when they are stored.
_AUTHOR_HELD = _AUTHOR.with_for_update(read=True)


def record_entries(
    s: Session, partner_id: str, batch: list[dict], now: datetime | None = None
) -> list[tuple[dict, bool] | Refused]:
    """Record a batch of valid entries (``EntryCreate`` loaded) in the caller's unit of work,
    each answered as ``record_entry`` would answer it alone: (entry, created), or what it
    refused (a ``Conflict`` for an id that holds another entry, an ``Invalid`` time), in the
    batch's order. The new entries and their events are written together (a statement each
    for all of them): all of them commit, or none. Each event names its batch and how many
    entries it stored, so a consumer can judge the whole batch at once.

    The same id twice in a batch is stored once, the second answered as a replay (or a 409).
    An id a concurrent request stores first is answered against what it stored."""
    now = now or utcnow()
    db = s.connection()
    me = db.execute(_AUTHOR_HELD, {"pid": partner_id}).first()
    if me is None:
        AUTHORS.forget(partner_id)
        raise Unauthorized("This account no longer exists.")
    ids = {str(d["id"]) for d in batch}
    stored = (
        {r.id: r for r in db.execute(select(entries).where(entries.c.id.in_(ids)))} if ids else {}
    )
    new: dict[str, dict] = {}  # id -> row, for the first entry of the batch with a new id
    decided: list[tuple[str, str, bool] | Refused] = []
    for data in batch:
        entry_id = str(data["id"])
        measures, fingerprint = _fingerprint_of(data)
        if entry_id not in stored and entry_id not in new:
            try:
                _check_times(data["occurred_at"], measures, now)
            except Invalid as refused:
                decided.append(refused)
                continue
            new[entry_id] = _entry_row(partner_id, data, measures, fingerprint, me.timezone, now)
            decided.append((entry_id, fingerprint, True))
        else:
            decided.append((entry_id, fingerprint, False))
    # In id order: two batches sharing ids wait for each other in one order, never in a deadlock.
    rows = sorted(new.values(), key=lambda row: row["id"])
    inserted = insert_rows(s, entries, rows, key=entries.c.id)
    lost = set(new) - inserted
    if lost:  # taken meanwhile by a request that committed first
        stored.update((r.id, r) for r in db.execute(select(entries).where(entries.c.id.in_(lost))))
    batch_of = {"id": str(uuid.uuid4()), "size": len(inserted)}
    emit_many(
        s,
        outbox,
        "journal.entry.recorded",
        source=SOURCE,
        events_=[
            (me.couple_id or partner_id, {**_event_data(row, me.couple_id), "batch": batch_of})
            for entry_id, row in new.items()
            if entry_id in inserted
        ],
        from_validated=True,  # each entry's EntryCreate, the account's ids
    )
    answers: list[tuple[dict, bool] | Refused] = []
    for d in decided:
        if isinstance(d, Refused):
            answers.append(d)
            continue
        entry_id, fingerprint, first = d
        if first and entry_id in inserted:
            answers.append((entry_view(new[entry_id]), True))
            continue
        existing = new[entry_id] if entry_id in inserted else stored[entry_id]
        try:
            answers.append(_replay_or_taken(existing, partner_id, fingerprint))
        except Conflict as refused:
            answers.append(refused)
    return answers


def _visible_entry(s: Session, me, entry_id: str):
    row = s.execute(select(entries).where(entries.c.id == entry_id)).first()
    if row is None:
        raise NotFound("No such entry.")
    if row.author_id == me.id:
        return row
    if row.visibility == "shared" and row.author_id == _partner_of(s, me):
        return row
    raise NotFound("No such entry.")  # never reveal that another's entry exists


def get_entry(s: Session, partner_id: str, entry_id: str) -> dict:
    return entry_view(_visible_entry(s, current_account(s, partner_id), entry_id))


def _own_entry(s: Session, me, entry_id: str):
    row = _visible_entry(s, me, entry_id)
    if row.author_id != me.id:
        raise Forbidden("Only the partner who wrote an entry may change or delete it.")
    return row


def revise_entry(
    s: Session, partner_id: str, entry_id: str, changes: dict, now: datetime | None = None
) -> dict:
    now = now or utcnow()
    me = current_account(s, partner_id)
    row = dict(_own_entry(s, me, entry_id)._mapping)
    measures = dict(row["measures"])
    for k in ALL_MEASURES:
        if k in changes:
            v = changes[k]
            if v is None:
                measures.pop(k, None)
            else:
                measures[k] = v.isoformat() if isinstance(v, datetime) else v
    errors = kind_errors(row["kind"], measures)
    if errors:
        raise Invalid("The request has invalid fields: " + ", ".join(sorted(errors)), errors=errors)
    occurred_at = changes.get("occurred_at") or row["occurred_at"].astimezone(
        timezone(timedelta(minutes=row["utc_offset_minutes"]))
    )
    _check_times(occurred_at, measures, now)
    row.update(
        occurred_at=occurred_at,
        utc_offset_minutes=_offset_minutes(occurred_at),
        local_date=occurred_at.astimezone(ZoneInfo(me.timezone)).date(),
        visibility=changes.get("visibility") or row["visibility"],
        note=changes["note"] if "note" in changes else row["note"],
        measures=measures,
        updated_at=now,
    )
    s.execute(
        update(entries)
        .where(entries.c.id == entry_id)
        .values(
            occurred_at=row["occurred_at"],
            utc_offset_minutes=row["utc_offset_minutes"],
            local_date=row["local_date"],
            visibility=row["visibility"],
            note=row["note"],
            measures=measures,
            updated_at=now,
        )
    )
    emit(
        s,
        outbox,
        "journal.entry.revised",
        source=SOURCE,
        subject=me.couple_id or partner_id,
        data=_event_data(row, me.couple_id),
    )
    return entry_view(row)


def delete_entry(s: Session, partner_id: str, entry_id: str) -> None:
    me = current_account(s, partner_id)
    _own_entry(s, me, entry_id)
    s.execute(delete(entries).where(entries.c.id == entry_id))
    emit(
        s,
        outbox,
        "journal.entry.deleted",
        source=SOURCE,
        subject=me.couple_id or partner_id,
        data={"entry_id": entry_id, "couple_id": me.couple_id, "partner_id": partner_id},
    )


def list_entries(s: Session, partner_id: str, query: dict) -> dict:
    """The caller's entries and the partner's shared ones, newest first."""
    me = current_account(s, partner_id)
    partner = _partner_of(s, me)
    visible = entries.c.author_id == me.id
    if partner:
        visible = or_(
            visible, and_(entries.c.author_id == partner, entries.c.visibility == "shared")
        )
    stmt = select(entries).where(visible)
    if query.get("kind"):
        stmt = stmt.where(entries.c.kind == query["kind"])
    if query.get("since"):
        stmt = stmt.where(entries.c.occurred_at >= query["since"])
    if query.get("until"):
        stmt = stmt.where(entries.c.occurred_at <= query["until"])
    return pagination.newest_first(
        s,
        stmt,
        entries.c.occurred_at,
        entries.c.id,
        query,
        lambda page: [entry_view(r) for r in page],
    )


def export(s: Session, partner_id: str) -> dict:
    me = current_account(s, partner_id)
    rows = s.execute(
        select(entries)
        .where(entries.c.author_id == me.id)
        .order_by(entries.c.occurred_at, entries.c.id)
    ).all()
    return {
        "account": account_view(me),
        "couple": _couple_view(s, me.couple_id, with_code=True) if me.couple_id else None,
        "entries": [entry_view(r) for r in rows],
        "exported_at": utcnow(),
    }


def erase(s: Session, partner_id: str) -> None:
    """Remove the account and everything it recorded; tell the other services.

    An erasure ends the couple: its row goes (its invite code never works
    again), the partner who remains is out of any couple (free to start or
    join another) with their own entries, and what they had shared becomes
    private, since nobody else can read it now and a future partner must never
    see what was shared with a former one. The other services apply the same
    rule when they hear ``journal.partner.erased``."""
    me = current_account(s, partner_id)
    if me.couple_id:
        # Locked first: a join with the code waits, then finds no couple (and never a half-ended one).
        s.execute(select(couples.c.id).where(couples.c.id == me.couple_id).with_for_update())
        remaining = (
            s.execute(
                select(accounts.c.id).where(
                    accounts.c.couple_id == me.couple_id, accounts.c.id != me.id
                )
            )
            .scalars()
            .all()
        )
        if remaining:
            s.execute(
                update(entries)
                .where(entries.c.author_id.in_(remaining), entries.c.visibility == "shared")
                .values(visibility="private", updated_at=utcnow())
            )
        s.execute(
            update(accounts).where(accounts.c.couple_id == me.couple_id).values(couple_id=None)
        )
        s.execute(delete(couples).where(couples.c.id == me.couple_id))
    s.execute(delete(entries).where(entries.c.author_id == me.id))
    sessions.forget_account(s, me.id, me.email)
    s.execute(delete(accounts).where(accounts.c.id == me.id))
    forget_published(s, outbox, partner_id)
    emit(
        s,
        outbox,
        "journal.partner.erased",
        source=SOURCE,
        subject=me.couple_id or partner_id,
        data={"partner_id": partner_id, "couple_id": me.couple_id},
    )
