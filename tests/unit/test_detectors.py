"""The milestone detectors, on hand-made daily aggregates (pure: no I/O, no clock).

Most series are *periodic with period 28*: a pattern is given for the 28
positions ``day % 28``, so every run of 28 consecutive days holds exactly the
same counts. The baseline is days 0-27 (day 0 is the first logged day), so
the numbers in the baseline and in any recent window, the week-earlier
confirming one included, are exact by construction.
"""

from __future__ import annotations

import importlib
import json
import math
import random
import statistics
from datetime import date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.milestones import rules as det
from services.milestones.rules import (
    BETTER_COMMUNICATION,
    CALMER_EPISODES,
    CHECK_IN_RHYTHM,
    FEWER_ANXIOUS_EPISODES,
    MORE_INDEPENDENCE,
    RITUALS_KEPT,
    STRONGER_BOND,
    DayAggregate,
    Detection,
    History,
    detect_couple_milestones,
    detect_partner_milestones,
)
from services.milestones.rules.calmer_episodes import _calmer_look, calmer_episodes
from services.milestones.rules.check_in_rhythm import check_in_rhythm
from services.milestones.rules.fewer_anxious_episodes import FEWER_EPISODES_LEVELS as SCAN_LEVELS
from services.milestones.rules.fewer_anxious_episodes import fewer_anxious_episodes
from services.milestones.rules.more_independence import _independence_look, more_independence
from services.milestones.rules.rituals_kept import rituals_kept
from services.milestones.rules.tests_of_change import ALPHA, _common_language
from services.milestones.rules.windows import look_alpha
from services.milestones.rules.wording import _months
from services.milestones.rules.worsening_check import worsening_check
from simulation.cohorts import FIRST_LOOKS

D0 = date(2026, 10, 1)  # a Thursday; the baseline is October 1-28
AS_OF = (
    83  # day index: December 23, past the first possible detection of the windows' rules (day 76)
)
PROPS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def d(i: int) -> date:
    return D0 + timedelta(days=i)


def levels(found: list[Detection], kind: str | None = None) -> list[int]:
    return [x.level for x in found if kind is None or x.type == kind]


def phase(first: int, last: int, logged: int = 28, make=lambda pos: {}) -> list[DayAggregate]:
    """Days first..last; a day is logged if its position (day % 28) is below ``logged``."""
    return [DayAggregate(d(i), **make(i % 28)) for i in range(first, last + 1) if i % 28 < logged]


def episodes_on(k: int, per_day: int = 1, intensity: int = 5):
    """Positions 0..k-1 are episode-days."""
    return lambda pos: (
        {"episodes": per_day, "intensities": (intensity,) * per_day} if pos < k else {}
    )


def episodes_spread(k: int, per_day: int = 1, intensity: int = 5):
    """k episode-days spread evenly over the 28 positions (so over every week)."""
    chosen = {round(i * 28 / k) for i in range(k)}
    return lambda pos: (
        {"episodes": per_day, "intensities": (intensity,) * per_day} if pos in chosen else {}
    )


def anxious(
    base_logged=28, base_episode_days=20, recent_logged=28, recent_episode_days=6, last=AS_OF
):
    """Baseline days 0-27, then one steady pattern from day 28 to ``last``."""
    return phase(0, 27, base_logged, episodes_on(base_episode_days)) + phase(
        28, last, recent_logged, episodes_on(recent_episode_days)
    )


def spread(values: list, positions: int = 28) -> list[tuple]:
    """Split values over the positions as evenly as possible, in order."""
    q, r = divmod(len(values), positions)
    out, i = [], 0
    for pos in range(positions):
        n = q + (1 if pos < r else 0)
        out.append(tuple(values[i : i + n]))
        i += n
    return out


def spread_weekly(values: list) -> list[tuple]:
    """Split values over the 28 positions so that each week (positions 0-6, 7-13, ...) gets an even
    share of them (every 4th value), spread in order over its 7 days: the weeks look alike, as a
    change that is not one week's luck does."""
    return [chunk for week in range(4) for chunk in spread(values[week::4], 7)]


