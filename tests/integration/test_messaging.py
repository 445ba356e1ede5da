"""The shared messaging core against real parts: the outbox, the relay and the
idempotent consumer, on the embedded broker and on RabbitMQ with PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from kombu import Producer
from prometheus_client import REGISTRY
from sqlalchemy import event, func, select

from services.journal import app as journal_app
from services.journal.tables import entries, outbox
from shared import broker, events, topology
from shared import outbox as outbox_module
from tests.conftest import entry, make_couple, sign_up
from tests.support import ConsumerThread, drain, wait_until


def _outbox_rows(backend):
    with backend.engine("journal").connect() as c:
        return c.execute(select(outbox).order_by(outbox.c.seq)).all()


def _count(backend, table) -> int:
    with backend.engine("journal").connect() as c:
        return c.execute(select(func.count()).select_from(table)).scalar()


def _relay_all(relay) -> int:
    total = 0
    while n := relay.relay_once():
        total += n
    return total


class TestOutbox:
    def test_entry_and_its_event_commit_together(self, backend, journal):
        a = sign_up(journal)
        before = _count(backend, outbox)
        r = journal.post("/v1/entries", headers=a["headers"], json=entry())
        assert r.status_code == 201
        assert _count(backend, entries) == 1
        assert _count(backend, outbox) == before + 1
        assert _outbox_rows(backend)[-1].routing_key == "journal.entry.recorded"

    def test_entry_is_not_stored_when_its_event_cannot_be_written(
        self, backend, journal, monkeypatch
    ):
        a = sign_up(journal)
        before = _count(backend, outbox)

        real_row = outbox_module._event_row

        def unwritable(
            type_, ev
        ):  # the database refuses the event's row (its body may not be NULL)
            return {**real_row(type_, ev), "body": None}

        # PostgreSQL writes the entry and its event in one statement, SQLite in two: either way, neither stays
        monkeypatch.setattr(outbox_module, "_event_row", unwritable)
        r = journal.post("/v1/entries", headers=a["headers"], json=entry())
        assert r.status_code == 500
        assert r.mimetype == "application/problem+json"
        assert _count(backend, entries) == 0
        assert _count(backend, outbox) == before

    def test_on_postgresql_an_entry_is_one_write_with_no_transaction_round_trips(
        self, rabbit_backend, rabbit_journal
    ):
        a = sign_up(rabbit_journal)
        engine = rabbit_journal.application.extensions["journal"]["engine"]
        sent: list[tuple[str, bool]] = []

        def record(conn, _cursor, sql, _params, _context, _many):
            sent.append((sql.split()[0].upper(), conn.connection.driver_connection.autocommit))

        event.listen(engine, "before_cursor_execute", record)
        try:
            body = entry()
            assert (
                rabbit_journal.post("/v1/entries", headers=a["headers"], json=body).status_code
                == 201
            )
            assert (
                rabbit_journal.post("/v1/entries", headers=a["headers"], json=body).status_code
                == 200
            )
        finally:
            event.remove(engine, "before_cursor_execute", record)
        # New: the author's read, then the entry with its event (one statement); a replay, its author now
        # remembered, is that statement (which inserts nothing) and a read of the stored entry. Each
        # statement commits by itself: no BEGIN or COMMIT is sent.
        assert sent == [("SELECT", True), ("WITH", True), ("WITH", True), ("SELECT", True)]
        with (
            engine.connect() as conn
        ):  # the connection went back to the pool with transactions on again
            assert conn.connection.driver_connection.autocommit is False
        assert _count(rabbit_backend, entries) == 1
        assert [r.routing_key for r in _outbox_rows(rabbit_backend)].count(
            "journal.entry.recorded"
        ) == 1

    def test_relay_publishes_committed_events_and_marks_them(self, backend, journal):
        a = sign_up(journal)
        for _ in range(3):
            assert (
                journal.post("/v1/entries", headers=a["headers"], json=entry()).status_code == 201
            )
        relay = journal_app.make_relay()
        assert _relay_all(relay) == 4  # registered + 3 recorded
        assert all(r.published_at is not None for r in _outbox_rows(backend))
        got = drain("milestones.events")
        assert sorted(
            m.properties.get("message_id") or json.loads(m.body)["id"] for m in got
        ) == sorted(r.event_id for r in _outbox_rows(backend))
        for m in got:
            assert m.content_type == "application/cloudevents+json"
            events.parse(m.body)  # a valid event of the catalog
        relay.publisher.close()


KILL_AFTER_PUBLISH = textwrap.dedent("""
    import os, signal
    from datetime import timedelta
    from services.journal.app import make_relay
    relay = make_relay()
    relay.lease = timedelta(milliseconds=300)
    relay.on_published = lambda rows: os.kill(os.getpid(), signal.SIGKILL)
    relay.relay_once()
