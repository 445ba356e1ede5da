"""The transactional outbox and its relay.

``emit`` writes an event row in the same transaction as the change it reports,
so an event exists if and only if that change committed. The relay claims
committed rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several relays can
run), publishes them with confirms, and marks them published. A claim is a
lease: rows left in flight by a relay that died are claimed again when the lease
runs out and re-sent; consumers are idempotent on the event id.

The relay is woken when a row commits (PostgreSQL ``LISTEN/NOTIFY``, sent only
while a relay sleeps: ``SLEEP_LOCK``; a local datagram socket under ``./var/run/``
on SQLite) and also polls as a fallback.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    event,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from shared import events, metrics
from shared.db import INSERTS, UTCDateTime, dialect_of, insert_if_new, insert_rows, utcnow

log = structlog.get_logger("outbox")

NOTIFY_CHANNEL = "tandem_outbox"
LEASE = timedelta(seconds=30)
LISTEN_RETRY = 5.0  # seconds between tries to be woken again, while the relay only polls
RETENTION = timedelta(days=2)


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column(
            "seq",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("routing_key", String(120), nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("claimed_until", UTCDateTime(), nullable=True),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("published_at", UTCDateTime(), nullable=True),
        Index("ix_outbox_pending", "published_at", "seq"),
        Index("ix_outbox_unpublished", "seq", **_UNPUBLISHED),
    )


# The rows still to publish, in order: the relay claims from these alone, whatever its backlog (with
# ix_outbox_pending alone, a backlog of 20,000 turned its claim into a walk of every row).
_UNPUBLISHED = {
    "postgresql_where": text("published_at IS NULL"),
    "sqlite_where": text("published_at IS NULL"),
}


def claimable(table: Table, now: Any) -> ColumnElement[bool]:
    """A row a relay may claim: not published, and not leased or its lease run out. The claim and
    a relay's last look before it sleeps (``_PgListen.fall_asleep``) ask the same question."""
    return and_(
        table.c.published_at.is_(None),
        or_(table.c.claimed_until.is_(None), table.c.claimed_until < now),
    )


@functools.cache
def _any_claimable(table: Table) -> str:
    """``SELECT EXISTS`` of a claimable row now, as text for the wake-up's own connection."""
    query = select(exists().where(claimable(table, func.now())))
    return str(query.compile(dialect=postgresql.dialect()))


def create_unpublished_index(op) -> None:
    """ix_outbox_unpublished, in a service's migration."""
    op.create_index("ix_outbox_unpublished", "outbox", ["seq"], **_UNPUBLISHED)


def forget_published(session: Session, table: Table, partner_id: str) -> int:
    """Delete the published rows that name a partner (an erasure): they are kept
    a while for the operator, and an erased partner's email or numbers must not
    be. Rows not yet published still go out (the erasure's own event among them)."""
    return session.execute(
        delete(table).where(
            table.c.published_at.is_not(None), table.c.body.contains(partner_id, autoescape=True)
        )
    ).rowcount


# On PostgreSQL a statement-level trigger on each outbox table sends the NOTIFY
# (delivered when the transaction commits; one per transaction however many
# rows): no statement of its own in the request. Made by each service's migration.
WAKE_TRIGGER_UP = (
    f"""CREATE OR REPLACE FUNCTION tandem_outbox_wake() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('{NOTIFY_CHANNEL}', ''); RETURN NULL; END $$""",
    "CREATE TRIGGER outbox_wake AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION tandem_outbox_wake()",
)
WAKE_TRIGGER_DOWN = (
    "DROP TRIGGER IF EXISTS outbox_wake ON outbox",
    "DROP FUNCTION IF EXISTS tandem_outbox_wake()",
)


# The relay's sleep: held (a session's advisory lock, ``_PgListen``) by a relay while it waits for a
# NOTIFY, and by nobody else. The trigger below sends its NOTIFY only while some relay holds it:
# PostgreSQL serialises the commits of every transaction that notifies, their flushes to disk
# included (one global lock, held until after the commit), so a NOTIFY in every entry's statement
# capped the journal's commits at one a disk flush. A writer that finds no relay asleep holds the
# lock shared until its commit: a relay going to sleep cannot take it until then, and then sees
# the row (docs/decisions/0011-the-relay-woken-only-when-asleep.md).
SLEEP_LOCK = "hashtextextended('tandem_outbox_wake', 0)"
WAKE_ONLY_ASLEEP_UP = (
    f"""CREATE OR REPLACE FUNCTION tandem_outbox_wake() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NOT pg_try_advisory_xact_lock_shared({SLEEP_LOCK}) THEN
        PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
      END IF;
      RETURN NULL;
    END $$""",
)
WAKE_ONLY_ASLEEP_DOWN = WAKE_TRIGGER_UP[:1]  # the function as it was: a NOTIFY every statement