def with_intensities(values: list[int]):
    chunks = spread_weekly(values)
    return lambda pos: {"episodes": len(chunks[pos]), "intensities": chunks[pos]}


def with_activities(total: int):
    chunks = spread_weekly([1] * total)
    return lambda pos: {"activities": len(chunks[pos])}


def rule_module(name: str):
    return importlib.import_module(f"services.milestones.rules.{name}")


def json_ok(found: list[Detection]) -> None:
    for x in found:
        json.dumps(x.evidence, allow_nan=False)


def every_other_day(
    first: int, last: int, make=lambda i: {}, skip: tuple[int, ...] = ()
) -> list[DayAggregate]:
    """Days first, first + 2, ... up to last are logged (half the days), except ``skip``."""
    return [DayAggregate(d(i), **make(i)) for i in range(first, last + 1, 2) if i not in skip]


def half_logged(
    recent_skip: tuple[int, ...] = (),
    base_make=lambda i: {},
    recent_make=lambda i: {},
    last: int = 100,
):
    """Half the days logged throughout (so the logging guard passes): the baseline is the first 28
    logged days, days 0-54; every later 28-day window has 14 logged days (less any in ``recent_skip``)."""
    return every_other_day(0, 54, base_make) + every_other_day(56, last, recent_make, recent_skip)


def test_a_baseline_over_three_months_is_named_from_first_to_last():
    assert _months(date(2026, 10, 20), date(2026, 12, 14)) == "October to December"
    assert _months(date(2026, 10, 20), date(2026, 11, 14)) == "October and November"
    assert _months(date(2026, 12, 20), date(2027, 1, 14)) == "December and January"


def test_later_looks_spend_less_alpha():
    assert look_alpha(1) == ALPHA and look_alpha(2) == ALPHA / 4 and look_alpha(3) == ALPHA / 9
    assert sum(look_alpha(k) for k in range(1, 10_000)) < ALPHA * 1.645
    with pytest.raises(ValueError):
        look_alpha(0)


def test_days_after_as_of_are_ignored():
    history = anxious(base_episode_days=20, recent_episode_days=6)
    later = phase(AS_OF + 1, AS_OF + 40, 28, episodes_on(28))
    assert fewer_anxious_episodes(history + later, d(AS_OF)) == fewer_anxious_episodes(
        history, d(AS_OF)
    )


def test_the_same_aggregates_in_reverse_order_give_the_same_result():
    history = anxious(base_episode_days=20, recent_episode_days=6)
    assert detect_partner_milestones(
        list(reversed(history)), d(AS_OF)
    ) == detect_partner_milestones(history, d(AS_OF))


def test_two_aggregates_for_one_day_are_refused():
    with pytest.raises(ValueError):
        History([DayAggregate(d(0)), DayAggregate(d(0), episodes=1, intensities=(3,))])


def test_a_day_aggregate_must_be_consistent():
    with pytest.raises(ValueError):
        DayAggregate(d(0), episodes=2, intensities=(3,))
    with pytest.raises(ValueError):
        DayAggregate(d(0), logged=False, activities=1)
    with pytest.raises(ValueError):
        DayAggregate(d(0), conflicts=1, conflicts_repaired_24h=2)
    with pytest.raises(ValueError):
        DayAggregate(d(0), communication=(6,))
    with pytest.raises(TypeError):
        fewer_anxious_episodes([], datetime(2026, 12, 1))


# --- calmer_episodes ---


def calmer(base: list[int], recent: list[int]) -> list[DayAggregate]:
    return phase(0, 27, 28, with_intensities(base)) + phase(28, AS_OF, 28, with_intensities(recent))


