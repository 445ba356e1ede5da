"""The evaluator: coalesced after new data, and daily without any."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta, timezone

from sqlalchemy import select, update

from services.milestones import app as milestones_app
from services.milestones import evaluation
from services.milestones.tables import milestones, partners
from shared import events
from shared.db import make_session_factory, unit_of_work, utcnow

PARIS = timezone(timedelta(hours=1))


def _apply(s, type_, data):
    ev = events.parse(
        events.make_event(type_, source="/journal", subject=str(data["partner_id"]), data=data)
    )
    milestones_app.handlers()[type_](s, ev)


def _improving_partner(sessions, pid: str, days: int = 90) -> None:
    """~150 events through the consumer's handlers (in one transaction, for speed)."""
    with unit_of_work(sessions) as s:
        _events_of_improving_partner(s, pid, days)


def _events_of_improving_partner(s, pid: str, days: int) -> None:
    _apply(
        s,
        "journal.partner.registered",
        {
            "partner_id": pid,
            "email": "p@example.com",
            "display_name": "P",
            "timezone": "Europe/Paris",
        },
    )
    today = datetime.now(PARIS).date()
    for i in range(days):
        day = today - timedelta(days=days - i)
        kinds = [("daily_reflection", {"mood": 6})]
        if i < 30:
            kinds += [("anxious_episode", {"intensity": 6})] * 2
        for kind, m in kinds:
            _apply(
                s,
                "journal.entry.recorded",
                {
                    "entry_id": str(uuid.uuid4()),
                    "couple_id": None,
                    "partner_id": pid,
                    "kind": kind,
                    "occurred_at": datetime.combine(day, time(9), PARIS),
                    "local_date": day,
                    "visibility": "private",
                    **m,
                },
            )


def test_many_events_make_one_evaluation(backend, monkeypatch):
    sessions = make_session_factory(backend.engine("milestones"))
    pid = str(uuid.uuid4())
    _improving_partner(sessions, pid)
    calls = []
    real = evaluation.evaluate_partner
    monkeypatch.setattr(
        evaluation, "evaluate_partner", lambda s, p, *a, **k: calls.append(p) or real(s, p, *a, **k)
    )
    ev = milestones_app.Evaluator(sessions, settle=timedelta(0))
    ev.tick()
    assert calls == [pid]  # ~150 events, one evaluation
    ev.tick()
    assert calls == [pid], "nothing new: nothing to evaluate"
    with unit_of_work(sessions) as s:
        found = (
            s.execute(select(milestones.c.type).where(milestones.c.partner_id == pid))
            .scalars()
            .all()
        )
    assert "fewer_anxious_episodes" in found


def test_a_partner_is_not_evaluated_before_their_events_settle(backend):
    sessions = make_session_factory(backend.engine("milestones"))
    pid = str(uuid.uuid4())
    _improving_partner(sessions, pid)
    with unit_of_work(sessions) as s:
        assert evaluation.due_partners(s, utcnow(), timedelta(minutes=5)) == []
    with unit_of_work(sessions) as s:
        assert evaluation.due_partners(
            s, utcnow() + timedelta(minutes=6), timedelta(minutes=5)
        ) == [pid]