def migrate_wake_trigger(op, statements: tuple[str, ...]) -> None:
    """Run WAKE_TRIGGER_UP or _DOWN in a migration (PostgreSQL only: SQLite's relay is woken by a socket)."""
    if op.get_bind().dialect.name == "postgresql":
        for statement in statements:
            op.execute(statement)


@functools.cache
def _insert(table: Table):
    return table.insert()  # built once; executed with each event's values


_EVENT_COLUMNS = ("event_id", "routing_key", "body", "created_at")


def _event_row(type_: str, ev: dict) -> dict:
    return {
        "event_id": ev["id"],
        "routing_key": type_,
        "body": events.encode(ev).decode("utf-8"),
        "created_at": utcnow(),
    }


@functools.cache
def _insert_with_event(
    key: Column, columns: tuple[str, ...], table: Table, guard: ColumnElement | None = None
):
    """PostgreSQL: ``WITH new AS (INSERT INTO <key's table> ... ON CONFLICT (key) DO
    NOTHING RETURNING key) INSERT INTO outbox ... SELECT ... FROM new RETURNING seq``:
    the row and its event in one statement, the event only if the row is new.
    With a ``guard``, the row is ``SELECT``ed ``WHERE`` it holds: nothing is
    inserted unless it does. Built once a table, set of columns and guard."""
    target = key.table
    binds = {c: bindparam(f"row_{c}", type_=target.c[c].type) for c in columns}
    insert = INSERTS["postgresql"](target)
    insert = (
        insert.values(binds)
        if guard is None
        else insert.from_select(list(columns), select(*binds.values()).where(guard))
    )
    new = insert.on_conflict_do_nothing(index_elements=[key]).returning(key).cte("new")
    values = select(
        *(bindparam(f"event_{c}", type_=table.c[c].type) for c in _EVENT_COLUMNS)
    ).select_from(new)
    return table.insert().from_select(list(_EVENT_COLUMNS), values).returning(table.c.seq)


def writes_in_one_statement(db: Engine | Session | Connection) -> bool:
    """Whether ``insert_if_new_with_event`` writes the row and its event in one statement on this
    database (PostgreSQL): atomic by itself, so it may run on an autocommit connection, and able
    to check a ``guard`` in the same statement. Elsewhere (SQLite) two statements in a session's
    transaction."""
    return dialect_of(db) == "postgresql"


def insert_if_new_with_event(
    session: Session | Connection,
    key: Column,
    row: dict[str, Any],
    table: Table,
    type_: str,
    *,
    source: str,
    subject: str,
    data: dict[str, Any],
    guard: ColumnElement | None = None,
    guard_params: dict[str, Any] | None = None,
    from_validated: bool = False,
) -> dict | None:
    """Insert `row` unless its `key` is taken (a replay, or a concurrent insert
    that committed), and if it went in, record its event in the outbox `table`,
    in the caller's transaction. Returns the CloudEvent, or None if nothing was
    inserted. On PostgreSQL one statement (the request's hot path: a round trip
    fewer; atomic by itself, so it may run on an autocommit connection);
    elsewhere ``insert_if_new`` and ``emit`` in a session's transaction (a
    Connection is taken on PostgreSQL only).

    ``guard`` (PostgreSQL only; built once, its values in ``guard_params``): a
    condition checked in the same statement, say that what the row was made
    from still holds; if it does not, nothing is inserted (None, as for a
    taken key). ``from_validated``: as ``shared.events.make_event``'s."""
    db = session if isinstance(session, Connection) else session.connection()
    if not writes_in_one_statement(db):
        if guard is not None:
            raise ValueError("a guard is checked in PostgreSQL's one statement only")
        if db.execute(insert_if_new(db, key), row).first() is None:
            return None
        return emit(
            session,
            table,
            type_,
            source=source,
            subject=subject,
            data=data,
            from_validated=from_validated,
        )
    ev = events.make_event(
        type_, source=source, subject=subject, data=data, from_validated=from_validated
    )
    params = {f"row_{c}": v for c, v in row.items()}
    params.update((f"event_{c}", v) for c, v in _event_row(type_, ev).items())
    if guard_params:
        params.update(guard_params)
    if db.execute(_insert_with_event(key, tuple(row), table, guard), params).first() is None:
        return None
    return ev