def test_calmer_episodes_fires_at_a_common_language_effect_of_exactly_0_7():
    found = calmer_episodes(calmer([6] * 60, [5] * 24 + [6] * 36), d(AS_OF))
    assert levels(found) == [1]
    assert found[0].evidence["common_language_effect"] == 0.7
    assert found[0].headline == (
        "Anxious moments feel gentler: average intensity from 6.0 out of 10 in October to 5.6 now."
    )
    json_ok(found)


def test_calmer_episodes_just_below_0_7_does_not_fire_even_when_significant():
    history = calmer([6] * 60, [5] * 23 + [6] * 37)
    assert _calmer_look(History(history), d(AS_OF)).evidence["p_value"] < ALPHA
    assert calmer_episodes(history, d(AS_OF)) == []


def test_calmer_episodes_needs_8_episodes_in_each_window():
    assert calmer_episodes(calmer([9] * 7, [1] * 8), d(AS_OF)) == []
    assert calmer_episodes(calmer([9] * 8, [1] * 7), d(AS_OF)) == []
    assert levels(calmer_episodes(calmer([9] * 8, [1] * 8), d(AS_OF))) == [1]


def test_calmer_episodes_never_announces_when_the_average_intensity_did_not_fall():
    # most recent episodes are milder (effect 0.75, p < 0.01), but the average rose from 5 to 5.5
    assert calmer_episodes(calmer([5] * 20, [4] * 15 + [10] * 5), d(AS_OF)) == []


def test_calmer_episodes_not_from_one_calmer_stretch_a_month():
    # the same intensities as at an effect of exactly 0.7, but every milder episode falls in the first 10 days
    # of each 28: the episodes say calmer (p < 0.0125), the weeks do not (one calm week and a half a month)
    history = phase(0, 27, 28, with_intensities([6] * 60)) + phase(
        28,
        AS_OF,
        28,
        lambda pos: {
            "episodes": len(chunk := spread([5] * 24 + [6] * 36)[pos]),
            "intensities": chunk,
        },
    )
    look = _calmer_look(History(history), d(AS_OF))
    assert look.evidence["common_language_effect"] == 0.7 and look.evidence["p_value"] < ALPHA
    assert look.evidence["weekly"]["p_value"] > ALPHA
    assert calmer_episodes(history, d(AS_OF)) == []


# --- more_independence ---


def independent(base_total: int, recent_total: int, recent_logged: int = 28) -> list[DayAggregate]:
    return phase(0, 27, 28, with_activities(base_total)) + phase(
        28,
        AS_OF,
        recent_logged,
        lambda pos: with_activities(recent_total)(pos) if pos < recent_logged else {},
    )


def test_more_independence_fires_at_a_rate_ratio_of_exactly_1_4():
    found = more_independence(independent(100, 140), d(AS_OF))
    assert levels(found) == [1]
    assert found[0].evidence["rate_ratio"] == 1.4 and found[0].evidence["p_value"] < ALPHA
    assert found[0].headline == (
        "Time for yourself: activities of your own went from about 25 a week "
        "in October to about 35 a week now."
    )
    json_ok(found)


def test_more_independence_just_below_1_4_does_not_fire_even_when_significant():
    history = independent(100, 139)
    assert _independence_look(History(history), d(AS_OF)).evidence["p_value"] < ALPHA
    assert more_independence(history, d(AS_OF)) == []


def test_more_independence_from_none_at_first_fires_with_a_null_ratio():
    found = more_independence(independent(0, 10), d(AS_OF))
    assert levels(found) == [1]
    ev = found[0].evidence
    assert ev["rate_ratio"] is None and ev["baseline_had_none"] is True
    assert found[0].headline == (
        "Time for yourself: activities of your own went from none in October "
        "to about 2.5 a week now."
    )
    json_ok(found)


def test_more_independence_needs_14_logged_days_per_window():
    # half the days logged throughout: 10 activities in the baseline's 28 logged days, then 4 a logged day;
    # day 86 lies in the recent window of day 110 and of each of its confirming looks (103, 96, 89)
    def history(skip: tuple[int, ...]) -> list[DayAggregate]:
        return half_logged(
            skip, lambda i: {"activities": int(i % 6 == 0)}, lambda i: {"activities": 4}, 110
        )

    assert more_independence(history((86,)), d(110)) == []
    assert levels(more_independence(history(()), d(110))) == [1]


