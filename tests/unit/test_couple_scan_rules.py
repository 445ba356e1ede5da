"""The couple rules' change-point scans: hand-made couples, order, privacy of the evidence, the simulator's
shared entries, and a CI-sized calibration check."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import date, timedelta

import numpy as np
import pytest

from services.milestones.rules import (
    BETTER_COMMUNICATION,
    COUPLE,
    STRONGER_BOND,
    DayAggregate,
    couple_scan,
    weekly_means,
)
from services.milestones.rules.better_communication import better_communication
from services.milestones.rules.stronger_bond import stronger_bond
from simulation import cohorts, couple_looks, looks

START = date(2026, 9, 7)  # a Monday in September

# a week of each partner's daily communication ratings: means 3 (before) and 4 (after), every week alike
A_BEFORE, A_AFTER = [3, 3, 2, 3, 4, 3, 3], [4, 4, 3, 4, 5, 4, 4]
B_BEFORE, B_AFTER = [3, 2, 3, 3, 3, 4, 3], [4, 3, 4, 4, 4, 5, 4]


def talks(
    weeks_before: int, weeks_after: int, a_after=A_AFTER, b_after=B_AFTER
) -> tuple[list[DayAggregate], list[DayAggregate]]:
    """Both partners' reflections, one a day: ``weeks_before`` weeks as before, then ``weeks_after`` as after."""
    out = []
    for before, after in ((A_BEFORE, a_after), (B_BEFORE, b_after)):
        ratings = before * weeks_before + after * weeks_after
        out.append(
            [
                DayAggregate(START + timedelta(days=i), communication=(r,))
                for i, r in enumerate(ratings)
            ]
        )
    return out[0], out[1]


def check_ins(
    weeks_before: int, weeks_after: int, before=(3, 3), after=(4, 4)
) -> tuple[list[DayAggregate], list[DayAggregate]]:
    """A check-in every Sunday, each partner's connection and understanding as given."""
    out = []
    for shift in (0, 1):
        days = []
        for w in range(weeks_before + weeks_after):
            c, u = before if w < weeks_before else after
            days.append(
                DayAggregate(
                    START + timedelta(days=7 * w + 6),
                    connection=(c,),
                    understanding=(max(1, u - shift if w % 2 else u),),
                    weekly_check_ins=1,
                )
            )
        out.append(days)
    return out[0], out[1]


def last_day(a, b) -> date:
    return max(d.day for d in a + b)


def no_breakdown(evidence) -> None:
    """The couple's evidence: two periods, their means, the effect and the statistic; never a list (by week,
    by tag) and never a partner's own number."""

    def keys(x: dict) -> set:
        return set(x) | {k for v in x.values() if isinstance(v, dict) for k in keys(v)}

    assert "[" not in json.dumps(evidence)
    assert keys(evidence) <= {
        "test",
        "measure",
        "before",
        "after",
        "start",
        "end",
        "mean",
        "ratings",
        "weeks",
        "rise",
        "common_language_effect",
        "statistic",
        "threshold",
        "as_of",
        "level",
        "level_rule",
        "confirmed_as_of",
        "confirmation",
        "rise_weeks",
    }


def test_talks_rated_a_point_higher_for_six_weeks_are_celebrated_in_the_couples_own_numbers():
    a, b = talks(8, 6)
    as_of = last_day(a, b)
    found = better_communication(a, b, as_of)
    assert [(d.type, d.level, d.scope) for d in found] == [(BETTER_COMMUNICATION, 1, COUPLE)]
    e = found[0].evidence
    assert e["before"]["mean"] == pytest.approx(3.0, abs=0.01) and e["after"][
        "mean"
    ] == pytest.approx(4.0, abs=0.01)
    assert e["before"]["start"] == START.isoformat() and e["after"]["end"] == as_of.isoformat()
    assert e["after"]["start"] == (START + timedelta(days=56)).isoformat()
    assert e["rise"] == pytest.approx(1.0) and e["common_language_effect"] >= 0.7
    assert (
        e["statistic"] >= e["threshold"]
        and e["confirmation"]["statistic"] >= e["confirmation"]["threshold"]
    )
    no_breakdown(e)
    assert found[0].headline == (
        "Talking together: you rate your talks about 4.0 out of 5 now, "
        "from about 3.0 in September to November."
    )


