"""The statements on a request's, an event's or an evaluation's path read
their own partner's, couple's or batch's rows, not every couple's: PostgreSQL's
plans for them, with tables filled as a service's would be after a while
(every row made in a transaction that is rolled back).

Each of these was once a scan of a whole table, found by reading the plans at
25,000 couples: the relay's claim behind a backlog, the couple's ritual count,
the levels an owner holds, the milestones list, the evaluator's due partners."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import event, select, text

from services.milestones import evaluation, use_cases
from services.milestones.tables import milestones
from shared.db import make_engine, make_session_factory, utcnow
from shared.outbox import Relay


@contextmanager
def _filled(backend, service: str, *fill: str):
    """A connection to the service's database in a transaction that is rolled back, the tables
    filled by ``fill`` (SQL) and analysed."""
    engine = make_engine(backend.db_urls[service])
    try:
        with engine.connect() as conn:
            with conn.begin() as tx:
                for statement in fill:
                    conn.execute(text(statement))
                conn.execute(text("ANALYZE"))
                yield conn
                tx.rollback()
    finally:
        engine.dispose()


def _plan(conn, statement, params: dict) -> str:
    """EXPLAIN of a statement as the service sends it (its own bound values)."""

    def explain(_conn, _cursor, sql, parameters, _context, _many):
        return "EXPLAIN " + sql, parameters

    event.listen(conn, "before_cursor_execute", explain, retval=True)
    try:
        return "\n".join(row[0] for row in conn.execute(statement, params).all())
    finally:
        event.remove(conn, "before_cursor_execute", explain)


def _reads_alone(plan: str, table: str, index: str) -> None:
    assert f"Seq Scan on {table} " not in plan and f"Seq Scan on {table}\n" not in plan + "\n", plan
    assert index in plan, plan


# 2,000 couples (A0/B0 .. A1999/B1999, couple C0 ..); the first 200 of them with 300 days each.
PARTNERS = """INSERT INTO partners (id, couple_id, timezone, share_milestones_with_partner, erased, next_scheduled_at)
    SELECT p || i, 'C' || i, 'Europe/Paris', p = 'B', false, now() + interval '1 hour' * (i % 24)
    FROM generate_series(0, 1999) i, (VALUES ('A'), ('B')) v(p)"""
TOMBSTONES = """INSERT INTO partners (id, share_milestones_with_partner, erased)
    SELECT 'E' || i, false, true FROM generate_series(0, 2999) i"""
DAYS = """INSERT INTO days (partner_id, local_date, entries, episodes, detail, ritual_count, ratings, activities,
                            conflicts, conflicts_repaired_24h, weekly_check_ins)
    SELECT p || i, current_date - d, 1, 0,
           CASE WHEN d % 7 = 0 THEN '{"intensities": [], "communication": [], "connection": [], "understanding": [],
                                      "rituals": ["good_morning_text"]}'::jsonb
                ELSE '{"intensities": [], "communication": [], "connection": [], "understanding": [],
                       "rituals": []}'::jsonb END,
           CASE WHEN d % 7 = 0 THEN 1 ELSE 0 END, 0, 0, 0, 0, 0
    FROM generate_series(0, 199) i, (VALUES ('A'), ('B')) v(p), generate_series(0, 299) d"""
# The same days shared (the couple's count reads these).
SHARED_DAYS = DAYS.replace("INSERT INTO days", "INSERT INTO shared_days")
MILESTONES = """INSERT INTO milestones (id, type, level, couple_id, partner_id, owner_key, achieved_at, as_of,
                                        headline, evidence)
    SELECT 'M' || i || '-' || k, t, 1, 'C' || i, CASE WHEN t = 'rituals_kept' THEN NULL ELSE 'A' || i END,
           CASE WHEN t = 'rituals_kept' THEN 'C' || i ELSE 'A' || i END, now(), current_date, 'h', '{}'::jsonb
    FROM generate_series(0, 1999) i,
         (VALUES (1, 'rituals_kept'), (2, 'fewer_anxious_episodes'), (3, 'calmer_episodes'),
                 (4, 'more_independence'), (5, 'better_communication')) v(k, t)"""


def test_the_relays_claim_reads_the_rows_still_to_publish_behind_a_backlog(rabbit_backend):
    """Behind a backlog (a broker away for a few minutes), a claim walked every row kept from the first."""
    published = """INSERT INTO outbox (event_id, routing_key, body, created_at, attempts, published_at)
        SELECT 'P' || i, 'journal.entry.recorded', '{}', now(), 1, now() FROM generate_series(1, 60000) i"""
    waiting = """INSERT INTO outbox (event_id, routing_key, body, created_at, attempts)
        SELECT 'W' || i, 'journal.entry.recorded', '{}', now(), 0 FROM generate_series(1, 20000) i"""
    from services.journal.tables import outbox

    claim = Relay._claim.func(SimpleNamespace(table=outbox))
    with _filled(rabbit_backend, "journal", published, waiting) as conn:
        plan = _plan(conn, claim, {"now": utcnow(), "until": utcnow(), "batch": 200})
    _reads_alone(plan, "outbox", "ix_outbox_unpublished")


def test_a_couples_ritual_count_and_levels_read_their_own_rows(rabbit_backend):
    with _filled(rabbit_backend, "milestones", PARTNERS, DAYS, SHARED_DAYS, MILESTONES) as conn:
        plan = _plan(
            conn, evaluation._COUNTS_STATE, {"couple": "C7", "pid": "A7", "as_of": date.today()}
        )
        _reads_alone(plan, "shared_days", "ix_shared_days_rituals")
        _reads_alone(plan, "milestones", "ix_milestones_owner_key")
        # the other partner by the couple's index alone: not beside a bitmap of every live partner (the partial
        # ix_partners_scheduled matches `erased IS FALSE`), as the planner chose on a database never analysed
        _reads_alone(plan, "partners", "ix_partners_couple_id")
        assert "ix_partners_scheduled" not in plan, plan
        plan = _plan(conn, evaluation._ACHIEVED_BY, {"pid": "A7"})
        _reads_alone(plan, "milestones", "ix_milestones_owner_key")


def test_an_evaluations_histories_read_their_partners_days_alone(rabbit_backend):
    """A couple's two histories (one statement for both partners' heads and recent days, one for their
    older rituals, one for the couple scans' ratings) and a partner's own (the episodes since the first):
    each from an index of the days, one partner's or two, whatever the other partners hold."""
    recent = {"recent_start": date.today() - timedelta(days=35), "last": date.today()}
    with _filled(rabbit_backend, "milestones", PARTNERS, DAYS, SHARED_DAYS) as conn:
        for reads, table, pids in (
            (evaluation._SHARED, "shared_days", {"pid": "A7", "other": "B7"}),
            (evaluation._ALL, "days", {"pid": "A7", "other": None}),
        ):
            args = {**pids, **recent, "ratings_start": date.today() - timedelta(days=184)}
            for statement, index in (
                (reads.head_and_recent, f"pk_{table}"),
                (reads.older_rituals, f"ix_{table}_rituals"),
                (reads.ratings_before, f"pk_{table}"),
                (reads.episodes_before, f"pk_{table}"),
            ):
                _reads_alone(_plan(conn, statement, args), table, index)