def test_the_daily_run_evaluates_a_partner_with_no_new_events(backend):
    sessions = make_session_factory(backend.engine("milestones"))
    pid = str(uuid.uuid4())
    _improving_partner(sessions, pid)
    with unit_of_work(sessions) as s:  # evaluated already, nothing dirty, and their 04:00 has come
        s.execute(
            update(partners)
            .where(partners.c.id == pid)
            .values(
                dirty_since=None,
                replay_from=None,
                evaluated_through=datetime.now(PARIS).date() - timedelta(days=40),
                next_scheduled_at=utcnow() - timedelta(minutes=1),
            )
        )
    milestones_app.Evaluator(sessions, settle=timedelta(hours=1)).tick()
    with unit_of_work(sessions) as s:
        row = s.execute(select(partners).where(partners.c.id == pid)).one()
        found = (
            s.execute(select(milestones.c.type).where(milestones.c.partner_id == pid))
            .scalars()
            .all()
        )
        looks = (
            s.execute(select(milestones.c.as_of).where(milestones.c.partner_id == pid))
            .scalars()
            .all()
        )
    assert "fewer_anxious_episodes" in found
    assert max(looks) < evaluation.local_today("Europe/Paris", utcnow()), (
        "no look at the day just begun"
    )
    # time passing looks through yesterday, a complete day, never at the day just begun
    assert row.next_scheduled_at > utcnow() and row.evaluated_through == evaluation.local_today(
        "Europe/Paris", utcnow()
    ) - timedelta(days=1)


def _new_partner(engine) -> str:
    pid = str(uuid.uuid4())
    with engine.begin() as c:
        c.execute(
            partners.insert().values(
                id=pid, timezone="Europe/Paris", share_milestones_with_partner=False, erased=False
            )
        )
    return pid


def _wait_for_a_lock_wait(engine, alive) -> None:
    """Until a session of this database waits on a lock (PostgreSQL), while ``alive()`` holds."""
    import time as time_

    from sqlalchemy import text

    deadline = time_.monotonic() + 30
    with engine.connect() as watcher:
        # Each look in a transaction of its own: PostgreSQL shows a transaction one snapshot of the
        # sessions' states, so a wait that began after the first look would never be seen.
        while not watcher.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                "current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar():
            watcher.rollback()
            assert time_.monotonic() < deadline and alive(), "nothing ever waited on a lock"


def test_a_partner_erased_while_the_evaluator_schedules_them_stays_a_bare_tombstone(rabbit_backend):
    """The evaluator reads the partners never scheduled, then gives each a daily
    run; an erasure that comes in between must win (found by the erasure test in
    CI: the tombstone kept a next run). The rows are locked as they are read, so
    the erasure waits for the scheduling, then clears the run. PostgreSQL:
    SQLite's writers are serialized by the file, so the two cannot interleave there."""
    import threading

    from sqlalchemy import event

    engine, other = rabbit_backend.engine("milestones"), rabbit_backend.engine("milestones")
    pid = _new_partner(engine)
    erasure: list[threading.Thread] = []

    def erase():
        with other.begin() as c2:  # as the projection erases (projection.py)
            c2.execute(
                update(partners)
                .where(partners.c.id == pid)
                .values(erased=True, timezone=None, next_scheduled_at=None)
            )

    @event.listens_for(engine, "before_cursor_execute")
    def _erase_between_the_read_and_the_write(
        conn, cursor, statement, params, context, executemany
    ):
        if statement.startswith("UPDATE partners") and not erasure:
            erasure.append(threading.Thread(target=erase))
            erasure[0].start()
            _wait_for_a_lock_wait(
                other, erasure[0].is_alive
            )  # it waits on the row the scheduling read

    try:
        with unit_of_work(make_session_factory(engine)) as s:
            evaluation.schedule_new_partners(s, utcnow())
    finally:  # the scheduling's transaction is over: the erasure, waiting on it, ends
        for thread in erasure:
            thread.join(timeout=30)
    assert len(erasure) == 1
    assert not erasure[0].is_alive()
    with engine.connect() as c:
        row = c.execute(select(partners).where(partners.c.id == pid)).one()
    assert (row.erased, row.timezone, row.next_scheduled_at) == (True, None, None)
    engine.dispose()
    other.dispose()


