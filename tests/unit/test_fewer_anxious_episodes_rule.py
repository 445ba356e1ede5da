"""The change-point rule for fewer anxious episodes: hand-made series, order, and a CI-sized calibration check."""

from __future__ import annotations

import random
from datetime import date, timedelta

import numpy as np
import pytest

from services.milestones.rules import DayAggregate
from services.milestones.rules import fewer_anxious_episodes as rule
from simulation import looks

START = date(2026, 3, 2)


def day(i: int, episodes: int) -> DayAggregate:
    return DayAggregate(START + timedelta(days=i), episodes=episodes, intensities=(5,) * episodes)


def series(before: list[int], after: list[int], logged_after: float = 1.0) -> list[DayAggregate]:
    """Days 0.. with the ``before`` then ``after`` counts (cycled); after the change only a share logged."""
    days = [day(i, k) for i, k in enumerate(before)]
    kept = np.random.default_rng(3).random(len(after)) < logged_after
    days += [day(len(before) + i, k) for i, k in enumerate(after) if kept[i]]
    return days


STEADY = [1, 2, 0, 1, 1, 0, 2] * 6  # 7 a week, 42 days
CALMER = [0, 1, 0, 0, 0, 1, 0] * 7  # 2 a week, 49 days


def test_a_fall_from_seven_a_week_to_two_is_celebrated_with_its_periods_and_numbers():
    days = series(STEADY, CALMER)
    as_of = days[-1].day
    found = rule.fewer_anxious_episodes(days, as_of)
    assert [d.level for d in found] == [1, 2]  # a ratio of 1/3: not yet 0.3
    e = found[0].evidence
    assert e["before"]["episodes_per_week"] == pytest.approx(7.0, abs=0.6)
    assert e["after"]["episodes_per_week"] == pytest.approx(2.0, abs=0.6)
    assert e["rate_ratio"] <= 0.7 and e["statistic"] >= e["threshold"]
    assert date.fromisoformat(e["after"]["end"]) == as_of
    assert e["confirmed_as_of"] == (as_of - timedelta(days=3)).isoformat()
    assert "7 a week" in found[0].headline and "2 a week now" in found[0].headline


def test_a_level_holds_at_its_threshold_and_not_just_below_it(monkeypatch):
    days = series(STEADY, CALMER)
    as_of = days[-1].day
    e = rule.fewer_anxious_episodes(days, as_of)[0].evidence
    # the binding look is the smaller margin of the look and its confirmation
    margin = min(
        e["statistic"] - e["threshold"],
        e["confirmation"]["statistic"] - e["confirmation"]["threshold"],
    )
    b = rule.base()
    monkeypatch.setattr(rule, "base", lambda target=rule.TARGET: b + margin - 1e-3)
    assert rule.fewer_anxious_episodes(days, as_of)
    monkeypatch.setattr(rule, "base", lambda target=rule.TARGET: b + margin + 2e-3)
    assert all(d.level != 1 for d in rule.fewer_anxious_episodes(days, as_of))


def test_a_quiet_partners_fall_from_four_a_week_to_one_is_celebrated_within_ten_weeks():
    # few episodes a week: the evidence is mostly the counts' own noise, not the weeks' drift, so the
    # population's dispersion weighs little and the fall is found (the weeks' Pearson dispersion alone
    # needed a threshold set by drifting partners, and missed it for 12 weeks)
    days = series([1, 0, 1, 0, 1, 0, 1] * 6, [0, 0, 0, 1, 0, 0, 0] * 10)
    found = rule.fewer_anxious_episodes(days, START + timedelta(days=42 + 69))
    assert [d.level for d in found][:1] == [1]
    assert found[0].evidence["after"]["episodes_per_week"] == pytest.approx(1.0, abs=0.3)


def test_a_fall_too_small_to_matter_is_never_celebrated_however_long_it_lasts():
    slightly = [1, 1, 0, 1, 1, 0, 2] * 30  # 7 -> 6 a week: a ratio of 0.86
    days = series(STEADY, slightly)
    for i in range(60, len(STEADY) + len(slightly), 5):
        assert rule.fewer_anxious_episodes(days, START + timedelta(days=i)) == []


def test_days_missing_after_the_change_count_as_usual_days_not_calm_ones():
    calm = [0] * 35
    assert rule.fewer_anxious_episodes(series(STEADY, calm), START + timedelta(days=76))
    # logging only a fifth of the days (15 weeks, 20 of them logged, all calm): the missing days count as
    # usual days, so the fall is at most to 0.8 of the usual rate, too small to celebrate
    days = series(STEADY, [0] * 105, logged_after=0.2)
    assert sum(1 for d in days if d.day >= START + timedelta(days=42)) >= 14
    for i in range(56, 147):
        assert rule.fewer_anxious_episodes(days, START + timedelta(days=i)) == []


def test_the_same_days_in_any_order_give_the_same_detections_and_later_days_are_ignored():
    days = series(STEADY, CALMER + [3] * 14)
    as_of = START + timedelta(days=len(STEADY) + len(CALMER) - 1)
    expected = rule.fewer_anxious_episodes(days, as_of)
    assert expected
    shuffled = days[:]
    random.Random(5).shuffle(shuffled)
    assert rule.fewer_anxious_episodes(shuffled, as_of) == expected
    assert rule.fewer_anxious_episodes(reversed(days), as_of) == expected


def test_nothing_is_tested_before_three_weeks_of_logging_and_two_after():
    days = series([2] * 21, [0] * 14)
    assert rule.fewer_anxious_episodes(days, START + timedelta(days=22)) == []
    assert rule.fewer_anxious_episodes([], START) == []


def test_the_harness_fires_on_the_same_day_as_the_rule_looked_at_every_day():
    partners = [p for p in looks.partners(77, "improvers", 40)][:40]
    margins = looks.rule_margins(partners)
    b = rule.base()
    checked = 0
    for p, m in zip(partners, margins):
        first = m.first(b)
        if first is None:
            continue
        assert rule.fewer_anxious_episodes(p.days, p.day(first))
        assert not rule.fewer_anxious_episodes(p.days, p.day(first - 1))
        checked += 1
    assert checked >= 5


# --- a CI-sized calibration check (seeds apart from the calibration's and the report's) ---

CI_SEED, CI_PARTNERS = 4242, 300


@pytest.mark.parametrize("cohort", looks.NULL_COHORTS)
def test_a_null_cohort_stays_within_its_lifetime_false_rate(cohort):
    margins = looks.rule_margins(looks.partners(CI_SEED, cohort, CI_PARTNERS))
    false = sum(m.peak >= rule.base() for m in margins)
    # 1% of 300 is 3; 8 or more has a chance of 0.4% at a true 1% (binomial), so 7 at most
    assert false <= 7


def test_improvers_are_found_within_8_weeks_at_the_measured_rate():
    found = looks.found(
        looks.rule_margins(looks.partners(CI_SEED, "improvers", CI_PARTNERS)), rule.base()
    )
    # held out (seed 2026, 2000 improvers): 22.3% within 8 weeks; 3 binomial sd of 300 partners is 7 points
    assert abs(found["within_8_weeks"] - 0.223) <= 0.07
    assert found["before_change"] <= 0.01
