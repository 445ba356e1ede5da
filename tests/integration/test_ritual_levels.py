"""Rituals kept: every level reached at its count, however many ritual days the
couple has. The consumer counts a couple's rituals up to the top threshold
(100) and no further, from the ritual days alone: the levels must come out as
from a count of every ritual."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from bench.evaluation_growth import _entry, new_couple
from services.milestones import app as milestones_app
from services.milestones import evaluation, rules
from services.milestones.tables import milestones
from shared.db import make_session_factory, unit_of_work


def _levels(sessions, couple: str) -> dict[int, int]:
    """Each rituals-kept level the couple holds -> the count its evidence gives."""
    with unit_of_work(sessions) as s:
        rows = s.execute(
            select(milestones.c.level, milestones.c.evidence).where(
                milestones.c.owner_key == couple, milestones.c.type == rules.RITUALS_KEPT
            )
        ).all()
    return {level: evidence["rituals"] for level, evidence in rows}


def test_each_level_is_reached_at_its_own_count_past_a_hundred_ritual_days(backend):
    sessions = make_session_factory(backend.engine("milestones"))
    handlers = milestones_app.handlers()
    a, b, couple = new_couple(sessions, handlers, "UTC")
    today = datetime.now(UTC).date()
    for i in range(130):  # a ritual a day, the partners in turn: 130 ritual days
        with unit_of_work(sessions) as s:
            handlers["journal.entry.recorded"](
                s,
                _entry(
                    a if i % 2 else b,
                    couple,
                    "ritual",
                    today - timedelta(days=130 - i),
                    {"ritual": "hug"},
                    datetime.now(UTC),
                ),
            )
    assert _levels(sessions, couple) == {level: n for level, n in rules.RITUAL_LEVELS}


def test_levels_not_held_are_found_however_many_ritual_days_there_are(backend):
    """150 ritual days and no level held (as after late data synced at once): the count, read up to 100
    ritual days, still tells that every level is due, and the levels are recorded from all 150."""
    sessions = make_session_factory(backend.engine("milestones"))
    handlers = milestones_app.handlers()
    a, b, couple = new_couple(sessions, handlers, "UTC")
    today = datetime.now(UTC).date()
    with unit_of_work(sessions) as s:
        for i in range(150):
            handlers["journal.entry.recorded"](
                s,
                _entry(
                    a,
                    couple,
                    "ritual",
                    today - timedelta(days=150 - i),
                    {"ritual": "hug"},
                    datetime.now(UTC),
                ),
            )
        s.execute(delete(milestones).where(milestones.c.owner_key == couple))
    with unit_of_work(sessions) as s:
        found = evaluation.evaluate_counts(s, b, today)
    assert sorted(row["level"] for row in found) == [1, 2, 3, 4]
    assert _levels(sessions, couple) == {1: 150, 2: 150, 3: 150, 4: 150}


def test_a_settled_evaluation_runs_no_rule_whose_every_level_is_held(backend, monkeypatch):
    """Every rituals-kept level held: the settled evaluation does not count the rituals again, and finds the
    rules with a level left as before (the check-in rhythm, not held, is still found)."""
    sessions = make_session_factory(backend.engine("milestones"))
    handlers = milestones_app.handlers()
    a, b, couple = new_couple(sessions, handlers, "UTC")
    today = datetime.now(UTC).date()
    with unit_of_work(sessions) as s:
        for i in range(100):  # the top level's count, a weekly check-in among them
            handlers["journal.entry.recorded"](
                s,
                _entry(
                    a,
                    couple,
                    "ritual",
                    today - timedelta(days=100 - i),
                    {"ritual": "weekly_check_in"},
                    datetime.now(UTC),
                ),
            )
        s.execute(
            delete(milestones).where(
                milestones.c.owner_key == couple, milestones.c.type == rules.CHECK_IN_RHYTHM
            )
        )
    assert _levels(sessions, couple) == {level: n for level, n in rules.RITUAL_LEVELS}

    def counted(*args, **kwargs):
        raise AssertionError("rituals counted again with every level held")

    monkeypatch.setattr(rules.rituals_kept, "rituals_kept", counted)
    with unit_of_work(sessions) as s:
        found = evaluation.evaluate_partner(s, a, dates=[today])
    assert [(row["type"], row["level"]) for row in found] == [(rules.CHECK_IN_RHYTHM, 1)]
