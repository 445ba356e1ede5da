"""A history whose older days are known by their episodes alone (what an evaluation reads for the
change-point scan, as two arrays) gives exactly what the same days given whole give."""

from __future__ import annotations

import random
from datetime import date, timedelta

import numpy as np
import pytest

from services.milestones.rules import DayAggregate, History, fewer_anxious_episodes
from services.milestones.rules.aggregates import EpisodeDaysHistory

START = date(2024, 3, 1)


def _history(rng: random.Random, days: int) -> list[DayAggregate]:
    """Days with gaps, days logged with nothing on them, and for some partners a fall in episodes."""
    fall = rng.random() < 0.6
    cut = rng.randint(40, max(41, days - 30))
    out = []
    for i in range(days):
        if rng.random() < 0.25:
            continue  # not logged: absent
        if rng.random() < 0.05:
            out.append(DayAggregate(START + timedelta(days=i), logged=False))
            continue
        rate = 0.4 if fall and i >= cut else 1.6
        episodes = min(6, int(rng.expovariate(1 / rate)) if rate else 0)
        out.append(
            DayAggregate(
                START + timedelta(days=i),
                episodes=episodes,
                intensities=tuple(rng.randint(0, 10) for _ in range(episodes)),
                communication=(rng.randint(1, 5),) if rng.random() < 0.5 else (),
            )
        )
    return out


def _split(rng: random.Random, days: list[DayAggregate]):
    """Some logged days given by their episodes alone (shuffled arrays), the rest whole (shuffled)."""
    compact = [d for d in days if d.logged and rng.random() < 0.7]
    whole = [d for d in days if d not in compact]
    rng.shuffle(whole)
    rng.shuffle(compact)
    return whole, [d.day.toordinal() for d in compact], [d.episodes for d in compact], compact


def _reference_counts(h: History, first: date, last: date) -> tuple[np.ndarray, np.ndarray]:
    """The straightforward arrays: a loop over the days."""
    n = (last - first).days + 1
    episodes, logged = np.zeros(n), np.zeros(n, dtype=bool)
    for d in h.days:
        if first <= d.day <= last and d.logged:
            episodes[(d.day - first).days], logged[(d.day - first).days] = d.episodes, True
    return episodes, logged


@pytest.mark.parametrize("seed", range(40))
def test_episode_days_give_the_scan_exactly_what_whole_days_give(seed):
    rng = random.Random(seed)
    days = _history(rng, rng.choice([30, 90, 200, 400, 730]))
    whole, ordinals, episodes, compact = _split(rng, days)
    packed = EpisodeDaysHistory(
        whole, np.array(ordinals, dtype=np.int64), np.array(episodes, dtype=np.int64)
    )
    plain = History(tuple(days))  # every day whole
    reduced = History((*whole, *(DayAggregate.episodes_only(d.day, d.episodes) for d in compact)))
    last = START + timedelta(days=760)
    assert packed.days == reduced.days
    assert packed.first_logged_day(last) == plain.first_logged_day(last)
    for lo, hi in ((0, 760), (10, 45), (100, 130), (300, 299), (500, 760)):
        a, b = START + timedelta(days=lo), START + timedelta(days=hi)
        assert packed.between(a, b) == reduced.between(a, b)
        assert packed.until(b) == reduced.until(b)
        for h in (packed, plain, reduced):
            got, ref = h.episode_counts(a, b), _reference_counts(plain, a, b)
            assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])
    for back in range(0, 760, 9):
        as_of = START + timedelta(days=back)
        expected = fewer_anxious_episodes.fewer_anxious_episodes(plain, as_of)
        assert fewer_anxious_episodes.fewer_anxious_episodes(packed, as_of) == expected
        assert fewer_anxious_episodes.fewer_anxious_episodes(reduced, as_of) == expected
        assert (
            fewer_anxious_episodes.fewer_anxious_episodes(list(reversed(plain.days)), as_of)
            == expected
        )


def test_the_random_histories_include_celebrated_falls():
    """The comparison above is not only of histories where nothing holds."""
    found = 0
    for seed in range(40):
        rng = random.Random(seed)
        plain = History(tuple(_history(rng, rng.choice([30, 90, 200, 400, 730]))))
        found += any(
            fewer_anxious_episodes.fewer_anxious_episodes(plain, START + timedelta(days=back))
            for back in range(0, 760, 9)
        )
    assert found >= 5


def test_a_date_given_twice_is_an_error_whichever_part_holds_it():
    day = DayAggregate(START, episodes=1, intensities=(3,))
    o = START.toordinal()
    with pytest.raises(ValueError, match="two aggregates"):
        EpisodeDaysHistory([day], [o], [2])
    with pytest.raises(ValueError, match="two aggregates"):
        EpisodeDaysHistory([], [o + 1, o, o + 1], [1, 2, 3])
    with pytest.raises(ValueError, match="two aggregates"):
        History((day, DayAggregate(START)))
    with pytest.raises(ValueError):
        EpisodeDaysHistory([], [o], [-1])
    with pytest.raises(TypeError, match="DayAggregate"):
        History((day, "a day"))
