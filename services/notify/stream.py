"""The live inbox: server-sent events, one per new notification.

Notifications are written by the notify consumer, another process, so the web
process needs a signal. One thread per web process (the ``Hub``) provides it:

- PostgreSQL: the consumer's transaction runs ``pg_notify('tandem_notifications',
  <partner id>)`` (delivered on commit); the hub's thread LISTENs on its own
  connection and wakes the streams of that partner.
- SQLite: the hub's thread polls, every 0.5 s, a per-partner signature
  (count, newest) of the partners someone is streaming, through the index.

A waiting stream holds no database connection: it waits on the hub's
condition, and on a wake-up reads only its partner's rows created since
shortly before its last read (``SKEW`` covers a row committed after a newer
one), skipping those it has already sent. Every stream also re-reads once per
heartbeat, so a lost signal delays an event but never drops it.

A stream waits on a thread of its own for as long as it is open: the web
process holds ``NOTIFY_STREAMS_PER_PROCESS`` streams at most, on threads
gunicorn adds for them (shared/gunicorn_conf.py), and one partner
``NOTIFY_STREAMS_PER_PARTNER`` of them (``Slots``), so no account can take the
threads requests need. A stream ends when its token is no longer accepted; the
client comes back with a fresh one.
"""

from __future__ import annotations

import functools
import json
import os
import select as _select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import structlog
from sqlalchemy import and_, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.db import dialect_of, is_transient, unit_of_work, utcnow
from shared.errors import Throttled

from .tables import notifications

log = structlog.get_logger("notify.stream")

CHANNEL = "tandem_notifications"
HEARTBEAT = 15.0  # seconds between ": keep-alive" comments (and safety re-reads)
POLL = 0.5  # SQLite: seconds between polls
CHECK = 1.0  # seconds between checks that a waiting client is still connected
SKEW = timedelta(seconds=5)  # how much later than a newer row an older one may commit
RETRY_MS = 3000
RETRY_AFTER = 5  # seconds a refused stream is told to wait


_WAKE = text(f"SELECT pg_notify('{CHANNEL}', p) FROM unnest(CAST(:pids AS text[])) AS p")


def wake_on_commit(s: Session, partner_ids: list[str]) -> None:
    """Wake these partners' live streams, in every web process, once the caller's transaction
    commits. PostgreSQL: a NOTIFY each, which the hubs LISTEN to. SQLite: nothing to send,
    the hubs poll."""
    if partner_ids and dialect_of(s) == "postgresql":
        s.execute(_WAKE, {"pids": partner_ids})