def test_more_independence_not_from_logging_more_often():
    # 1 activity every other logged day, before and after; only the logging got more regular
    history = phase(0, 27, 14, lambda pos: {"activities": pos % 2}) + phase(
        28, 120, 28, lambda pos: {"activities": pos % 2}
    )
    for as_of in range(FIRST_LOOKS[MORE_INDEPENDENCE], 121):
        assert more_independence(history, d(as_of)) == []


def test_more_independence_not_from_one_busy_week_a_month():
    # 10 activities in the baseline month, then 30 a month: spread over the weeks it is a milestone; all in
    # the first 6 days of each 28 it is one busy week, and the over-dispersed test holds it back
    busy = phase(0, 27, 28, with_activities(10)) + phase(
        28, AS_OF, 28, lambda pos: {"activities": 5 * (pos < 6)}
    )
    look = _independence_look(History(busy), d(AS_OF))
    assert look.evidence["p_value"] < ALPHA and look.evidence["rate_ratio"] == 3.0
    assert (
        look.evidence["over_dispersion"]["phi"] > 1
        and look.evidence["over_dispersion"]["p_value"] > ALPHA
    )
    assert more_independence(busy, d(AS_OF)) == []
    assert levels(more_independence(independent(10, 30), d(AS_OF))) == [1]


def test_a_look_runs_its_rank_test_only_when_its_cheaper_conditions_hold(monkeypatch):
    """Most looks hold nothing: the rank test (scipy, 50-100 us a call) is run only when the means moved the
    right way; the result is the same as with every test run."""
    ran = []
    ranks = _common_language
    monkeypatch.setattr(
        rule_module("calmer_episodes"),
        "_common_language",
        lambda *a: ran.append("ranks") or ranks(*a),
    )
    assert calmer_episodes(calmer([5] * 20, [6] * 20), d(AS_OF)) == []  # the recent mean higher
    assert ran == []
    assert levels(calmer_episodes(calmer([9] * 8, [1] * 8), d(AS_OF))) == [1]
    assert "ranks" in ran


# --- couple days (for the tests of every rule together) ---


def rater(first: list[float], later, n_days: int, start: int = 0) -> list[DayAggregate]:
    """Communication ratings on consecutive days: ``first`` on the first days, then ``later(i)``."""
    out = []
    for j in range(n_days):
        value = first[j] if j < len(first) else later(j)
        out.append(
            DayAggregate(
                d(start + j), communication=value if isinstance(value, tuple) else (value,)
            )
        )
    return out


def improving(fours: int, n_days: int = 42) -> list[DayAggregate]:
    """14 days rated 3, then a 14-day cycle with ``fours`` days rated 4 and the rest 3."""
    return rater([3] * 14, lambda j: 4 if j % 14 < fours else 3, n_days)


# --- rituals_kept and check_in_rhythm (the couple's; counts, never streaks) ---


def rituals(n: int, first: int = 0, tag: str = "good_morning_text") -> list[DayAggregate]:
    return [DayAggregate(d(first + i), rituals=(tag,)) for i in range(n)]


@pytest.mark.parametrize(
    "count,expected",
    [
        (9, []),
        (10, [1]),
        (24, [1]),
        (25, [1, 2]),
        (49, [1, 2]),
        (50, [1, 2, 3]),
        (100, [1, 2, 3, 4]),
    ],
)
def test_rituals_kept_at_the_10th_25th_50th_and_100th_ritual(count, expected):
    found = rituals_kept(rituals(count), [], d(200))
    assert levels(found) == expected
    json_ok(found)