def test_the_evaluator_schedules_around_a_partner_a_consumer_holds_and_takes_them_next_time(
    rabbit_backend,
):
    """A partner whose row a consumer's transaction holds (its entry being applied) is not
    waited for: the others get their first run now, that one on the next tick. PostgreSQL
    (row locks; SQLite's one writer at a time never meets this)."""
    from sqlalchemy import text

    engine = rabbit_backend.engine("milestones")
    held, free = _new_partner(engine), _new_partner(engine)
    sessions = make_session_factory(engine)
    consumer = engine.connect()
    try:
        consumer_tx = consumer.begin()
        consumer.execute(update(partners).where(partners.c.id == held).values(dirty_since=utcnow()))
        with unit_of_work(sessions) as s:
            s.execute(text("SET LOCAL lock_timeout = '3s'"))  # a wait would fail here, not hang
            evaluation.schedule_new_partners(s, utcnow())
        with engine.connect() as c:
            runs = dict(
                c.execute(
                    select(partners.c.id, partners.c.next_scheduled_at).where(
                        partners.c.id.in_([held, free])
                    )
                ).all()
            )
        assert runs[held] is None and runs[free] is not None
        consumer_tx.commit()
    finally:
        consumer.close()  # never left open: the next test's TRUNCATE would wait on its row
    now = utcnow()
    with unit_of_work(sessions) as s:
        evaluation.schedule_new_partners(s, now)
    with engine.connect() as c:
        run = c.execute(select(partners.c.next_scheduled_at).where(partners.c.id == held)).scalar()
    assert run == evaluation.next_daily_run("Europe/Paris", now)
    engine.dispose()


def test_a_level_two_evaluators_store_at_once_is_stored_and_announced_once(backend):
    """The other partner's evaluator may store the same couple level in the same moment: the later
    insert waits for the earlier transaction, then stores nothing and announces nothing."""
    import threading

    from services.milestones import rules
    from services.milestones.tables import outbox

    engine = backend.engine("milestones")
    sessions = make_session_factory(engine)
    pid = str(uuid.uuid4())
    with unit_of_work(sessions) as s:
        _apply(
            s,
            "journal.partner.registered",
            {
                "partner_id": pid,
                "email": "p@example.com",
                "display_name": "P",
                "timezone": "Europe/Paris",
            },
        )
    found = rules.Detection(
        rules.CALMER_EPISODES, 1, rules.PARTNER, {"p_value": 0.001}, "Anxious moments feel gentler."
    )
    today = datetime.now(PARIS).date()
    later: list = []

    def second_evaluator():
        with unit_of_work(sessions) as s:
            later.append(evaluation._achieve(s, owner, None, found, today, utcnow()))

    racer = threading.Thread(target=second_evaluator)
    first = sessions()
    try:
        first.begin()
        owner = first.execute(select(partners).where(partners.c.id == pid)).one()
        assert (
            evaluation._achieve(first, owner, None, found, today, utcnow()) is not None
        )  # not committed yet
        racer.start()
        if (
            engine.dialect.name == "postgresql"
        ):  # its insert waits on the first transaction's row (SQLite: its lock)
            _wait_for_a_lock_wait(engine, racer.is_alive)
        first.commit()
    finally:
        first.close()  # never left open: the racer and every later test would wait on it
        if racer.ident is not None:
            racer.join(timeout=30)
    assert later == [None]
    with unit_of_work(sessions) as s:
        assert (
            len(s.execute(select(milestones.c.id).where(milestones.c.owner_key == pid)).all()) == 1
        )
        assert len([b for (b,) in s.execute(select(outbox.c.body)) if pid in b]) == 1


