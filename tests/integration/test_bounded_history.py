"""Evaluation reads only the days the rules need: the detections must be
exactly those of the whole history, evidence included."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from bench.evaluation_growth import _entry, build, new_couple
from services.milestones import app as milestones_app
from services.milestones import evaluation, rules
from services.milestones.rules.registry import READS
from shared.db import make_session_factory, unit_of_work


def test_bounded_history_detects_exactly_what_the_whole_history_does(backend):
    sessions = make_session_factory(backend.engine("milestones"))
    handlers = milestones_app.handlers()
    a, b, couple = build(sessions, handlers, 730, random.Random(5))
    today = datetime.now(UTC).date()
    # In the last half year: rated communication rising for both; for Ana, activities of her own nearly every
    # day and gentler anxious moments, so her own rules hold too, each with its looks up to 21 days back.
    with unit_of_work(sessions) as s:
        for i in range(180):
            day = today - timedelta(days=180 - i)
            now = datetime.now(UTC)
            for pid in (a, b):
                handlers["journal.entry.recorded"](
                    s, _entry(pid, couple, "daily_reflection", day, {"communication": 5}, now)
                )
            if i % 7:
                handlers["journal.entry.recorded"](
                    s, _entry(a, couple, "independence_activity", day, {"activity": "walk"}, now)
                )
                for _ in range(3):
                    handlers["journal.entry.recorded"](
                        s, _entry(a, couple, "anxious_episode", day, {"intensity": 0}, now)
                    )
    compared = replayed = found = 0
    kinds: set[str] = set()
    with unit_of_work(sessions) as s:
        full_a, _ = evaluation.history(s, a)
        ours, theirs = (evaluation.history(s, pid, shared=True)[0] for pid in (a, b))
        for back in range(0, 730, 23):
            as_of = today - timedelta(days=back)
            bounded_a, _ = evaluation.history(s, a, as_of, as_of)
            (ours_now, prior_a), (theirs_now, prior_b) = (
                evaluation.history(s, pid, as_of, as_of, shared=True) for pid in (a, b)
            )
            assert len(bounded_a.days) < len(full_a.days) or back > 400
            whole = rules.detect_partner_milestones(full_a, as_of) + rules.detect_couple_milestones(
                ours, theirs, as_of
            )
            part = rules.detect_partner_milestones(
                bounded_a, as_of
            ) + rules.detect_couple_milestones(ours_now, theirs_now, as_of, prior_a + prior_b)
            assert part == whole, as_of
            compared += 1
            found += len(whole)
            kinds.update(d.type for d in whole)
        # a replay (late data): one read for a span of dates, each date detecting what the whole history does
        for back in range(0, 400, 61):
            last = today - timedelta(days=back)
            first = last - timedelta(days=30)
            span_a, _ = evaluation.history(s, a, first, last)
            (ours_span, prior_a), (theirs_span, prior_b) = (
                evaluation.history(s, pid, first, last, shared=True) for pid in (a, b)
            )
            for offset in range(0, 31, 5):
                as_of = first + timedelta(days=offset)
                whole = rules.detect_partner_milestones(
                    full_a, as_of
                ) + rules.detect_couple_milestones(ours, theirs, as_of)
                part = rules.detect_partner_milestones(
                    span_a, as_of
                ) + rules.detect_couple_milestones(ours_span, theirs_span, as_of, prior_a + prior_b)
                assert part == whole, (first, last, as_of)
                replayed += 1
                found += len(whole)
    assert (
        compared == 32 and replayed == 49 and found > 0
    )  # real detections seen, not only empty lists
    assert {rules.MORE_INDEPENDENCE, rules.CALMER_EPISODES} <= kinds, kinds


def test_a_replayed_span_reads_the_26_weeks_of_shared_days_a_couple_scans_looks_need(backend):
    """A couple who rate their communication every fifth day, higher for the last 170 days: a replayed span's
    every date reads, of their shared days, the 26 weeks its scan looks at (and the couple's first day), and
    detects what the whole history does, evidence included; their own days are read no further back than
    their own rules look."""
    sessions = make_session_factory(backend.engine("milestones"))
    handlers = milestones_app.handlers()
    a, b, couple = new_couple(sessions, handlers)
    today = datetime.now(UTC).date()
    with unit_of_work(sessions) as s:
        for i in range(0, 500, 5):
            day = today - timedelta(days=500 - i)
            for pid in (a, b):
                handlers["journal.entry.recorded"](
                    s,
                    _entry(
                        pid,
                        couple,
                        "daily_reflection",
                        day,
                        {"communication": 3 if i < 330 else 5},
                        datetime.now(UTC),
                    ),
                )
    found = 0
    with unit_of_work(sessions) as s:
        full_a, _ = evaluation.history(s, a, shared=True)
        full_b, _ = evaluation.history(s, b, shared=True)
        first, last = today - timedelta(days=120), today
        span_a, prior_a = evaluation.history(s, a, first, last, shared=True)
        span_b, prior_b = evaluation.history(s, b, first, last, shared=True)
        # the shared days of the span's 26 weeks back from its first date, and the first day; no older one
        assert sorted(d.day for d in span_a.days) == sorted(
            d.day
            for d in full_a.days
            if d.day >= first - timedelta(days=184) or d.day == full_a.days[0].day
        )
        # the partner's own rules read their head and their recent weeks, not the couple scans' 26
        own, _ = evaluation.history(s, a, first, last)
        mine = READS[rules.PARTNER]
        head_end = own.days[0].day + timedelta(days=mine.head)
        assert (
            min(d.day for d in own.days if d.day > head_end)
            >= first - timedelta(days=mine.recent)
            > first - timedelta(days=100)
        )
        for offset in range(0, 121, 8):
            as_of = first + timedelta(days=offset)
            whole = rules.detect_couple_milestones(full_a, full_b, as_of)
            assert (
                rules.detect_couple_milestones(span_a, span_b, as_of, prior_a + prior_b) == whole
            ), as_of
            found += any(d.type == rules.BETTER_COMMUNICATION for d in whole)
    assert found >= 10  # the looks compared held, with their periods in the evidence
