"""Test support: waiting for a state, running a consumer, reading a queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kombu import Connection
from sqlalchemy import Column, Integer, MetaData, String, Table, select, update

from shared import broker, topology
from shared.consumer import EventConsumer, processed_events_table
from shared.db import make_engine, make_session_factory


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 15.0,
    what: str = "condition",
    every: float = 0.02,
):
    """Poll until predicate() is truthy, every `every` seconds; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


# A throwaway read model for testing the consumer: how often each event was applied.
probe_metadata = MetaData()
applied = Table(
    "test_applied",
    probe_metadata,
    Column("event_id", String(36), primary_key=True),
    Column("times", Integer, nullable=False),
)
probe_processed = processed_events_table(MetaData())


def probe_handler(session, event) -> None:
    row = session.execute(select(applied.c.times).where(applied.c.event_id == event.id)).scalar()
    if row is None:
        session.execute(applied.insert().values(event_id=event.id, times=1))
    else:
        session.execute(update(applied).where(applied.c.event_id == event.id).values(times=row + 1))


class ConsumerThread:
    """Runs an EventConsumer on `queue` in a thread, counting the messages it settled."""

    def __init__(self, db_url: str, queue: str = "milestones.events", handlers=None, **kwargs):
        self.engine = make_engine(db_url)
        probe_metadata.create_all(self.engine)
        self.sessions = make_session_factory(self.engine)
        self.conn = broker.connect()
        # The consumer's processed_events table is the journal's (same shape in every service).
        self.consumer = EventConsumer(
            self.conn,
            queue,
            handlers or _all_types(probe_handler),
            self.sessions,
            probe_processed,
            **kwargs,
        )
        self.connections = 0
        revived = self.consumer.on_connection_revived

        def counting_revived():
            self.connections += 1
            revived()

        self.consumer.on_connection_revived = counting_revived
        self.thread = threading.Thread(target=self.consumer.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.consumer.should_stop = True
        self.thread.join(timeout=15)
        self.conn.release()
        self.engine.dispose()

    @property
    def settled(self) -> int:
        """Messages the consumer is done with: acked (applied, duplicate or dead-lettered) or given back."""
        return self.consumer.settled

    def times_applied(self) -> dict[str, int]:
        with self.engine.connect() as c:
            return {r.event_id: r.times for r in c.execute(select(applied))}


def _all_types(handler):
    from shared.events import CATALOG

    return {t: handler for t in CATALOG}


def drain(queue_name: str, conn: Connection | None = None) -> list:
    """Take every message now in a queue of the topology (acked)."""
    own = conn is None
    conn = conn or broker.connect()
    try:
        queues = topology.declare(conn)
        q = queues[queue_name](conn.default_channel)
        out = []
        while (m := q.get(no_ack=True)) is not None:
            out.append(m)
        return out
    finally:
        if own:
            conn.release()


class Pipeline:
    """Every worker but the web: the journal's relay, the milestones consumer,
    evaluator and relay, the notify consumer and relay, each in a thread of this
    process, over the backend in the environment."""

    def __init__(self, settle: float = 0.0):
        from datetime import timedelta

        from services.journal import app as journal_app
        from services.milestones import app as milestones_app
        from services.notify import app as notify_app
        from shared.workers import Periodic

        self.relays = [
            journal_app.make_relay(),
            milestones_app.make_relay(),
            notify_app.make_relay(),
        ]
        self.consumer = milestones_app.make_consumer()
        self.notify_consumer = notify_app.make_consumer()
        self.deliverer = Periodic("delivery", notify_app.make_deliverer().tick)
        self.evaluator = milestones_app.make_evaluator()
        self.evaluator.settle = timedelta(seconds=settle)
        self.periodic = Periodic("evaluator", self.evaluator.tick)
        self.threads = [threading.Thread(target=r.run, daemon=True) for r in self.relays]
        self.threads += [
            threading.Thread(target=self.consumer.run, daemon=True),
            threading.Thread(target=self.notify_consumer.run, daemon=True),
            threading.Thread(target=self.deliverer.run, daemon=True),
            threading.Thread(target=self.periodic.run, daemon=True),
        ]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        for r in self.relays:
            r.stop()
        self.consumer.should_stop = True
        self.notify_consumer.should_stop = True
        self.periodic.stop()
        self.deliverer.stop()
        for t in self.threads:
            t.join(timeout=15)
        for r in self.relays:
            r.publisher.close()
        self.consumer.connection.release()
        self.notify_consumer.connection.release()


# --- milestones: shared by the milestones test modules ---


def at(day, hour: int = 9) -> str:
    """An RFC 3339 time on `day` at `hour`, at UTC+01:00."""
    from datetime import datetime, timedelta, timezone
    from datetime import time as dtime

    return datetime.combine(day, dtime(hour, 0), timezone(timedelta(hours=1))).isoformat()


def paris_today():
    """Today's date at UTC+01:00, the offset `at` writes."""
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone(timedelta(hours=1))).date()