def emit(
    session: Session,
    table: Table,
    type_: str,
    *,
    source: str,
    subject: str,
    data: dict[str, Any],
    from_validated: bool = False,
) -> dict:
    """Record an event in the caller's transaction. Returns the CloudEvent. ``from_validated``:
    as ``shared.events.make_event``'s."""
    ev = events.make_event(
        type_, source=source, subject=subject, data=data, from_validated=from_validated
    )
    db = session.connection()
    db.execute(_insert(table), _event_row(type_, ev))
    session.info["outbox_wake"] = True  # for the waker after commit, where there is one
    return ev


def emit_many(
    session: Session,
    table: Table,
    type_: str,
    *,
    source: str,
    events_: list[tuple[str, dict[str, Any]]],
    from_validated: bool = False,
) -> list[dict]:
    """Record several events, ``(subject, data)`` each, in the caller's transaction: one
    multi-row statement (a batch of entries writes its events in one round trip, not one
    each). Returns the CloudEvents, in the order given. ``from_validated``: as
    ``shared.events.make_event``'s."""
    if not events_:
        return []
    made = events.make_events(type_, source=source, items=events_, from_validated=from_validated)
    insert_rows(session, table, [_event_row(type_, ev) for ev in made])
    db = session.connection()
    if db.dialect.name != "postgresql":  # PostgreSQL: the outbox's trigger wakes the relay
        session.info["outbox_wake"] = True
    return made


# --- waking the relay on SQLite: a datagram to the relay's socket after commit ---


def wake_socket_path(var_dir: Path, service: str) -> Path:
    return var_dir / "run" / f"{service}-outbox.sock"


def wake_relay_on_commit(
    factory: sessionmaker, engine: Engine, var_dir: Path, service: str
) -> None:
    """Make a commit of `factory`'s sessions that wrote an outbox row wake the relay. PostgreSQL:
    nothing to do, the outbox's trigger sends the NOTIFY (``WAKE_TRIGGER_UP``). SQLite: a datagram
    to the relay's socket after the commit."""
    if engine.dialect.name == "postgresql":
        return
    path = str(wake_socket_path(var_dir, service))
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)

    @event.listens_for(factory, "after_commit")
    def _wake(session: Session) -> None:
        if session.info.pop("outbox_wake", False):
            try:
                sender.sendto(b"1", path)
            except OSError:
                pass  # no relay listening: it will poll

    @event.listens_for(factory, "after_rollback")
    def _forget(session: Session) -> None:
        session.info.pop("outbox_wake", None)


# What a relay about to sleep finds (``_Wakeup.fall_asleep``).
ASLEEP = "asleep"  # every commit from now on wakes it: sleep until one does
BESIDE = "beside"  # another relay sleeps and every commit wakes both: sleep too, not holding it
PENDING = "pending"  # rows to claim now
WRITING = "writing"  # writes not committed yet, which will not wake it: look again shortly
WRITING_LOOK_AGAIN = 0.01  # seconds


class _Wakeup:
    def fall_asleep(self, table: Table) -> str:
        """Before waiting: ``ASLEEP``, ``BESIDE``, ``PENDING`` or ``WRITING``. Only ``ASLEEP``
        is followed by ``wake_up``."""
        return ASLEEP

    def wait(self, timeout: float) -> bool:
        """Block until a commit is signalled (True) or the timeout passes (False)."""
        raise NotImplementedError

    def wake_up(self) -> None:
        pass

    def close(self) -> None:
        pass


# A relay holds the sleep lock alone (writers hold it shared): the session of another relay asleep.
_ANOTHER_ASLEEP = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ExclusiveLock' "
    "AND granted AND pid <> pg_backend_pid() AND objsubid = 1 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    f"AND ((classid::bigint << 32) | objid::bigint) = {SLEEP_LOCK})"
)