def test_rituals_kept_counts_both_partners_and_nothing_after_as_of():
    found = rituals_kept(
        rituals(5), rituals(5, first=10, tag="affection") + rituals(5, first=30), d(14)
    )
    assert levels(found) == [1]
    assert found[0].evidence["rituals"] == 10
    assert found[0].headline == "You have kept 10 rituals together."
    assert found[0].type == RITUALS_KEPT and found[0].scope == "couple"


def test_rituals_kept_names_no_ritual_in_its_evidence_or_headline():
    """Both partners read a couple's milestone: a count by ritual would tell what a single entry was."""
    found = rituals_kept(
        rituals(9),
        rituals(1, first=20, tag="therapist_affair_session"),
        d(30),
        prior={"secret_tag": 3},
    )
    assert [x.evidence["rituals"] for x in found] == [13]
    text = json.dumps([(x.evidence, x.headline) for x in found])
    assert (
        "therapist_affair_session" not in text
        and "secret_tag" not in text
        and "good_morning_text" not in text
    )
    assert "by_ritual" not in found[0].evidence


def test_check_in_rhythm_evidence_tells_the_span_not_which_weeks():
    as_of = 100
    weeks = [DayAggregate(d(as_of - 7 * w - 2), weekly_check_ins=1) for w in (0, 1, 3, 4)]
    evidence = check_in_rhythm(weeks, [], d(as_of))[0].evidence
    assert "weeks" not in evidence
    assert (
        evidence["start"],
        evidence["end"],
        evidence["weeks_with_check_in"],
        evidence["of_weeks"],
    ) == (d(as_of - 34).isoformat(), d(as_of).isoformat(), 4, 5)


def test_rituals_kept_gaps_do_not_reset_anything():
    spaced = [DayAggregate(d(i * 9), rituals=("affection",)) for i in range(10)]
    assert levels(rituals_kept(spaced, [], d(100))) == [1]


def test_check_in_rhythm_in_4_of_the_last_5_weeks():
    as_of = 100
    weeks = [DayAggregate(d(as_of - 7 * w - 2), weekly_check_ins=1) for w in (0, 1, 3, 4)]
    found = check_in_rhythm(weeks, [], d(as_of))
    assert [(x.type, x.level) for x in found] == [(CHECK_IN_RHYTHM, 1)]
    assert found[0].evidence["weeks_with_check_in"] == 4
    assert (
        found[0].headline
        == "Your weekly check-in has found its rhythm: you met for it in 4 of the last 5 weeks."
    )
    assert "streak" not in found[0].headline.lower()
    json_ok(found)


def test_check_in_rhythm_not_in_3_of_the_last_5_weeks():
    as_of = 100
    weeks = [DayAggregate(d(as_of - 7 * w - 2), weekly_check_ins=1) for w in (0, 2, 4, 5, 6)]
    assert check_in_rhythm(weeks, [], d(as_of)) == []


def test_check_in_rhythm_counts_either_partner_and_the_weekly_check_in_ritual():
    as_of = 100
    a = [DayAggregate(d(as_of - 7 * w), weekly_check_ins=1) for w in (0, 1)]
    b = [DayAggregate(d(as_of - 7 * w - 6), rituals=("weekly_check_in",)) for w in (2, 3)]
    assert levels(check_in_rhythm(a, b, d(as_of))) == [1]


# --- worsening_check (never a milestone) ---


def test_worsening_check_finds_a_reliable_rise_in_episode_days():
    history = phase(0, 59, 28, episodes_on(4)) + phase(60, 94, 28, episodes_on(24))
    assert (
        worsening_check(history, d(70)).worsening is False
    )  # 10 days in: the look a week earlier saw 3
    result = worsening_check(
        history, d(87)
    )  # lately 24 of 28, the month before 4 of 28; a week ago too
    assert result.worsening is True
    json.dumps(result.evidence, allow_nan=False)
    assert result.evidence["rate_ratio"] >= 1.4 and result.evidence["p_value"] < ALPHA