def test_check_ins_a_point_higher_for_six_weeks_are_a_stronger_bond():
    a, b = check_ins(8, 6)
    found = stronger_bond(a, b, last_day(a, b))
    assert [(d.type, d.level) for d in found] == [(STRONGER_BOND, 1)]
    e = found[0].evidence
    assert e["after"]["mean"] - e["before"]["mean"] >= 0.5 and e["common_language_effect"] >= 0.7
    assert e["rise_weeks"] == 0 and "confirmation" not in e  # a step; no confirming look
    no_breakdown(e)
    assert found[0].headline.startswith("Feeling closer: your check-ins say about ")


def rising_check_ins(weeks_before: int, rise_weeks: int, weeks_after: int) -> tuple[list, list]:
    """A check-in every Sunday: connection and understanding 3 (understanding 2 every other week for partner b),
    then up by 1.5 points over ``rise_weeks`` weeks (each week's rating the rise so far, rounded), then stay."""
    out = []
    for shift in (0, 1):
        days = []
        for w in range(weeks_before + weeks_after):
            done = min(1.0, max(0, w - weeks_before + 1) / rise_weeks)
            c = int(round(3 + 1.5 * done + (0.4 if w % 3 == 0 else 0.0)))
            days.append(
                DayAggregate(
                    START + timedelta(days=7 * w + 6),
                    connection=(c,),
                    understanding=(max(1, c - shift if w % 2 else c),),
                    weekly_check_ins=1,
                )
            )
        out.append(days)
    return out[0], out[1]


def test_check_ins_rising_over_twelve_weeks_are_found_as_a_rise_compared_from_where_it_is_half_done():
    a, b = rising_check_ins(8, 12, 10)
    as_of = START + timedelta(days=7 * 16 - 1)  # 8 weeks into the rise
    found = stronger_bond(a, b, as_of)
    assert [(d.type, d.level) for d in found] == [(STRONGER_BOND, 1)]
    e = found[0].evidence
    assert e["rise_weeks"] == 12
    # the after period starts where the fitted rise is half done: 6 weeks after the before period ends
    assert date.fromisoformat(e["after"]["start"]) - date.fromisoformat(
        e["before"]["end"]
    ) >= timedelta(days=36)
    assert e["after"]["mean"] - e["before"]["mean"] >= 0.5 and e["common_language_effect"] >= 0.7
    assert e["statistic"] >= e["threshold"]
    no_breakdown(e)
    # the same rise four weeks into it: not yet, whatever its shape
    assert all(stronger_bond(a, b, START + timedelta(days=7 * 8 + i)) == [] for i in range(28))


@pytest.mark.parametrize(
    "rule, couple", [(better_communication, talks), (stronger_bond, check_ins)]
)
def test_a_rise_holds_at_its_threshold_and_not_just_below_it(monkeypatch, rule, couple):
    a, b = couple(8, 6)
    as_of = last_day(a, b)
    e = rule(a, b, as_of)[0].evidence
    looks = [e] + (
        [e["confirmation"]] if "confirmation" in e else []
    )  # stronger_bond has no confirming look
    margin = min(x["statistic"] - x["threshold"] for x in looks)
    base = couple_scan.CoupleScan.base

    def shifted(by):
        return lambda self, target=couple_scan.TARGET: base(self, target) + by

    monkeypatch.setattr(couple_scan.CoupleScan, "base", shifted(margin - 2e-3))
    assert rule(a, b, as_of)
    monkeypatch.setattr(couple_scan.CoupleScan, "base", shifted(margin + 2e-3))
    assert rule(a, b, as_of) == []


def test_a_rise_too_small_to_matter_is_never_celebrated_however_long_it_lasts():
    slightly = [3, 3, 3, 3, 4, 3, 4]  # a rise of about 0.3
    a, b = talks(8, 20, a_after=slightly, b_after=slightly)
    for i in range(60, 28 * 7, 3):
        assert better_communication(a, b, START + timedelta(days=i)) == []


def test_a_couple_whose_one_partner_rates_lower_is_not_celebrated_whatever_the_other_says():
    lower = [3, 2, 3, 3, 2, 4, 3]  # partner b: a little lower than before
    much_higher = [5, 5, 4, 5, 5, 5, 5]
    a, b = talks(8, 8, a_after=much_higher, b_after=lower)
    for i in range(60, 16 * 7, 3):
        assert better_communication(a, b, START + timedelta(days=i)) == []


