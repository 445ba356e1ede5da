"""PostgreSQL: an outbox row's commit wakes the relay only while a relay sleeps.

PostgreSQL serialises the commits of every transaction that sends a NOTIFY (their flushes to disk
included), so a NOTIFY with every event capped the commits of every writer at one a flush. A
relay going to sleep holds ``shared.outbox.SLEEP_LOCK``; the outbox's trigger notifies only while
it is held, and a writer that found it free holds it shared until its commit, so that a relay
never sleeps through a row."""

from __future__ import annotations

import threading

import psycopg
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url

from services.journal import app as journal_app
from services.journal.tables import outbox
from shared import outbox as outbox_module
from shared.db import make_session_factory, unit_of_work, utcnow
from shared.outbox import ASLEEP, BESIDE, NOTIFY_CHANNEL, PENDING, WRITING, emit
from tests.conftest import entry, new_id, sign_up
from tests.support import wait_until


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _deleted(s) -> None:
    emit(
        s,
        outbox,
        "journal.entry.deleted",
        source="/journal",
        subject="c",
        data={"entry_id": new_id(), "couple_id": None, "partner_id": new_id()},
    )


def _all_published(engine) -> None:
    with engine.begin() as c:
        c.execute(update(outbox).values(published_at=utcnow()))


def _unpublished(engine) -> int:
    with engine.connect() as c:
        return c.execute(
            select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        ).scalar()


def test_a_relay_falls_asleep_only_when_no_row_nor_write_is_waiting(rabbit_backend):
    engine = rabbit_backend.engine("journal")
    sessions = make_session_factory(engine)
    sleeper = outbox_module._PgListen(rabbit_backend.db_urls["journal"])
    try:
        assert sleeper.fall_asleep(outbox) == ASLEEP
        sleeper.wake_up()
        with unit_of_work(sessions) as s:
            _deleted(s)
            assert sleeper.fall_asleep(outbox) == WRITING  # this commit will not wake it
        assert sleeper.fall_asleep(outbox) == PENDING  # committed: to claim now
        _all_published(engine)
        assert sleeper.fall_asleep(outbox) == ASLEEP
    finally:
        sleeper.close()
        engine.dispose()


def test_a_relay_sleeps_beside_another_asleep_and_both_are_woken(rabbit_backend):
    engine = rabbit_backend.engine("journal")
    sessions = make_session_factory(engine)
    first = outbox_module._PgListen(rabbit_backend.db_urls["journal"])
    second = outbox_module._PgListen(rabbit_backend.db_urls["journal"])
    try:
        assert first.fall_asleep(outbox) == ASLEEP
        assert second.fall_asleep(outbox) == BESIDE  # not a write in flight: no busy look
        with unit_of_work(sessions) as s:
            _deleted(s)
        assert first.wait(10) and second.wait(10)
        first.wake_up()
        assert second.fall_asleep(outbox) == PENDING
    finally:
        first.close()
        second.close()
        engine.dispose()


def test_an_event_notifies_only_while_a_relay_sleeps(rabbit_backend, rabbit_journal):
    url = rabbit_backend.db_urls["journal"]
    engine = rabbit_backend.engine("journal")
    with psycopg.connect(_libpq(url), autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        a = sign_up(rabbit_journal)  # its event, then an entry's, with no relay asleep
        assert (
            rabbit_journal.post("/v1/entries", headers=a["headers"], json=entry()).status_code
            == 201
        )
        with psycopg.connect(_libpq(url), autocommit=True) as marker:
            marker.execute(f"NOTIFY {NOTIFY_CHANNEL}, 'marker'")
        # Delivered in commit order: a notification of the writes above would come first.
        first = next(listener.notifies(timeout=10, stop_after=1))
        assert first.payload == "marker"
        _all_published(engine)
        sleeper = outbox_module._PgListen(url)
        try:
            assert sleeper.fall_asleep(outbox) == ASLEEP
            r = rabbit_journal.post("/v1/entries", headers=a["headers"], json=entry())
            assert r.status_code == 201
            woken = list(listener.notifies(timeout=10, stop_after=1))
            assert [n.payload for n in woken] == [""]
            assert sleeper.wait(10)
        finally:
            sleeper.close()
    engine.dispose()


def test_a_write_in_flight_when_the_relay_would_sleep_is_published_at_its_commit(
    rabbit_backend, monkeypatch
):
    engine = rabbit_backend.engine("journal")
    sessions = make_session_factory(engine)
    found: list[str] = []
    fall_asleep = outbox_module._PgListen.fall_asleep

    def recorded(self, table):
        found.append(fall_asleep(self, table))
        return found[-1]

    monkeypatch.setattr(outbox_module._PgListen, "fall_asleep", recorded)
    relay = journal_app.make_relay()
    relay.poll_interval = 60  # a poll would come far too late for this test
    writer = unit_of_work(sessions)
    _deleted(writer.__enter__())  # the sleep lock held shared until the commit below
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: WRITING in found, what="the relay to find a write in flight")
        writer.__exit__(None, None, None)
        wait_until(lambda: _unpublished(engine) == 0, timeout=10, what="the row published")
    finally:
        relay.stop()
        thread.join(timeout=10)
        relay.publisher.close()
        engine.dispose()
    assert not thread.is_alive()
    assert ASLEEP not in found[: found.index(WRITING)]