def test_worsening_check_not_for_a_steady_partner_nor_a_single_hard_week():
    steady = phase(0, 120, 28, episodes_on(10))
    assert not any(worsening_check(steady, d(i)).worsening for i in range(55, 121))
    hard_week = phase(0, 113, 28, episodes_on(4)) + phase(114, 120, 28, episodes_on(28))
    assert worsening_check(hard_week, d(120)).worsening is False


def test_worsening_check_says_nothing_without_enough_logged_days():
    result = worsening_check(phase(0, 40, 28, episodes_on(28)), d(40))
    assert result.worsening is False and result.evidence is None


def test_a_worsening_is_never_a_milestone():
    history = phase(0, 59, 28, episodes_on(4)) + phase(60, 94, 28, episodes_on(24))
    assert detect_partner_milestones(history, d(94)) == []


# --- all together: headlines, evidence, determinism ---


def everything() -> tuple[list[DayAggregate], list[DayAggregate]]:
    a = phase(
        0, 27, 28, lambda pos: {**episodes_on(20, 3, 8)(pos), **with_activities(10)(pos)}
    ) + phase(
        28,
        90,
        28,
        lambda pos: {
            **episodes_spread(6, 2, 3)(pos),
            **with_activities(40)(pos),
            "communication": (4,) if pos % 2 else (5,),
        },
    )
    a = [
        DayAggregate(
            x.day,
            episodes=x.episodes,
            intensities=x.intensities,
            activities=x.activities,
            communication=x.communication or (2,),
            rituals=("affection",),
        )
        for x in a
    ]
    b = improving(14, 91)
    return a, b


def test_headlines_never_compare_the_partners_nor_talk_of_streaks_or_decline():
    a, b = everything()
    found = detect_partner_milestones(a, d(90)) + detect_couple_milestones(a, b, d(90))
    assert {x.type for x in found} >= {
        FEWER_ANXIOUS_EPISODES,
        CALMER_EPISODES,
        MORE_INDEPENDENCE,
        BETTER_COMMUNICATION,
        RITUALS_KEPT,
    }
    for x in found:
        text = x.headline.lower()
        for word in (
            "streak",
            "than your partner",
            "more than",
            "less than",
            "worse",
            "decline",
            "dropped",
        ):
            assert word not in text, x.headline
        json_ok([x])


@st.composite
def improvement_shaped(draw, n_days: int = 91):
    """Days 0..n-1: more episodes early, fewer later, random logging, ratings and rituals."""
    days = []
    for i in range(n_days):
        if (
            i and not draw(st.booleans()) and draw(st.booleans())
        ):  # about a quarter of days unlogged
            continue
        early = i < 28
        k = draw(st.integers(0, 3) if early else st.sampled_from([0, 0, 0, 1]))
        days.append(
            DayAggregate(
                d(i),
                episodes=k,
                intensities=tuple(draw(st.lists(st.integers(0, 10), min_size=k, max_size=k))),
                communication=tuple(draw(st.lists(st.integers(1, 5), max_size=1))),
                connection=tuple(draw(st.lists(st.integers(1, 5), max_size=1)))
                if i % 7 == 3
                else (),
                rituals=("affection",) * draw(st.integers(0, 1)),
                activities=draw(st.integers(0, 1 if early else 3)),
                conflicts=(c := draw(st.integers(0, 1))),
                conflicts_repaired_24h=draw(st.integers(0, c)),
                weekly_check_ins=int(i % 7 == 3),
            )
        )
    return days


@PROPS
@given(a=improvement_shaped(), b=improvement_shaped(), seed=st.integers(0, 2**32 - 1))
def test_property_results_are_deterministic_and_independent_of_input_order(a, b, seed):
    as_of = d(90)
    expected_partner = detect_partner_milestones(a, as_of)
    expected_couple = detect_couple_milestones(a, b, as_of)
    rng = random.Random(seed)
    shuffled_a, shuffled_b = a[:], b[:]
    rng.shuffle(shuffled_a)
    rng.shuffle(shuffled_b)
    assert detect_partner_milestones(shuffled_a, as_of) == expected_partner
    assert detect_partner_milestones(a, as_of) == expected_partner
    assert detect_couple_milestones(shuffled_a, shuffled_b, as_of) == expected_couple
    assert (
        detect_couple_milestones(shuffled_b, shuffled_a, as_of) == expected_couple
    )  # no partner order