def test_a_change_too_fresh_to_have_lasted_is_not_celebrated_yet():
    a, b = talks(8, 1)
    assert better_communication(a, b, last_day(a, b)) == []
    assert better_communication([], [], START) == []


@pytest.mark.parametrize(
    "rule, couple", [(better_communication, talks), (stronger_bond, check_ins)]
)
def test_the_same_days_in_any_order_and_either_partner_first_give_the_same_detections(rule, couple):
    a, b = couple(8, 6)
    as_of = last_day(a, b) - timedelta(days=2)
    expected = rule(a, b, as_of)  # the days after as_of are ignored
    assert expected and expected != rule(a, b, last_day(a, b) - timedelta(days=40))
    shuffled_a, shuffled_b = a[:], b[:]
    random.Random(5).shuffle(shuffled_a)
    random.Random(6).shuffle(shuffled_b)
    assert rule(shuffled_a, shuffled_b, as_of) == expected
    assert rule(list(reversed(a)), list(reversed(b)), as_of) == expected
    assert rule(b, a, as_of) == expected


@pytest.mark.parametrize("kind", couple_looks.RULES)
def test_the_harness_fires_on_the_same_day_as_the_rule_looked_at_every_day(kind):
    rule = couple_looks.RULES[kind]
    group = couple_looks.couples(77, couple_looks.IMPROVING, 30)
    checked = 0
    for c, m in zip(group, couple_looks.rule_margins(group, rule)):
        first = m.first(rule.base())
        if first is None:
            continue
        a, b = c.shared_histories
        assert rule.detect(a, b, c.day(first))
        assert not rule.detect(a, b, c.day(first - 1))
        checked += 1
    assert checked >= 5


# --- the oracle: told the true change, it fits the known shape with the rule's statistic ---


def test_the_scan_and_the_oracle_give_the_same_statistic_for_a_rise_starting_at_a_block_boundary():
    rule = couple_looks.RULES[STRONGER_BOND]
    k_of = (
        rule.settings.max_weeks - 1
    )  # the scan's columns: k = 1.. weeks after the start, for each length
    compared = 0
    for c in couple_looks.couples(31, couple_looks.IMPROVING, 4):
        p, _ = couple_looks._prefix(rule, c)
        looks_ = np.arange(70, c.n_days, 11)
        z = weekly_means.scan(p, looks_, rule.settings).z
        for i, weeks in enumerate(rule.settings.ramp_weeks):
            for k in (3, 7, 12):
                for row, look in enumerate(looks_):
                    oracle = weekly_means.ramp_at(
                        p, np.array([look]), look - 7 * k + 1, weeks, rule.settings
                    ).z[0]
                    assert (
                        z[row, i * k_of + k - 1] == pytest.approx(oracle)
                        or z[row, i * k_of + k - 1] == oracle
                    )
                    compared += np.isfinite(oracle)
    assert compared >= 20


def test_the_oracle_is_told_the_true_rise_and_null_couples_one_drawn_as_the_improvers_are():
    improving = couple_looks.couples(31, couple_looks.IMPROVING, 3)
    for c in improving:
        assert couple_looks.true_change(c, 31, STRONGER_BOND) == (
            c.change_day,
            c.change["bond_ramp_days"] // 7,
        )
        assert couple_looks.true_change(c, 31, BETTER_COMMUNICATION) == (c.change_day, 0)  # a step
    drawn = [
        couple_looks.true_change(c, 31, STRONGER_BOND)
        for c in couple_looks.couples(31, "steady_couples", 40)
    ]
    assert {w for _, w in drawn} <= set(range(4, 13)) and len({w for _, w in drawn}) >= 5
    assert [d for d, _ in drawn] == [
        couple_looks.pseudo_change_day(31, "steady_couples", i) for i in range(40)
    ]
    assert all(cohorts.CHANGE_DAYS[0] <= d <= cohorts.CHANGE_DAYS[1] for d, _ in drawn)


# --- what the simulated couples share ---