""")


class TestRelayCrash:
    def test_relay_killed_between_publishing_and_marking_resends_and_consumer_applies_once(
        self, backend, journal
    ):
        a = sign_up(journal)
        for _ in range(3):
            journal.post("/v1/entries", headers=a["headers"], json=entry())
        ids = {r.event_id for r in _outbox_rows(backend)}
        assert len(ids) == 4

        proc = subprocess.run(
            [sys.executable, "-c", KILL_AFTER_PUBLISH], capture_output=True, timeout=60
        )
        assert proc.returncode == -9, proc.stderr.decode()[-2000:]
        rows = _outbox_rows(backend)
        assert all(r.published_at is None and r.attempts == 1 for r in rows), (
            "killed before marking"
        )

        # Once the dead relay's lease runs out, a new relay claims the rows again and re-sends them.
        relay = journal_app.make_relay()
        wait_until(
            lambda: relay.relay_once() == 4, what="the rows to be claimed again after the lease"
        )
        assert all(r.published_at is not None and r.attempts == 2 for r in _outbox_rows(backend))

        with ConsumerThread(backend.db_urls["journal"]) as consumer:
            wait_until(lambda: consumer.settled == 8, what="both copies of 4 events to be settled")
            assert consumer.times_applied() == {i: 1 for i in ids}
        relay.publisher.close()

    def test_a_batch_that_could_not_be_published_is_sent_again_at_once_not_after_the_lease(
        self, backend, journal, monkeypatch
    ):
        a = sign_up(journal)
        journal.post("/v1/entries", headers=a["headers"], json=entry())
        relay = journal_app.make_relay()
        real = relay.publisher.publish_many

        def broker_away(messages):
            raise ConnectionResetError("the broker went away mid-batch")

        monkeypatch.setattr(relay.publisher, "publish_many", broker_away)
        with pytest.raises(ConnectionResetError):
            relay.relay_once()
        assert all(
            r.claimed_until is None and r.published_at is None for r in _outbox_rows(backend)
        )
        monkeypatch.setattr(relay.publisher, "publish_many", real)
        assert relay.relay_once() == 2
        assert all(r.published_at is not None and r.attempts == 2 for r in _outbox_rows(backend))
        assert len(drain("milestones.events")) == 2
        relay.publisher.close()


class TestPipelinedConfirms:
    """On RabbitMQ a batch is published on one channel in confirm mode and its
    acks awaited together; a message the broker refuses fails the batch."""

    def test_a_batch_is_confirmed_as_a_whole_and_every_message_arrives_once(self, rabbit_backend):
        conn = broker.connect()
        publisher = broker.Publisher(conn)
        try:
            ids = [new_uuid() for _ in range(500)]
            for start in (0, 250):  # two batches on the same confirm channel: tags go on counting
                assert (
                    publisher.publish_many(
                        (b"{}", "journal.entry.deleted", i) for i in ids[start : start + 250]
                    )
                    == 250
                )
            got = drain("milestones.events")
            assert sorted(m.properties["message_id"] for m in got) == sorted(ids)
            assert {m.content_type for m in got} == {events.CONTENT_TYPE}
            assert all(m.delivery_info["routing_key"] == "journal.entry.deleted" for m in got)
        finally:
            publisher.close()

    def test_a_message_the_broker_refuses_fails_the_batch_and_the_next_batch_goes_through(
        self, rabbit_backend
    ):
        from kombu import Queue

        conn = broker.connect()
        publisher = broker.Publisher(conn)
        full = Queue(
            "tests.full",
            exchange=topology.EXCHANGE,
            routing_key="tests.full",
            durable=False,
            queue_arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
        )
        try:
            topology.declare(conn)
            full(conn.default_channel).declare()
            with pytest.raises(broker.PublishNotConfirmed):
                publisher.publish_many(
                    [
                        (b"{}", "journal.entry.deleted", new_uuid()),
                        (b"{}", "tests.full", new_uuid()),
                    ]
                )
            ok = [new_uuid() for _ in range(3)]
            assert publisher.publish_many((b"{}", "journal.entry.deleted", i) for i in ok) == 3
            got = [m.properties["message_id"] for m in drain("milestones.events")]
            assert (
                set(ok) <= set(got) and len(got) == 4
            )  # the refused batch's good message was taken once
        finally:
            full(conn.default_channel).delete()
            publisher.close()


def _publish_raw(body, routing_key: str, content_type: str = "application/cloudevents+json"):
    with broker.connect() as conn:
        topology.declare(conn)
        Producer(conn, exchange=topology.EXCHANGE).publish(
            body,
            routing_key=routing_key,
            content_type=content_type,
            content_encoding="utf-8",
            delivery_mode=2,
        )


def _valid_event(type_="journal.entry.deleted") -> dict:
    import uuid

    return events.make_event(
        type_,
        source="/journal",
        subject=str(uuid.uuid4()),
        data={"entry_id": str(uuid.uuid4()), "couple_id": None, "partner_id": str(uuid.uuid4())},
    )


class TestConsumer:
    def test_duplicate_event_is_applied_once(self, backend):
        ev = _valid_event()
        for _ in range(3):
            _publish_raw(events.encode(ev), ev["type"])
        with ConsumerThread(backend.db_urls["journal"]) as consumer:
            wait_until(lambda: consumer.settled == 3, what="three deliveries")
            assert consumer.times_applied() == {ev["id"]: 1}

    def test_malformed_message_is_dead_lettered_and_the_next_is_processed(self, backend):
        _publish_raw(b"\x00 this is not json", "journal.entry.recorded")
        _publish_raw(
            json.dumps({"specversion": "1.0", "type": "journal.entry.recorded", "data": {}}),
            "journal.entry.recorded",
        )
        good = _valid_event()
        _publish_raw(events.encode(good), good["type"])
        with ConsumerThread(backend.db_urls["journal"]) as consumer:
            wait_until(lambda: consumer.settled == 3, what="three deliveries")
            assert consumer.times_applied() == {good["id"]: 1}
            # what /metrics says of the dead-letter queue (measured every 30 s as the consumer runs)
            assert consumer.consumer.measure_dead_letters() == 2
            assert (
                REGISTRY.get_sample_value(
                    "tandem_dead_letter_depth", {"queue": "milestones.events.dead"}
                )
                == 2
            )
        dead = drain("milestones.events.dead")
        assert len(dead) == 2
        assert {m.headers["x-tandem-reason"] for m in dead} == {"unparseable"}
        bodies = {m.body.encode() if isinstance(m.body, str) else m.body for m in dead}
        assert b"\x00 this is not json" in bodies  # kept as it came, whatever the order

    def test_handler_failing_every_time_is_dead_lettered_after_bounded_retries(self, backend):
        calls = []

        def always_fails(session, event):
            calls.append(event.id)
            raise ValueError("cannot apply")

        bad, good = _valid_event(), _valid_event("journal.partner.erased")
        good["data"] = {"partner_id": good["data"]["partner_id"], "couple_id": None}
        _publish_raw(events.encode(bad), bad["type"])
        _publish_raw(events.encode(good), good["type"])
        from tests.support import probe_handler

        handlers = {"journal.entry.deleted": always_fails, "journal.partner.erased": probe_handler}
        with ConsumerThread(
            backend.db_urls["journal"], handlers=handlers, max_attempts=3, backoff=0.01
        ) as consumer:
            wait_until(lambda: consumer.settled == 2, what="both deliveries")
            assert consumer.times_applied() == {good["id"]: 1}
        assert calls == [bad["id"]] * 3
        dead = drain("milestones.events.dead")
        assert [json.loads(m.body)["id"] for m in dead] == [bad["id"]]
        assert dead[0].headers["x-tandem-reason"] == "handler_failed"

    def test_events_waiting_together_are_applied_together_each_once_and_acked_after(self, backend):
        """On RabbitMQ the messages that arrived together are applied in one transaction, acked after its
        commit; the filesystem broker, which cannot give back what a killed consumer held, one by one."""
        from sqlalchemy import event as sa_event

        sent = [_valid_event() for _ in range(30)]
        for ev in sent:
            _publish_raw(events.encode(ev), ev["type"])
        consumer = ConsumerThread(backend.db_urls["journal"])
        commits = []
        sa_event.listen(consumer.engine, "commit", lambda conn: commits.append(consumer.settled))
        with consumer:
            wait_until(lambda: consumer.settled == 30, what="every event settled")
            assert consumer.times_applied() == {ev["id"]: 1 for ev in sent}
        assert [commits[0], len(drain("milestones.events"))] == [0, 0], "acked only after a commit"
        if backend.embedded:
            assert len(commits) == 30
        else:
            assert len(commits) <= 10, f"{len(commits)} transactions for 30 events waiting together"

    def test_handler_failing_twice_then_succeeding_applies_once(self, backend):
        from tests.support import probe_handler

        attempts = []

        def flaky(session, event):
            attempts.append(1)
            if len(attempts) <= 2:
                raise ValueError("transient trouble")
            probe_handler(session, event)

        ev = _valid_event()
        _publish_raw(events.encode(ev), ev["type"])
        with ConsumerThread(
            backend.db_urls["journal"], handlers={ev["type"]: flaky}, backoff=0.01
        ) as consumer:
            wait_until(lambda: consumer.settled == 1, what="the delivery")
            assert consumer.times_applied() == {ev["id"]: 1}
        assert len(attempts) == 3
        assert drain("milestones.events.dead") == []

    def test_dead_letters_can_be_listed_and_replayed_once_the_cause_is_fixed(self, backend):
        from shared import deadletters
        from tests.support import probe_handler

        ev = _valid_event()
        _publish_raw(events.encode(ev), ev["type"])

        def broken(session, event):
            raise ValueError("bug")

        with ConsumerThread(
            backend.db_urls["journal"], handlers={ev["type"]: broken}, max_attempts=1
        ) as c:
            wait_until(lambda: c.settled == 1, what="the delivery")
        listed = list(deadletters.peek("milestones.events"))
        assert [(i["event_id"], i["reason"]) for i in listed] == [(ev["id"], "handler_failed")]
        assert list(deadletters.peek("milestones.events")) == listed, "listing leaves them in place"
        assert deadletters.replay("milestones.events") == 1
        with ConsumerThread(backend.db_urls["journal"], handlers={ev["type"]: probe_handler}) as c:
            wait_until(lambda: c.settled == 1, what="the replayed delivery")
            assert c.times_applied() == {ev["id"]: 1}
        assert list(deadletters.peek("milestones.events")) == []

    def test_consumer_reconnects_after_losing_its_broker_connection(self, rabbit_backend):
        vhost = rabbit_backend.broker_url.rsplit("/", 1)[-1] or "/"
        first, second = _valid_event(), _valid_event()
        with ConsumerThread(rabbit_backend.db_urls["journal"]) as consumer:
            _publish_raw(events.encode(first), first["type"])
            wait_until(lambda: consumer.settled == 1, what="the first event")
            connected_before = consumer.connections
            out = subprocess.run(
                ["rabbitmqctl", "-q", "close_all_connections", "-p", vhost, "test: drop"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, out.stderr
            _publish_raw(events.encode(second), second["type"])
            wait_until(
                lambda: consumer.settled == 2, timeout=30, what="the event after the reconnect"
            )
            assert consumer.connections > connected_before, (
                "it lost its connection and connected again"
            )
            assert consumer.times_applied() == {first["id"]: 1, second["id"]: 1}


class TestPrivacyOnTheWire:
    NOTE = "I felt so alone last night - zebra-quartz-7"

    def test_a_note_never_appears_in_any_published_event(self, backend, journal):
        a, b, _ = make_couple(journal)
        kinds = [
            entry(note=self.NOTE),
            entry("daily_reflection", mood=6, note=self.NOTE),
            entry("conflict", intensity=4, note=self.NOTE, visibility="shared"),
        ]
        for body in kinds:
            assert journal.post("/v1/entries", headers=a["headers"], json=body).status_code == 201
        r = journal.patch(
            f"/v1/entries/{kinds[2]['id']}",
            headers=a["headers"],
            json={"note": self.NOTE + " (revised)", "repaired_at": "2026-11-20T09:00:00+01:00"},
        )
        assert r.status_code == 200, r.get_json()
        assert (
            journal.delete(f"/v1/entries/{kinds[1]['id']}", headers=a["headers"]).status_code == 204
        )
        assert journal.delete("/v1/accounts/me", headers=b["headers"]).status_code == 204

        with broker.connect() as conn:
            topology.declare(conn)  # the topology exists before publishing
            from kombu import Queue

            tap = Queue("test.tap", exchange=topology.EXCHANGE, routing_key="#", durable=False)
            tap(conn.default_channel).declare()
            relay = journal_app.make_relay()
            published = _relay_all(relay)
            got = []
            q = tap(conn.default_channel)
            wait_until(
                lambda: got.extend(iter(lambda: q.get(no_ack=True), None)) or len(got) == published,
                what="every published event on the tap",
            )
            q.delete()
            relay.publisher.close()
        types = [json.loads(m.body)["type"] for m in got]
        assert {
            "journal.entry.recorded",
            "journal.entry.revised",
            "journal.entry.deleted",
            "journal.partner.erased",
            "journal.couple.partnered",
        } <= set(types)
        for m in got:
            body = m.body if isinstance(m.body, str) else m.body.decode()
            assert "zebra-quartz" not in body
            assert '"note"' not in body


class TestRelayRunning:
    def test_relay_is_woken_by_a_commit_not_by_its_poll(self, backend, journal):
        import threading

        relay = journal_app.make_relay()
        relay.poll_interval = 60  # a poll would come far too late for this test
        thread = threading.Thread(target=relay.run, daemon=True)
        thread.start()
        try:
            wait_until(
                lambda: relay.relay_once() == 0, what="the relay to start"
            )  # nothing pending yet
            a = sign_up(journal)
            journal.post("/v1/entries", headers=a["headers"], json=entry())
            wait_until(
                lambda: (
                    all(r.published_at for r in _outbox_rows(backend)) and _outbox_rows(backend)
                ),
                timeout=10,
                what="the woken relay to publish",
            )
        finally:
            relay.stop()
            thread.join(timeout=10)
            relay.publisher.close()
        assert not thread.is_alive()
        assert len(drain("milestones.events")) == 2

    def test_several_relays_publish_each_row_once(self, backend, journal):
        import threading

        from shared.db import make_session_factory, unit_of_work
        from shared.outbox import emit

        sessions = make_session_factory(backend.engine("journal"))
        with unit_of_work(sessions) as s:
            for _ in range(300):
                emit(
                    s,
                    outbox,
                    "journal.entry.deleted",
                    source="/journal",
                    subject="c",
                    data={"entry_id": new_uuid(), "couple_id": None, "partner_id": new_uuid()},
                )
        relays = [journal_app.make_relay() for _ in range(3)]
        for r in relays:
            r.batch_size = 25
        threads = [threading.Thread(target=_relay_all, args=(r,)) for r in relays]
        try:
            for t in threads:
                t.start()
        finally:
            for t in threads:
                if t.ident is not None:
                    t.join(timeout=120)
            for r in relays:
                r.publisher.close()
        assert all(r.published_at is not None and r.attempts == 1 for r in _outbox_rows(backend))
        got = drain("milestones.events")
        ids = [json.loads(m.body)["id"] for m in got]
        assert len(ids) == 300 and len(set(ids)) == 300

    def test_a_binding_another_thread_declared_first_routes_the_next_publish(
        self, embedded_backend
    ):
        """The race behind a lost message: one thread of a process has put a
        binding in Kombu's in-process state but not yet in the broker folder's
        table when another thread declares the topology and publishes."""
        from shared import config

        first = broker.connect()
        topology.declare(first)
        for table in (config.var_dir() / "broker" / "control").glob("*.exchange"):
            table.unlink()  # the state says bound; the folder does not, yet
        second = broker.connect()
        try:
            publisher = broker.Publisher(second)
            publisher.publish(b"{}", "journal.entry.deleted", message_id=new_uuid())
            assert len(drain("milestones.events")) == 1
        finally:
            first.release()
            second.release()


def new_uuid() -> str:
    import uuid

    return str(uuid.uuid4())


class TestBrokerRestart:
    def test_consumer_and_relay_survive_a_broker_restart(self, rabbit_backend, rabbit_journal):
        """stop_app makes the broker unreachable for a while; both sides carry on by themselves."""
        import threading

        def ctl(*args):
            out = subprocess.run(
                ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120
            )
            assert out.returncode == 0, out.stderr

        journal = rabbit_journal
        a = sign_up(journal)
        relay = journal_app.make_relay()
        relay_thread = threading.Thread(target=relay.run, daemon=True)
        try:
            with ConsumerThread(rabbit_backend.db_urls["journal"]) as consumer:
                relay_thread.start()
                wait_until(lambda: consumer.settled == 1, what="the sign-up event")
                ctl("stop_app")
                try:
                    # The journal keeps answering while the broker is away: the outbox holds the events.
                    for _ in range(3):
                        assert (
                            journal.post(
                                "/v1/entries", headers=a["headers"], json=entry()
                            ).status_code
                            == 201
                        )
                finally:
                    ctl("start_app")
                    ctl("await_startup")
                wait_until(
                    lambda: consumer.settled == 4,
                    timeout=60,
                    what="the events recorded during the outage",
                )
                assert set(consumer.times_applied().values()) == {1}
                assert len(consumer.times_applied()) == 4
        finally:
            relay.stop()
            relay_thread.join(timeout=15)
            relay.publisher.close()