class _PgListen(_Wakeup):
    APPLICATION_NAME = "tandem relay wake-up"

    def __init__(self, url: str):
        import psycopg

        u = make_url(url).set(drivername="postgresql")
        self.conn = psycopg.connect(
            u.render_as_string(hide_password=False),
            autocommit=True,
            application_name=self.APPLICATION_NAME,
        )
        self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")

    def fall_asleep(self, table: Table) -> str:
        """Hold the sleep lock (``SLEEP_LOCK``), then look for rows committed before it: from
        then on every commit of an outbox row notifies. Held by another relay asleep: every
        commit notifies both (``BESIDE``); held by a writer still to commit: that commit will not
        notify (``WRITING``)."""
        if not self.conn.execute(f"SELECT pg_try_advisory_lock({SLEEP_LOCK})").fetchone()[0]:
            return BESIDE if self.conn.execute(_ANOTHER_ASLEEP).fetchone()[0] else WRITING
        if self.conn.execute(_any_claimable(table)).fetchone()[0]:
            self.wake_up()
            return PENDING
        return ASLEEP

    def wait(self, timeout: float) -> bool:
        for _ in self.conn.notifies(timeout=timeout, stop_after=1):
            return True
        return False

    def wake_up(self) -> None:
        self.conn.execute(f"SELECT pg_advisory_unlock({SLEEP_LOCK})")

    def close(self) -> None:
        self.conn.close()  # and with it the sleep lock