def test_one_look_reaching_three_levels_makes_one_celebration_at_the_highest(backend):
    """Anxious moments fell from two a day to none: one look reaches levels 1, 2 and 3 at once. All three
    are stored (each once, ever), but one event announces them, at level 3, with the picture of the change;
    notify makes one notification of it, not three saying the same sentence."""
    import json

    from services.milestones.tables import outbox
    from services.notify import handlers as notify_handlers

    sessions = make_session_factory(backend.engine("milestones"))
    pid = str(uuid.uuid4())
    _improving_partner(sessions, pid)
    today = datetime.now(PARIS).date()
    with unit_of_work(sessions) as s:
        evaluation.evaluate_partner(s, pid, dates=[today])  # one look
    with unit_of_work(sessions) as s:
        stored = sorted(
            s.execute(
                select(milestones.c.level).where(
                    milestones.c.partner_id == pid, milestones.c.type == "fewer_anxious_episodes"
                )
            ).scalars()
        )
        bodies = [
            json.loads(b)
            for b in s.execute(
                select(outbox.c.body).where(outbox.c.routing_key == "milestones.milestone.achieved")
            ).scalars()
        ]
    assert stored == [1, 2, 3]
    mine = [b for b in bodies if b["data"]["partner_id"] == pid]
    assert [b["data"]["level"] for b in mine] == [3]
    shown = mine[0]["data"]["picture"]
    assert shown["unit"] == "anxious moments a week" and shown["better"] == "lower"
    before, after = shown["periods"]
    assert (
        before["value"] >= 10
        and after["value"] < before["value"] / 10
        and before["end"] < after["start"]
    )

    notify = make_session_factory(backend.engine("notify"))
    from services.notify.tables import notifications

    with unit_of_work(notify) as s:
        _apply_notify(
            s,
            "journal.partner.registered",
            {
                "partner_id": pid,
                "email": "p@example.com",
                "display_name": "P",
                "timezone": "Europe/Paris",
            },
        )
        for body in mine:
            notify_handlers.milestone_achieved(s, events.parse(body))
    with unit_of_work(notify) as s:
        sent = s.execute(select(notifications.c.id).where(notifications.c.partner_id == pid)).all()
    assert len(sent) == 1


def _apply_notify(s, type_, data):
    from services.notify import handlers as notify_handlers

    ev = events.parse(
        events.make_event(type_, source="/journal", subject=str(data["partner_id"]), data=data)
    )
    notify_handlers.HANDLERS[type_](s, ev)


def test_a_couple_whose_shared_talks_rose_for_six_weeks_is_celebrated_by_the_scan_their_private_ones_aside(
    backend,
):
    """Twelve weeks of shared reflections, rated 2-3 for six and 4-5 for six: the daily evaluation celebrates
    better_communication with the change-point scan's evidence, in the couple's shared numbers. Ana's private
    reflections, rated 1 all along the later weeks, count for nothing: had they counted, her own mean would
    have fallen and nothing would be celebrated."""
    from bench.evaluation_growth import _entry, new_couple

    sessions = make_session_factory(backend.engine("milestones"))
    handlers = milestones_app.handlers()
    ana, ben, couple = new_couple(sessions, handlers)
    today = datetime.now(PARIS).date()
    with unit_of_work(sessions) as s:
        for i in range(84):
            day, now = today - timedelta(days=84 - i), datetime.now(UTC)
            rating = (2 if i % 2 else 3) if i < 42 else (4 if i % 2 else 5)
            for pid in (ana, ben):
                handlers["journal.entry.recorded"](
                    s, _entry(pid, couple, "daily_reflection", day, {"communication": rating}, now)
                )
            if i >= 42:
                handlers["journal.entry.recorded"](
                    s,
                    _entry(
                        ana,
                        couple,
                        "daily_reflection",
                        day,
                        {"communication": 1},
                        now,
                        visibility="private",
                    ),
                )
    with unit_of_work(sessions) as s:
        evaluation.evaluate_partner(s, ana, dates=[today - timedelta(days=1)])
    with unit_of_work(sessions) as s:
        found = s.execute(
            select(milestones).where(
                milestones.c.type == "better_communication", milestones.c.couple_id == couple
            )
        ).all()
    assert len(found) == 1
    evidence = found[0].evidence
    assert evidence["test"].startswith(
        "change-point scan of the couple's weekly mean communication ratings"
    )
    assert (
        evidence["before"]["mean"] == 2.5 and evidence["after"]["mean"] == 4.5
    )  # the shared ratings alone