def test_simulated_couples_share_a_part_of_their_entries_and_nothing_else_of_them_changed():
    for c in couple_looks.couples(11, "steady_couples", 20):
        for share, days, shared in zip(c.sharing, (c.a, c.b), (c.a_shared, c.b_shared)):
            assert 0.6 <= share <= 1.0
            written = {d.day: d for d in days}
            assert all(
                d.day in written and set(d.communication) <= set(written[d.day].communication)
                for d in shared
            )
            rated = sum(1 for d in days if d.communication)
            kept = sum(1 for d in shared if d.communication)
            assert abs(kept / rated - share) < 0.15
    # the couples of the usual length are those the simulator made before it drew what they share
    pinned = {
        (7, "improving_couples", 3): "3f834975ee6bb74f",
        (9101, "steady_couples", 11): "5ebb9dc75abd0e8b",
        (2026, "gappy_couples", 5): "c8e4cafabba13160",
    }
    for (seed, name, index), digest in pinned.items():
        x = cohorts.simulate_couple(seed, name, index)
        text = repr((x.a, x.b, x.partners, x.shared, x.change_day, x.change))
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == digest


def test_a_null_couple_over_two_years_is_seeded_apart_and_improving_couples_keep_their_length():
    long = cohorts.simulate_couple(3, "steady_couples", 0, 730)
    assert long.n_days == 730 and max(d.day for d in long.a) > cohorts.START + timedelta(days=600)
    assert long.a[:20] != cohorts.simulate_couple(3, "steady_couples", 0).a[:20]
    with pytest.raises(ValueError):
        cohorts.simulate_couple(3, "improving_couples", 0, 730)


# --- a CI-sized calibration check (seeds apart from the calibration's and the report's) ---

CI_SEED, CI_COUPLES = 4242, 300


@pytest.fixture(scope="module")
def ci_null() -> dict:
    return {c: couple_looks.couples(CI_SEED, c, CI_COUPLES) for c in couple_looks.NULL_COUPLES}


@pytest.fixture(scope="module")
def ci_found() -> dict:
    """Each rule's improving couples found (the seed's 300), once for the tests below."""
    improving = couple_looks.couples(CI_SEED, couple_looks.IMPROVING, CI_COUPLES)
    return {
        kind: looks.found(couple_looks.rule_margins(improving, rule), rule.base())
        for kind, rule in couple_looks.RULES.items()
    }


@pytest.mark.parametrize("kind", couple_looks.RULES)
def test_null_couples_stay_within_the_lifetime_false_rate(ci_null, kind):
    rule = couple_looks.RULES[kind]
    for group in ci_null.values():
        false = sum(m.peak >= rule.base() for m in couple_looks.rule_margins(group, rule))
        # 1% of 300 is 3; 8 or more has a chance of 0.4% at a true 1% (binomial), so 7 at most
        assert false <= 7


# held-out figures (seed 2026, 500 improving couples, 1% false): within 8 weeks and by the end
MEASURED = {BETTER_COMMUNICATION: (0.622, 0.696), STRONGER_BOND: (0.118, 0.228)}


def _sd(rate: float) -> float:
    return float(np.sqrt(rate * (1 - rate) / CI_COUPLES))


@pytest.mark.parametrize("kind", couple_looks.RULES)
def test_improving_couples_are_found_at_the_measured_rate(ci_found, kind):
    found = ci_found[kind]
    within, by_end = MEASURED[kind]
    # within 3 binomial sd of the measured rate at 300 couples (at most 8.7 points)
    for rate, measured in ((found["within_8_weeks"], within), (found["by_end"], by_end)):
        assert abs(rate - measured) <= 3 * _sd(measured)
    assert found["before_change"] <= 0.01


def test_better_communication_finds_the_goals_share_within_8_weeks(ci_found):
    # goal: at least 60% of improving couples within 8 weeks of the change, within 3 binomial sd at 300 couples
    assert ci_found[BETTER_COMMUNICATION]["within_8_weeks"] >= 0.60 - 3 * _sd(0.60)


@pytest.mark.xfail(
    strict=True,
    reason=(
        "Goal: 80% of improving couples found by the end of their history. Held out (seed 2026, 500 couples): "
        "69.6%, and the oracle told the change day 76.2%. At the end of their histories, at the true change day, "
        "84.2% of improving couples (seed 9101, 1,000) have a split the rule may take at all: the effect-size "
        "floor (a common-language effect of 0.7) shuts out 6.5%, the rise of half a point 6.2% more "
        "(docs/detection.md)."
    ),
)
def test_better_communication_finds_80_percent_by_the_end(ci_found):
    assert ci_found[BETTER_COMMUNICATION]["by_end"] >= 0.80 - 3 * _sd(0.80)