def test_the_milestones_list_reads_the_callers_owners_alone(rabbit_backend):
    with _filled(rabbit_backend, "milestones", PARTNERS, MILESTONES) as conn:
        session = make_session_factory(conn)()
        stmt = (
            select(milestones)
            .where(use_cases.visible_milestones(session, "A7"))
            .order_by(milestones.c.achieved_at.desc(), milestones.c.id.desc())
            .limit(51)
        )
        plan = _plan(conn, stmt, {})
    _reads_alone(plan, "milestones", "ix_milestones_owner_key")


@pytest.mark.parametrize("due", ["settled", "scheduled"])
def test_the_evaluators_statements_walk_no_partner_they_do_not_want(rabbit_backend, due):
    """Hundreds of partners due at the daily run (or settled) among thousands, and erased partners'
    tombstones: each statement that finds the due partners reads what it wants from its index (an OR of
    settled and scheduled walked the dirty index past every partner). Run, and measured, in the
    rolled-back transaction."""
    dirty = (
        "UPDATE partners SET dirty_since = now() - interval '1 hour' WHERE id LIKE 'A1%'"
        if due == "settled"
        else "UPDATE partners SET next_scheduled_at = now() - interval '1 minute' WHERE id LIKE 'A1%'"
    )
    with _filled(rabbit_backend, "milestones", PARTNERS, TOMBSTONES, dirty) as conn:
        sent = []

        def record(_conn, _cursor, sql, parameters, _context, _many):
            sent.append((sql, parameters))

        event.listen(conn, "before_cursor_execute", record)
        try:
            found = evaluation.due_partners(
                make_session_factory(conn)(), utcnow(), timedelta(seconds=3), limit=1
            )
        finally:
            event.remove(conn, "before_cursor_execute", record)
        plans = [
            "\n".join(
                r[0] for r in conn.exec_driver_sql("EXPLAIN ANALYZE " + sql, parameters).all()
            )
            for sql, parameters in sent
            if sql.lstrip().upper().startswith("SELECT")
        ]
    assert found and found[0].startswith("A1")
    assert len(plans) == (1 if due == "settled" else 2)  # settled, then (none settled) scheduled
    for plan in plans:
        assert "Seq Scan on partners" not in plan, plan
        walked_past = [int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", plan)]
        assert max(walked_past, default=0) < 50, plan