def _episode_series(base: list[int], recent: list[int]) -> list[DayAggregate]:
    """Days 0-27 and 28-89 from lists of episode counts; -1 marks a day without logging."""
    out = []
    for i, k in enumerate(base + recent):
        if k >= 0:
            out.append(DayAggregate(d(i), episodes=k, intensities=(5,) * k))
    return out


def _add_episodes(
    days: list[DayAggregate], extra: list[tuple[int, int]], first: int
) -> list[DayAggregate]:
    by_day = {x.day: x for x in days}
    for offset, n in extra:
        day = d(first + offset)
        if day in by_day:  # only on days that were logged: adding data is not adding episodes
            x = by_day[day]
            by_day[day] = DayAggregate(
                day, episodes=x.episodes + n, intensities=x.intensities + (5,) * n
            )
    return list(by_day.values())


# --- simulation: repeated daily looks ---


def simulated_partner(
    rng: np.random.Generator,
    rate: float,
    rate_after: float | None = None,
    change_day: int = 60,
    days: int = 121,
    logging: float = 0.7,
) -> History:
    out = []
    for i in range(days):
        logged = rng.random() < logging
        lam = rate if rate_after is None or i < change_day else rate_after
        k = int(rng.poisson(lam))
        if logged:
            out.append(DayAggregate(d(i), episodes=k, intensities=(5,) * k))
    return History(out)


def first_detection(
    h: History, last_look: int, first_look: int = FIRST_LOOKS[FEWER_ANXIOUS_EPISODES]
) -> int | None:
    """The first daily look, from the earliest the rule can hold, at which fewer_anxious_episodes holds."""
    return next(
        (i for i in range(first_look, last_look + 1) if fewer_anxious_episodes(h, d(i))), None
    )


def test_simulated_steady_partners_get_no_fewer_anxious_episodes_under_daily_looks():
    # 200 partners, about 5 anxious moments a week (Poisson 0.7 a day), logging 70% of days,
    # 121 days, looked at every day from the first the rule can hold (day 37) to day 120
    rng = np.random.default_rng(20261001)
    false = [
        h
        for h in (simulated_partner(rng, 0.7) for _ in range(200))
        if first_detection(h, 120) is not None
    ]
    assert len(false) == 0


def test_simulated_partners_who_log_less_often_get_no_fewer_anxious_episodes():
    rng = np.random.default_rng(20261002)
    false = 0
    for _ in range(100):
        early = simulated_partner(rng, 0.7, days=60, logging=0.9)
        late = simulated_partner(rng, 0.7, days=121, logging=0.5)
        h = History(early.days + tuple(x for x in late.days if x.day >= d(60)))
        false += first_detection(h, 120) is not None
    assert false == 0