class _LocalSocket(_Wakeup):
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.path = path

    def wait(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            self.sock.recv(64)
        except (TimeoutError, OSError):
            return False
        self.sock.setblocking(False)
        try:
            while True:  # drain: one wake-up serves every commit so far
                self.sock.recv(64)
        except (BlockingIOError, OSError):
            pass
        return True

    def close(self) -> None:
        self.sock.close()


class _Sleep(_Wakeup):
    def __init__(self, stop: threading.Event):
        self.stop = stop

    def wait(self, timeout: float) -> bool:
        self.stop.wait(timeout)
        return False


class Relay:
    """Moves committed outbox rows to the broker."""

    def __init__(
        self,
        engine: Engine,
        table: Table,
        publisher,
        *,
        service: str,
        var_dir: Path,
        batch_size: int = 200,
        poll_interval: float = 1.0,
        lease: timedelta = LEASE,
    ):
        self.engine = engine
        self.table = table
        self.publisher = publisher
        self.service = service
        self.var_dir = var_dir
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lease = lease
        self.stop_event = threading.Event()
        self._last_cleanup = 0.0

    @functools.cached_property
    def _claim(self):
        """Claim a batch: lease the oldest unclaimed (or lease-expired) rows, return them."""
        t = self.table
        pending = (
            select(t.c.seq)
            .where(claimable(t, bindparam("now")))
            .order_by(t.c.seq)
            .limit(bindparam("batch"))
            .with_for_update(skip_locked=True)
        )
        return (
            update(t)
            .where(t.c.seq.in_(pending.scalar_subquery()))
            .values(claimed_until=bindparam("until"), attempts=t.c.attempts + 1)
            .returning(t.c.seq, t.c.event_id, t.c.routing_key, t.c.body)
        )

    @functools.cached_property
    def _mark(self):
        t = self.table
        return (
            update(t)
            .where(t.c.seq.in_(bindparam("seqs", expanding=True)))
            .values(published_at=bindparam("at"))
        )

    def _one_statement(self):
        """A connection for a claim or a mark, each one statement and so its own
        transaction: on PostgreSQL in autocommit (no BEGIN and COMMIT round trips)."""
        if self.engine.dialect.name == "postgresql":
            return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self.engine.begin()

    # One claim, publish, mark cycle; returns how many rows it published.
    def relay_once(self) -> int:
        now = utcnow()
        with self._one_statement() as conn:
            rows = sorted(
                conn.execute(
                    self._claim, {"now": now, "until": now + self.lease, "batch": self.batch_size}
                ).all()
            )
        if not rows:
            return 0
        try:
            self.publisher.publish_many(
                (r.body.encode("utf-8"), r.routing_key, r.event_id) for r in rows
            )
        except Exception:
            self._unclaim(
                [r.seq for r in rows]
            )  # sent again on the next cycle, not after the lease
            raise
        self.on_published(rows)
        with self._one_statement() as conn:
            conn.execute(self._mark, {"seqs": [r.seq for r in rows], "at": utcnow()})
        secret = [r.seq for r in rows if r.routing_key in events.SECRET_TYPES]
        if secret:  # a secret (a reset link's token) is kept nowhere once it is on its way
            with self._one_statement() as conn:
                conn.execute(delete(self.table).where(self.table.c.seq.in_(secret)))
        metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(rows))
        return len(rows)

    def _unclaim(self, seqs: list[int]) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(self.table)
                    .where(self.table.c.seq.in_(seqs), self.table.c.published_at.is_(None))
                    .values(claimed_until=None)
                )
        except Exception as e:  # the database is away too: the lease frees them
            log.warning("relay_unclaim_failed", service=self.service, error=type(e).__name__)

    def on_published(self, rows) -> None:
        """Hook between publishing and marking (tests kill the relay here)."""

    def cleanup(self) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(
                delete(self.table).where(self.table.c.published_at < utcnow() - RETENTION)
            )
        return res.rowcount or 0

    def backlog(self) -> tuple[int, float]:
        """(unpublished rows, age in seconds of the oldest one)."""
        t = self.table
        with self.engine.connect() as conn:
            n, oldest = conn.execute(
                select(func.count(), func.min(t.c.created_at)).where(t.c.published_at.is_(None))
            ).one()
        # An aggregate is not typed by the column: SQLite gives the raw value back.
        if isinstance(oldest, str):
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return n, (utcnow() - oldest).total_seconds() if oldest else 0.0

    def _wakeup(self) -> _Wakeup:
        try:
            if self.engine.dialect.name == "postgresql":
                return _PgListen(self.engine.url.render_as_string(hide_password=False))
            return _LocalSocket(wake_socket_path(self.var_dir, self.service))
        except Exception as e:  # the fallback still polls
            log.warning("relay_wakeup_unavailable", error=type(e).__name__)
            return _Sleep(self.stop_event)

    def run(self) -> None:
        log.info("relay_started", service=self.service, pid=os.getpid())
        wakeup = self._wakeup()
        listen_again_at = time.monotonic() + LISTEN_RETRY
        backoff = 0.5
        try:
            while not self.stop_event.is_set():
                try:
                    n = self.relay_once()
                    backoff = 0.5
                    if isinstance(wakeup, _Sleep) and time.monotonic() >= listen_again_at:
                        # Polling only because the database was away when we last tried to listen.
                        wakeup = self._wakeup()
                        listen_again_at = time.monotonic() + LISTEN_RETRY
                    if time.monotonic() - self._last_cleanup > 600:
                        self.cleanup()
                        self._last_cleanup = time.monotonic()
                    pending, age = self.backlog() if n == 0 else (None, None)
                    if pending is not None:
                        metrics.OUTBOX_BACKLOG.labels(self.service).set(pending)
                        metrics.OUTBOX_OLDEST_AGE.labels(self.service).set(age)
                    if n < self.batch_size:
                        self._idle(wakeup)
                except Exception as e:
                    # Broker or database away: rows stay committed and are re-sent later.
                    log.warning(
                        "relay_cycle_failed",
                        service=self.service,
                        error=type(e).__name__,
                        detail=str(e)[:200],
                        retry_in=backoff,
                    )
                    self.stop_event.wait(backoff)
                    backoff = min(backoff * 2, 10)
                    try:
                        wakeup.close()
                    except Exception:
                        pass
                    wakeup = self._wakeup()
        finally:
            wakeup.close()
            log.info("relay_stopped", service=self.service)

    def _idle(self, wakeup: _Wakeup) -> None:
        """Until a commit wakes us or the poll interval passes; stop() is heard within 0.5 s.
        Not at all if rows came meanwhile; shortly if writes in flight will not wake us."""
        found = wakeup.fall_asleep(self.table)
        if found == PENDING:
            return
        if found == WRITING:
            wakeup.wait(WRITING_LOOK_AGAIN)
            return
        try:
            deadline = time.monotonic() + self.poll_interval
            while not self.stop_event.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or wakeup.wait(min(left, 0.5)):
                    return
        finally:
            if found == ASLEEP:
                wakeup.wake_up()

    def stop(self) -> None:
        self.stop_event.set()
