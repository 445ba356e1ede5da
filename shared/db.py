"""Database plumbing: engines, a unit of work, and types and statements that behave the same
on SQLite (the embedded default) and PostgreSQL. Where the two differ, the difference is here
(or in the adapter it concerns: the outbox's relay, the consumer, the live stream), never in a
use case."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import JSON, Column, DateTime, MetaData, create_engine, event, exc, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

# JSONB on PostgreSQL, JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator):
    """An aware UTC timestamp on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def service_metadata() -> MetaData:
    """A service's MetaData, with the constraint names every migration relies on."""
    return MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # WAL lets the web workers, the relay and the consumers share one file.
            dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below take over
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # Take the write lock up front: no deadlock on upgrading a read to a write.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 5)
    return create_engine(url, hide_parameters=True, **kwargs)


INSERTS = {
    "postgresql": pg_insert,
    "sqlite": sqlite_insert,
}  # by dialect name: INSERT with ON CONFLICT


def dialect_of(db: Engine | Session | Connection) -> str:
    """The name of the database kind an engine, session or connection is on: "postgresql" or "sqlite"."""
    return (db.get_bind() if isinstance(db, Session) else db).dialect.name


def on_conflict_statement(build: Callable) -> Callable:
    """A statement with ``ON CONFLICT``, built once a database kind and arguments:
    ``build(insert, *args)`` makes it from that kind's ``insert``; the decorated function
    takes the session or connection it will run on first, then the same arguments."""
    built = functools.cache(lambda dialect, *args: build(INSERTS[dialect], *args))

    @functools.wraps(build)
    def for_db(db: Session | Connection, *args):
        return built(dialect_of(db), *args)

    return for_db


@on_conflict_statement
def insert_if_new(insert, key: Column, unique: tuple[Column, ...] = ()):
    """``INSERT ... ON CONFLICT (key) DO NOTHING RETURNING key``; executed with the row's
    values, it returns nothing if the key was there already (or a concurrent transaction just
    committed it). ``unique``: the columns of another unique constraint to check instead of
    the key."""
    return (
        insert(key.table)
        .on_conflict_do_nothing(index_elements=list(unique or (key,)))
        .returning(key)
    )


@functools.cache
def _insert_from_json(table, columns: tuple[str, ...], key: str | None):
    """PostgreSQL: ``INSERT INTO t (cols) SELECT cols FROM jsonb_populate_recordset(NULL::t, :rows)``
    (``ON CONFLICT (key) DO NOTHING RETURNING key`` with a key): every row in one parameter, so the
    statement's text is the same whatever their number (parsed and prepared once, where a VALUES
    list of a hundred rows is a new statement of a thousand parameters each time)."""
    names = ", ".join(f'"{c}"' for c in columns)
    sql = (
        f'INSERT INTO "{table.name}" ({names}) SELECT {names} '
        f'FROM jsonb_populate_recordset(NULL::"{table.name}", CAST(:rows AS jsonb))'
    )
    if key is not None:
        sql += f' ON CONFLICT ("{key}") DO NOTHING RETURNING "{key}"'
    return text(sql)


def _json_value(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()  # a datetime is aware (UTCDateTime): its instant is kept
    raise TypeError(f"{type(value).__name__} is not a column value")


def insert_rows(session: Session, table, rows: list[dict], key: Column | None = None) -> set:
    """Insert many rows of `table` (the same columns each) in one statement; with a `key`, only
    those whose key is not taken (``insert_if_new``), returning the keys of those inserted."""
    if not rows:
        return set()
    db = session.connection()
    if db.dialect.name == "postgresql":
        stmt = _insert_from_json(table, tuple(rows[0]), key.name if key is not None else None)
        result = db.execute(stmt, {"rows": json.dumps(rows, default=_json_value)})
    elif key is not None:
        result = db.execute(insert_if_new(db, key), rows)
    else:
        db.execute(table.insert(), rows)
        return set()
    return set(result.scalars()) if key is not None else set()


def upsert(db: Session | Connection, table):
    """``INSERT`` with ``ON CONFLICT`` for the session's database (PostgreSQL or SQLite)."""
    return INSERTS[dialect_of(db)](table)


_XACT_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


def lock_until_commit(db: Session | Connection, key: str) -> None:
    """Take the lock named `key` until the transaction ends: two transactions about the same
    thing take turns. PostgreSQL: an advisory lock. SQLite: nothing to do, its writers take
    turns already (the database file's lock, from the transaction's first statement)."""
    if dialect_of(db) == "postgresql":
        db.execute(_XACT_LOCK, {"key": key})


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction around one change: commit on success, roll back on error."""
    session = factory()
    try:
        with session.begin():
            yield session
    finally:
        session.close()


# SQLSTATE codes that mean "try again later", not "this input is wrong":
# connection exceptions (08), transaction rollbacks: serialization failure,
# deadlock (40), insufficient resources: too many connections, out of memory,
# disk full (53), and the server shutting down, crashed or starting up
# (57P01-57P03), a lock wait or a statement that timed out (55P03, 57014).
TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53")
TRANSIENT_SQLSTATES = ("57P01", "57P02", "57P03", "55P03", "57014")
SQLITE_BUSY, SQLITE_LOCKED = 5, 6


def is_transient(error: BaseException) -> bool:
    """The database is unreachable, restarting, busy or chose this transaction
    to fail (deadlock, serialization): retry later, the input is fine.

    Decided by the driver's own codes: PostgreSQL's SQLSTATE, SQLite's
    primary result code; psycopg's connection errors carry no SQLSTATE (the
    server was never reached, or went away mid-query)."""
    if isinstance(error, exc.TimeoutError):  # the pool had no connection to give in time
        return True
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate:
        return sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES or sqlstate in TRANSIENT_SQLSTATES
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (
            SQLITE_BUSY,
            SQLITE_LOCKED,
        )  # extended codes keep the primary in the low byte
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))