def improver_detections(seed: int, rate: float, fall: float) -> list[int | None]:
    """50 improvers whose rate falls by ``fall`` at day 60; days from the change to the first detection."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(50):
        hit = first_detection(simulated_partner(rng, rate, rate * (1 - fall)), 116)
        out.append(None if hit is None else hit - 60)
    return out


def test_simulated_improvers_whose_anxious_days_fall_by_90_percent_are_detected_within_56_days():
    hits = improver_detections(20261003, rate=1.5, fall=0.9)
    found = [h for h in hits if h is not None]
    # 80%; over 400 improvers it is about 79%, after a median of 28 days (97% without the logging guard, which
    # holds back a partner whose baseline month happened to be logged more densely than their usual)
    assert len(found) >= 40
    assert min(found) >= 0  # never before the change
    assert statistics.median(found) <= 40


# --- the fast statistics equal scipy.stats' own ---


@PROPS
@given(
    higher=st.lists(st.integers(1, 5), min_size=2, max_size=40),
    lower=st.lists(st.sampled_from([1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5]), min_size=2, max_size=40),
)
def test_property_common_language_is_scipys_mann_whitney(higher, lower):
    from scipy import stats

    from services.milestones.rules.tests_of_change import _common_language

    effect, p = _common_language(higher, lower)
    res = stats.mannwhitneyu(higher, lower, alternative="greater", method="asymptotic")
    assert effect == pytest.approx(res.statistic / (len(higher) * len(lower)), rel=1e-12)
    assert p == pytest.approx(float(res.pvalue), rel=1e-9, abs=1e-15) or (
        math.isnan(res.pvalue) and p == 1.0
    )


@PROPS
@given(
    k=st.integers(0, 200),
    extra=st.integers(0, 200),
    t_recent=st.integers(1, 60),
    t_base=st.integers(1, 60),
    alternative=st.sampled_from(["less", "greater"]),
)
def test_property_binomial_p_is_scipys_binomtest(k, extra, t_recent, t_base, alternative):
    from scipy import stats

    from services.milestones.rules.tests_of_change import _binomial_p

    n = k + extra
    expected = (
        1.0
        if n == 0
        else stats.binomtest(k, n, t_recent / (t_base + t_recent), alternative=alternative).pvalue
    )
    assert _binomial_p(k, n, t_recent, t_base, alternative) == pytest.approx(
        expected, rel=1e-9, abs=1e-300
    )


@PROPS
@given(
    base=st.lists(st.floats(0, 10), min_size=2, max_size=12),
    recent=st.lists(st.floats(0, 10), min_size=2, max_size=12),
)
def test_property_welch_p_is_scipys_t_distribution(base, recent):
    from scipy import stats

    from services.milestones.rules.tests_of_change import _welch_lower

    t, p = _welch_lower(base, recent, 1 / 12, 1 / 12)
    vb, vr = (
        max(statistics.variance(base), 1 / 12) / len(base),
        max(statistics.variance(recent), 1 / 12) / len(recent),
    )
    df = (vb + vr) ** 2 / (vb**2 / (len(base) - 1) + vr**2 / (len(recent) - 1))
    assert p == pytest.approx(float(stats.t.sf(t, df)), rel=1e-9, abs=1e-300)


@PROPS
@given(xs=st.lists(st.floats(0, 10), min_size=2, max_size=40))
def test_property_float_variance_is_the_exact_one(xs):
    from services.milestones.rules.tests_of_change import _variance

    assert _variance(xs) == pytest.approx(statistics.variance(xs), rel=1e-9, abs=1e-12)


def test_levels_names_every_level_each_rule_can_give(monkeypatch):
    """``LEVELS`` tells when a type has nothing left to find, and its rule is then not run at all: a level
    a rule gives and ``LEVELS`` leaves out would never be found once the others are held."""
    named = {}

    def level_rules(kind, scope, as_of, look, rules, *args, **kwargs):
        named[kind] = tuple(sorted(rules))
        return []

    for rule in ("calmer_episodes", "more_independence"):
        monkeypatch.setattr(rule_module(rule), "_confirmed", level_rules)
    detect_partner_milestones(History(()), D0)
    detect_couple_milestones(History(()), History(()), D0)
    named[FEWER_ANXIOUS_EPISODES] = tuple(
        level for level, _ in SCAN_LEVELS
    )  # the levels the scan rule tests
    named[RITUALS_KEPT] = tuple(level for level, _ in det.RITUAL_LEVELS)
    named[CHECK_IN_RHYTHM] = (1,)  # one level, given by check_in_rhythm itself
    named[BETTER_COMMUNICATION] = named[STRONGER_BOND] = (1,)  # one level, given by the couple scan
    assert named == det.LEVELS
    assert set(det.LEVELS) == set(det.MILESTONE_TYPES)
