"""A couple's histories whose older days are known by their ratings alone (what an evaluation reads for the
couple scans) give the couple's rules exactly what the same days given whole give."""

from __future__ import annotations

import random
from datetime import date, timedelta

import numpy as np
import pytest

from services.milestones.rules import DayAggregate, History, detect_couple_milestones
from services.milestones.rules.aggregates import RatedDaysHistory

START = date(2024, 3, 1)


def _partner(rng: random.Random, days: int, rise_at: int) -> list[DayAggregate]:
    """Shared days with gaps: talks rated (twice on some days), check-ins, rituals, days with none of them;
    for some couples, ratings a point or two higher from ``rise_at``."""
    out = []
    for i in range(days):
        if rng.random() < 0.3:
            continue
        up = 1 if i >= rise_at else 0
        rate = lambda: min(5, rng.randint(2, 3) + up)  # noqa: E731
        talks = tuple(rate() for _ in range(rng.choice([0, 1, 1, 1, 2])))
        check_in = rng.random() < 0.2
        out.append(
            DayAggregate(
                START + timedelta(days=i),
                communication=talks,
                connection=(rate(),) if check_in else (),
                understanding=(rate(),) if check_in else (),
                weekly_check_ins=int(check_in),
                rituals=("good_morning_text",) * (rng.random() < 0.1),
            )
        )
    return out


def _split(rng: random.Random, days: list[DayAggregate], last: date):
    """The days the check-in rhythm reads whole (5 weeks back from the looks, 0-39 days before ``last``), and
    the first day; the other days' ratings shuffled (their rituals counted apart, as the evaluation does)."""
    recent = last - timedelta(days=rng.choice([75, 100, 150]))
    whole = [d for d in days if d.day >= recent or d is days[0]]
    rated = [
        (d.day.toordinal(), d.communication, d.connection, d.understanding)
        for d in days
        if d.day < recent and d is not days[0]
    ]
    rng.shuffle(rated)
    prior = sum(len(d.rituals) for d in days if d.day < recent and d is not days[0])
    return RatedDaysHistory(whole, rated), prior


@pytest.mark.parametrize("seed", range(12))
def test_rated_days_give_the_couple_rules_exactly_what_whole_days_give(seed):
    rng = random.Random(seed)
    length = rng.choice([60, 200, 400])
    rise_at = rng.choice([length // 2, length + 1])
    a, b = (_partner(rng, length, rise_at) for _ in range(2))
    last = START + timedelta(days=length - 1)
    (pa, prior_a), (pb, prior_b) = _split(rng, a, last), _split(rng, b, last)
    plain_a, plain_b = History(tuple(a)), History(tuple(b))
    assert [d.day for d in pa.days] == [d.day for d in plain_a.days]
    for name in ("communication", "connection", "understanding"):
        assert [getattr(d, name) for d in pa.days] == [getattr(d, name) for d in plain_a.days]
    for days_back in (0, 40, 120):
        lo = last - timedelta(days=days_back + 30)
        for names, mean in ((("communication",), True), (("connection", "understanding"), False)):
            got, ref = pa.ratings(lo, last, names, mean), plain_a.ratings(lo, last, names, mean)
            order, ref_order = np.lexsort(got[::-1]), np.lexsort(ref[::-1])
            assert np.array_equal(got[0][order], ref[0][ref_order])
            assert np.array_equal(got[1][order], ref[1][ref_order])
    prior = {"good_morning_text": prior_a + prior_b}
    for back in range(0, 40, 3):
        as_of = last - timedelta(days=back)
        assert detect_couple_milestones(pa, pb, as_of, prior) == detect_couple_milestones(
            plain_a, plain_b, as_of
        )


def test_the_random_couples_include_celebrated_rises():
    """The comparison above is not only of couples where nothing holds."""
    found = set()
    for seed in range(12):
        rng = random.Random(seed)
        length = rng.choice([60, 200, 400])
        rise_at = rng.choice([length // 2, length + 1])
        a, b = (History(tuple(_partner(rng, length, rise_at))) for _ in range(2))
        last = START + timedelta(days=length - 1)
        found.update(
            d.type
            for back in range(0, 40, 3)
            for d in detect_couple_milestones(a, b, last - timedelta(days=back))
        )
    assert {"better_communication", "rituals_kept"} <= found, found


def test_a_date_given_twice_or_a_rating_out_of_range_is_an_error():
    day = DayAggregate(START, communication=(3,))
    o = START.toordinal()
    with pytest.raises(ValueError, match="two aggregates"):
        RatedDaysHistory([day], [(o, (2,), (), ())])
    with pytest.raises(ValueError, match="two aggregates"):
        RatedDaysHistory([], [(o + 1, (), (), ()), (o, (), (), ()), (o + 1, (1,), (), ())])
    with pytest.raises(ValueError, match="connection"):
        RatedDaysHistory([], [(o, (3,), (6,), ())])