class Hub:
    """Wakes the waiting streams of a partner; one per web process."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.cond = threading.Condition()
        self.versions: dict[str, int] = {}
        self.watchers: dict[str, int] = {}
        self.epoch = 0
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    # --- for the streams ---

    def subscribe(self, partner_id: str) -> None:
        with self.cond:
            self.watchers[partner_id] = self.watchers.get(partner_id, 0) + 1
            self._ensure_thread()

    def unsubscribe(self, partner_id: str) -> None:
        with self.cond:
            left = self.watchers.get(partner_id, 0) - 1
            if left > 0:
                self.watchers[partner_id] = left
            else:
                self.watchers.pop(partner_id, None)
                self.versions.pop(partner_id, None)

    def version(self, partner_id: str) -> tuple[int, int]:
        with self.cond:
            return self.epoch, self.versions.get(partner_id, 0)

    def wait(self, partner_id: str, seen: tuple[int, int], timeout: float) -> tuple[int, int]:
        """The partner's version once it differs from ``seen``, or after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                now = (self.epoch, self.versions.get(partner_id, 0))
                left = deadline - time.monotonic()
                if now != seen or left <= 0:
                    return now
                self.cond.wait(left)

    # --- for the signal thread ---

    def bump(self, partner_ids=None) -> None:
        """Wake the streams of these partners (of everyone if None)."""
        with self.cond:
            if partner_ids is None:
                self.epoch += 1
            else:
                for pid in partner_ids:
                    if pid in self.watchers:
                        self.versions[pid] = self.versions.get(pid, 0) + 1
            self.cond.notify_all()

    def _ensure_thread(self) -> None:
        # Under self.cond. Threads do not survive a fork: one per process.
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        target = self._listen if self.engine.dialect.name == "postgresql" else self._poll
        self._thread = threading.Thread(target=target, name="notify-stream-signal", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        import psycopg

        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        backoff = 0.5
        while True:
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.bump(None)  # whatever committed while nobody listened
                    backoff = 0.5
                    while True:
                        for n in conn.notifies(timeout=5.0):
                            self.bump([n.payload] if n.payload else None)
            except Exception as e:  # the database went away: listen again, streams re-read
                log.warning("stream_listener_failed", error=type(e).__name__, retry_in=backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10)

    def _poll(self) -> None:
        last: dict[str, tuple] = {}
        while True:
            time.sleep(POLL)
            with self.cond:
                watched = sorted(self.watchers)
            last = {p: v for p, v in last.items() if p in watched}
            if not watched:
                continue
            try:
                # A raw autocommit read: no transaction, so no write lock on the file.
                raw = self.engine.raw_connection()
                try:
                    cur = raw.cursor()
                    marks = ",".join("?" * len(watched))
                    cur.execute(
                        "SELECT partner_id, count(*), max(created_at), max(id) FROM notifications "
                        f"WHERE partner_id IN ({marks}) GROUP BY partner_id",
                        watched,
                    )
                    rows = cur.fetchall()
                    cur.close()
                finally:
                    raw.close()
            except Exception as e:
                log.warning("stream_poll_failed", error=type(e).__name__)
                continue
            now = {r[0]: tuple(r[1:]) for r in rows}
            changed = [p for p in watched if p not in last or now.get(p) != last[p]]
            last.update({p: now.get(p) for p in watched})
            if changed:
                self.bump(changed)


_hubs: dict[int, Hub] = {}
_hubs_lock = threading.Lock()


def hub_for(engine: Engine) -> Hub:
    with _hubs_lock:
        hub = _hubs.get(id(engine))
        if hub is None or hub.engine is not engine:
            hub = _hubs[id(engine)] = Hub(engine)
        return hub


class Slots:
    """The streams one web process holds: ``per_process`` at most, ``per_partner`` of one partner.

    A stream's slot is taken back when the stream ends, and, when a new stream
    would be refused, at once from a stream whose client has left (a phone
    that reconnects is not refused for the connection it just dropped)."""

    def __init__(self, per_process: int, per_partner: int):
        self.per_process = per_process
        self.per_partner = per_partner
        self._lock = threading.Lock()
        self._held: dict[str, list] = {}  # partner id -> the sockets of their open streams
        self._count = 0

    def take(self, partner_id: str, sock) -> Callable[[], None]:
        """A slot for a stream of ``partner_id`` on ``sock``, as the function that gives it back;
        Throttled (429 with Retry-After) when this process, or this partner, holds all it may."""
        with self._lock:
            if (
                self._count >= self.per_process
                or len(self._held.get(partner_id, ())) >= self.per_partner
            ):
                self._take_back_from_the_gone()
            if self._count >= self.per_process:
                raise Throttled(
                    "Too many live streams are open here; try again shortly "
                    "(the inbox, GET /v1/notifications, answers meanwhile).",
                    RETRY_AFTER,
                )
            mine = self._held.setdefault(partner_id, [])
            if len(mine) >= self.per_partner:
                raise Throttled(
                    f"This account already has {self.per_partner} live streams open here; "
                    "close one, or try again shortly.",
                    RETRY_AFTER,
                )
            slot = [sock]  # a list: its identity, not the socket's, marks this stream
            mine.append(slot)
            self._count += 1
        return functools.partial(self._give_back, partner_id, slot)

    def _give_back(self, partner_id: str, slot: list) -> None:
        with self._lock:
            mine = self._held.get(partner_id, [])
            if any(s is slot for s in mine):
                mine[:] = [s for s in mine if s is not slot]
                self._count -= 1
            if not mine:
                self._held.pop(partner_id, None)

    def _take_back_from_the_gone(self) -> None:
        # Under the lock. Their threads see the same closed socket within CHECK and end.
        for partner_id, mine in list(self._held.items()):
            left = [s for s in mine if not _client_gone(s[0])]
            self._count -= len(mine) - len(left)
            if left:
                self._held[partner_id] = left
            else:
                del self._held[partner_id]


def parse_id(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value.strip())) if value else None
    except (ValueError, AttributeError):
        return None