def improving_history(today, days: int = 90) -> list[dict]:
    """Two anxious moments every day for the first month, none later; a reflection every day."""
    import uuid
    from datetime import timedelta

    start = today - timedelta(days=days)
    out = []
    for i in range(days):
        d = start + timedelta(days=i)
        out.append(
            {
                "id": str(uuid.uuid4()),
                "kind": "daily_reflection",
                "occurred_at": at(d, 21),
                "mood": 6,
            }
        )
        if i < 30:
            for h in (8, 15):
                out.append(
                    {
                        "id": str(uuid.uuid4()),
                        "kind": "anxious_episode",
                        "occurred_at": at(d, h),
                        "intensity": 6,
                    }
                )
    return out


def rituals(
    today, n: int, tag: str = "good_morning_text", visibility: str = "shared"
) -> list[dict]:
    """`n` rituals, one a day going back from yesterday (never in the future); shared with the partner
    unless said (only shared entries count toward the couple's milestones)."""
    import uuid
    from datetime import timedelta

    return [
        {
            "id": str(uuid.uuid4()),
            "kind": "ritual",
            "occurred_at": at(today - timedelta(days=i + 1), 8),
            "ritual": tag,
            "visibility": visibility,
        }
        for i in range(n)
    ]


def post_all(client, headers, bodies) -> None:
    for body in bodies:
        r = client.post("/v1/entries", headers=headers, json=body)
        assert r.status_code == 201, r.get_json()


def milestones_client():
    """A Flask test client of the milestones service on the backend in the environment."""
    from services.milestones.app import create_app

    app = create_app()
    app.testing = True
    return app.test_client()


def notify_client():
    """A Flask test client of the notify service on the backend in the environment."""
    from services.notify.app import create_app

    app = create_app()
    app.testing = True
    return app.test_client()


def service_clients(journal) -> dict:
    """A test client of each service, by name, the journal's being `journal`."""
    return {"journal": journal, "milestones": milestones_client(), "notify": notify_client()}


def types_seen(client, headers) -> dict[str, dict]:
    """The milestones the caller sees, keyed "type:level"."""
    r = client.get("/v1/milestones?limit=200", headers=headers)
    assert r.status_code == 200, r.get_json()
    return {f"{m['type']}:{m['level']}": m for m in r.get_json()["items"]}


def ids_seen(client, headers) -> set[str]:
    r = client.get("/v1/milestones?limit=200", headers=headers)
    assert r.status_code == 200, r.get_json()
    return {m["id"] for m in r.get_json()["items"]}


def publish_events(*evs: dict) -> None:
    """Publish CloudEvent dicts to the `progress` exchange, as any AMQP client could (confirmed)."""
    from shared import events as _events

    publisher = broker.Publisher(broker.connect())
    try:
        for ev in evs:
            publisher.publish(_events.encode(ev), ev["type"], ev["id"])
    finally:
        publisher.close()


def preference_event(partner_id: str, share: bool, time=None) -> dict:
    from shared import events as _events

    return _events.make_event(
        "notify.preferences.changed",
        source="/notify",
        subject=partner_id,
        time=time,
        data={"partner_id": partner_id, "share_milestones_with_partner": share},
    )


class Handled:
    """Counts, by event id, the messages a consumer has finished with (applied,
    duplicate or dead-lettered). Wrap the consumer before it starts running."""

    def __init__(self, consumer):
        import json
        from collections import Counter

        self.counts: Counter = Counter()
        original = (
            consumer.settle
        )  # after the commit (a message in hand may wait for others of its batch)

        def counting(message, requeue: bool = False):
            original(message, requeue)
            try:
                event_id = json.loads(message.body)["id"]
            except Exception:
                event_id = None
            self.counts[event_id] += 1

        consumer.settle = counting

    def wait(self, *event_ids: str, times: int = 1, timeout: float = 15.0) -> None:
        wait_until(
            lambda: all(self.counts[i] >= times for i in event_ids),
            timeout,
            f"{len(event_ids)} event(s) handled {times} time(s)",
        )


def own_milestone_event(partner_id: str, milestone_id: str | None = None) -> dict:
    """``milestones.milestone.achieved`` for a partner's own first ritual milestone, seen by them alone."""
    import uuid
    from datetime import UTC, datetime

    from shared import events as _events

    return _events.make_event(
        "milestones.milestone.achieved",
        source="/milestones",
        subject=partner_id,
        data={
            "id": milestone_id or str(uuid.uuid4()),
            "type": "rituals_kept",
            "level": 1,
            "couple_id": None,
            "partner_id": partner_id,
            "achieved_at": datetime.now(UTC),
            "headline": "You have kept 10 rituals together.",
            "evidence": {"rituals": 10},
            "audience": [partner_id],
        },
    )