class _Cursor:
    """What this connection has sent: rows created since ``lower``, by id."""

    def __init__(self, sessions: sessionmaker, partner_id: str):
        self.sessions = sessions
        self.partner_id = partner_id
        self.lower = utcnow() - SKEW
        self.seen: dict[str, object] = {}

    def start(self, after: str | None) -> list[dict]:
        """Mark what exists as sent; with ``after`` (a notification id of this
        partner) return what came after it instead, in creation order."""
        t = notifications
        with unit_of_work(self.sessions) as s:
            at = None
            if after:
                at = s.execute(
                    select(t.c.created_at).where(t.c.id == after, t.c.partner_id == self.partner_id)
                ).scalar()
            if at is None:
                self._read(s, emit=False)
                return []
            self.lower = min(self.lower, at - SKEW)
            rows = self._rows(s)
            for r in rows:
                if (r.created_at, r.id) <= (at, after):
                    self.seen[r.id] = r.created_at
            return self._read(s, emit=True, rows=rows)

    def fetch(self) -> list[dict]:
        with unit_of_work(self.sessions) as s:
            return self._read(s, emit=True)

    def _rows(self, s):
        t = notifications
        return s.execute(
            select(t)
            .where(and_(t.c.partner_id == self.partner_id, t.c.created_at >= self.lower))
            .order_by(t.c.created_at, t.c.id)
        ).all()

    def _read(self, s, *, emit: bool, rows=None) -> list[dict]:
        from .use_cases import _view  # the inbox's own view of a notification

        read_at = utcnow()
        rows = self._rows(s) if rows is None else rows
        new = [r for r in rows if r.id not in self.seen]
        for r in new:
            self.seen[r.id] = r.created_at
        self.lower = max(self.lower, read_at - SKEW)
        self.seen = {i: at for i, at in self.seen.items() if at >= self.lower}
        return _view(s, new) if emit and new else []


def _client_gone(sock) -> bool:
    """The client closed its end (a readable socket with nothing to read)."""
    if sock is None:
        return False
    try:
        readable, _, _ = _select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except ValueError:  # TLS sockets take no flags: rely on the heartbeat write
        return False
    except OSError:
        return True


def frame(note: dict) -> str:
    from .schemas import Notification

    data = json.dumps(Notification().dump(note), separators=(",", ":"))
    return f"id: {note['id']}\nevent: notification\ndata: {data}\n\n"


class _Body:
    """A stream's body; closed by the server when the answer ends, begun or not."""

    def __init__(self, lines: Iterator[str], on_close):
        self.lines = lines
        self.on_close = on_close

    def __iter__(self) -> Iterator[str]:
        return self.lines

    def close(self) -> None:
        self.lines.close()
        if self.on_close is not None:
            self.on_close()
            self.on_close = None


def events(
    engine: Engine,
    sessions: sessionmaker,
    partner_id: str,
    after: str | None,
    sock=None,
    *,
    until: float | None = None,
    slots: Slots | None = None,
) -> _Body:
    """The SSE body: new notifications of ``partner_id`` until the client leaves,
    or until ``until`` (a Unix time: when its token is no longer accepted). With
    ``slots``, it holds one of them while open (Throttled when none is free).

    The first read is made here, before the answer begins: a database that is
    away is the view's error (a 503 problem), not a 200 cut off before its
    first line (which the server could only turn into a bare 500)."""
    give_back = slots.take(partner_id, sock) if slots is not None else (lambda: None)
    hub = hub_for(engine)
    hub.subscribe(partner_id)

    def close() -> None:
        hub.unsubscribe(partner_id)
        give_back()

    try:
        version = hub.version(partner_id)  # before the first read: no signal falls in between
        cursor = _Cursor(sessions, partner_id)
        backlog = cursor.start(after)
    except BaseException:
        close()
        raise
    return _Body(_follow(hub, cursor, partner_id, version, backlog, sock, until), close)


def _fetch(cursor: _Cursor) -> list[dict]:
    """The new notifications; none while the database is away: the stream stays
    open, and the next wake-up (the hub's, once it listens again) or heartbeat
    reads from where the last read that worked left off."""
    try:
        return cursor.fetch()
    except Exception as e:
        if not is_transient(e):
            raise
        log.warning("stream_read_failed", error=type(e).__name__)
        return []


def _follow(
    hub: Hub,
    cursor: _Cursor,
    partner_id: str,
    version: tuple[int, int],
    backlog: list[dict],
    sock,
    until: float | None,
) -> Iterator[str]:
    # What was missed (on resume), then ": live": from here on, only new notifications.
    yield f"retry: {RETRY_MS}\n\n" + "".join(frame(note) for note in backlog) + ": live\n\n"
    last_read = last_beat = time.monotonic()
    while True:
        left = CHECK if until is None else until - time.time()
        if left <= 0:  # the token is refused from now on: the client reconnects with a fresh one
            yield ": token expired\n\n"
            return
        new_version = hub.wait(partner_id, version, min(CHECK, left))
        if _client_gone(sock):
            return
        now = time.monotonic()
        if new_version != version or now - last_read >= HEARTBEAT:
            version = new_version
            last_read = now
            for note in _fetch(cursor):
                last_beat = now
                yield frame(note)
        if now - last_beat >= HEARTBEAT:
            last_beat = now
            yield ": keep-alive\n\n"
