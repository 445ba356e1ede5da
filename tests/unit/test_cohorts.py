"""The synthetic cohorts (pure, seeded) and the cohort study of the milestone detectors.

The study looks at every partner every day, from the earliest day each rule can
hold to the end of their 120-180 days, as the service does, and runs a
single-look textbook test on the same partners for comparison. The seed and
size were fixed before the first run; the figures in the xfail reasons are
this seed's, with the large-sample ones (1000 partners a cohort, two seeds)
beside them.
"""

from __future__ import annotations

import json
import math
import statistics
from datetime import timedelta

import pytest
from scipy import stats

from services.milestones.rules import (
    BETTER_COMMUNICATION,
    CALMER_EPISODES,
    FEWER_ANXIOUS_EPISODES,
    MORE_INDEPENDENCE,
    STRONGER_BOND,
    DayAggregate,
    History,
    detect_couple_milestones,
)
from simulation import agreement, cohorts
from simulation.cohorts import (
    COHORTS,
    COUPLE_COHORTS,
    DETECTION_WEEKS,
    GAPPY_PATTERNS,
    START,
    cohort,
    couple_cohort,
    detection_report,
    simulate_couple,
    simulate_partner,
)

SEED = 20261005
N = 50  # partners per cohort: about 15 s on one core


@pytest.fixture(scope="module")
def report() -> dict:
    return detection_report(SEED, N)


# --- the generator ---


def test_a_partner_is_a_pure_function_of_seed_cohort_and_index():
    a = simulate_partner(7, "improvers", 3)
    assert simulate_partner(7, "improvers", 3) == a
    assert cohort(7, "improvers", 5)[3] == a  # whatever else is generated
    assert simulate_partner(8, "improvers", 3) != a
    with pytest.raises(ValueError):
        simulate_partner(7, "nobody", 0)


@pytest.mark.parametrize("name", COHORTS)
def test_partners_are_within_the_simulators_ranges(name):
    for p in cohort(11, name, 30):
        assert 120 <= p.n_days <= 180 and 3 <= p.weekly_rate <= 10 and 0.5 <= p.logging <= 0.9
        assert p.days[0].day == START and all(d.logged for d in p.days)
        assert (p.days[-1].day - START).days < p.n_days
        History(p.days)  # one aggregate a day, consistent
        if name in ("improvers", "worsening"):
            assert 28 <= p.change_day <= 69
            assert -0.75 <= p.change <= -0.5 if name == "improvers" else 0.4 <= p.change <= 1.0
        else:
            assert p.change is None
        assert (p.pattern in GAPPY_PATTERNS) == (name == "gappy")


def test_episodes_are_over_dispersed_and_bad_weeks_cluster():
    # per logged day, the variance of the episode count is above its mean (Poisson would be equal), and
    # weekly episode rates of neighbouring weeks go together
    ratios, pairs = [], []
    for p in cohort(12, "steady", 60):
        if p.noise["kind"] != "overdispersed":
            continue
        counts = [d.episodes for d in p.days]
        ratios.append(statistics.variance(counts) / statistics.fmean(counts))
        weeks: dict[int, list[int]] = {}
        for d in p.days:
            weeks.setdefault((d.day - START).days // 7, []).append(d.episodes)
        rates = [statistics.fmean(weeks[w]) for w in sorted(weeks)]
        pairs.extend(zip(rates, rates[1:]))
    assert statistics.median(ratios) > 1.3
    assert statistics.correlation([a for a, _ in pairs], [b for _, b in pairs]) > 0.1


def test_gappy_partners_have_their_patterns():
    for p in cohort(13, "gappy", 30):
        logged = {(d.day - START).days for d in p.days}
        if p.pattern == "gaps":  # at least one run of 7 days or more without logging
            runs = [b - a - 1 for a, b in zip(sorted(logged), sorted(logged)[1:])]
            assert max(runs + [p.n_days - 1 - max(logged)]) >= 7
        elif (
            p.pattern == "low_logging_month"
        ):  # some 30 days logged well below the partner's usual share
            assert (
                min(sum(1 for i in range(s, s + 30) if i in logged) for s in range(p.n_days - 29))
                <= 0.3 * 30 + 6
            )
        else:
            assert 0.4 <= p.noise["shy_factor"] <= 0.8 and 28 <= p.change_day <= 69


def test_improvers_episodes_fall_and_worsening_partners_rise():
    def before_after(p):
        before = [d.episodes for d in p.days if (d.day - START).days < p.change_day]
        after = [d.episodes for d in p.days if (d.day - START).days >= p.change_day]
        return statistics.fmean(before), statistics.fmean(after)

    improvers = [before_after(p) for p in cohort(14, "improvers", 40)]
    worsening = [before_after(p) for p in cohort(14, "worsening", 40)]
    assert sum(a < b for b, a in improvers) >= 36
    assert sum(a > b for b, a in worsening) >= 32


# --- the cohort study ---


def test_the_report_is_plain_json_and_deterministic(report):
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert set(report["cohorts"]) == set(COHORTS)
    assert report["cohorts"]["improvers"]["partners"] == N
    small = detection_report(SEED, 2)
    assert small == detection_report(SEED, 2)


def false_detections(report: dict) -> dict[str, int]:
    return {
        name: report["cohorts"][name]["false_detections"]["any"]["partners"]
        for name in ("steady", "worsening", "gappy")
    }


def test_false_celebrations_of_steady_or_worsening_partners_stay_within_the_rules_bounds(report):
    # any milestone of any partner type: fewer anxious episodes (calibrated to at most 1% of null partners
    # over their whole history of daily looks), calmer episodes and more independence (0.5% each): at most
    # 2% of them, so a count this sample would show at 2% with a chance above 0.001
    found = false_detections(report)
    k = found["steady"] + found["worsening"]
    assert stats.binomtest(k, 2 * N, 0.02, alternative="greater").pvalue > 0.001, found


def test_daily_looks_celebrate_falsely_less_often_than_one_textbook_look(report):
    # the textbook test (first 28 days against the last 28, binomial on episode counts, once) takes
    # over-dispersed counts for Poisson ones; the design looks every day and still errs less
    textbook = sum(
        report["cohorts"][n]["textbook_single_look"]["false_detections"]
        for n in ("steady", "worsening", "gappy")
    )
    ours = sum(
        report["cohorts"][n]["false_detections"][FEWER_ANXIOUS_EPISODES]["partners"]
        for n in ("steady", "worsening", "gappy")
    )
    assert ours < textbook


def test_improvers_are_never_celebrated_before_their_change_and_never_beyond_the_ideal(report):
    imp = report["cohorts"]["improvers"]
    assert imp["fewer_anxious_episodes"]["detected_before_the_change"] == 0
    assert imp["false_detections"]["any"]["partners"] == 0
    assert (
        imp["fewer_anxious_episodes"]["found_within_8_weeks"]
        <= imp["ideal_upper_bound"]["found_within_8_weeks"]
    )
    assert imp["fewer_anxious_episodes"]["median_weeks_to_detection"] <= DETECTION_WEEKS


def test_finding_90_percent_of_improvers_is_beyond_any_test_at_the_rules_alpha(report):
    # the ideal test knows the change day, pools every day before it against every day after it, takes
    # over-dispersed counts for Poisson ones (in its favour), looks every day without correction and asks
    # for no persistence: even it finds fewer than 90% within 8 weeks
    assert report["cohorts"]["improvers"]["ideal_upper_bound"]["rate"] < 0.9


# The change-point rule's own calibration (a null cohort within its bound, improvers found at the goal's
# rate) is checked at CI size in tests/unit/test_fewer_anxious_episodes_rule.py.


def test_the_report_renders_as_a_markdown_table(report):
    table = cohorts.report_table(report)
    for name in COHORTS:
        assert f"| {name}" in table or name in table
    assert "ideal upper bound" in table and "textbook single look" in table


def _sharp(kind: str, change: int, days: int = 120) -> History:
    """Every day logged; from ``change`` on, the rule's measure jumps as far as it can."""
    after = [i >= change for i in range(days)]
    if kind == FEWER_ANXIOUS_EPISODES:
        return History(
            DayAggregate(
                START + timedelta(days=i), episodes=0 if a else 8, intensities=() if a else (5,) * 8
            )
            for i, a in enumerate(after)
        )
    if kind == CALMER_EPISODES:
        return History(
            DayAggregate(START + timedelta(days=i), episodes=3, intensities=(1 if a else 9,) * 3)
            for i, a in enumerate(after)
        )
    return History(
        DayAggregate(START + timedelta(days=i), activities=5 if a else int(i % 7 == 0))
        for i, a in enumerate(after)
    )


@pytest.mark.parametrize("kind", [FEWER_ANXIOUS_EPISODES, CALMER_EPISODES, MORE_INDEPENDENCE])
def test_each_rule_holds_first_on_the_day_its_looks_start(kind):
    # the study's looks start where the rule can first hold: the sharpest change at the earliest day the rule's
    # least data allows is found on that day, looked at from day 0; nothing earlier
    change = 21 if kind == FEWER_ANXIOUS_EPISODES else 28  # 21 logged days before; a baseline of 28
    h = _sharp(kind, change)
    rule = cohorts.PARTNER_DETECTORS[kind]
    assert (
        next(i for i in range(120) if rule(h, START + timedelta(days=i)))
        == cohorts.FIRST_LOOKS[kind]
    )


def test_the_rules_milestones_under_daily_looks_begin_as_the_first_detections():
    # looked at from the first logged day (as the service), every level; the first level is the study's first
    # detection, looked at from the rules' first looks
    for p in [*cohort(SEED, "improvers", 6), simulate_partner(SEED, "steady", 0)]:
        found = agreement.rule_milestones(p.history, p.day(p.n_days - 1))
        first = cohorts.first_detections(p)
        assert {k: p.day(v) for k, v in first.items() if v is not None} == {
            t: d for (t, level), d in found.items() if level == 1
        }
        for (t, level), d in found.items():
            assert level == 1 or found[t, level - 1] <= d
    assert any(
        found
        for p in cohort(SEED, "improvers", 6)
        for found in [agreement.rule_milestones(p.history, p.day(p.n_days - 1))]
    )


def test_the_service_and_the_rules_compared_say_why_they_differ():
    d = START
    assert (
        agreement.compare({("fewer_anxious_episodes", 1): d}, {("fewer_anxious_episodes", 1): d})
        == []
    )
    got = agreement.compare(
        {("fewer_anxious_episodes", 1): d, ("calmer_episodes", 1): d},
        {("fewer_anxious_episodes", 1): d + timedelta(days=1), ("fewer_anxious_episodes", 2): d},
    )
    assert [(x["type"], x["level"], x["reason"]) for x in got] == [
        ("calmer_episodes", 1, "only the service"),
        ("fewer_anxious_episodes", 1, "another day"),
        ("fewer_anxious_episodes", 2, "only the rules"),
    ]
    items = [
        {"type": "fewer_anxious_episodes", "level": 1, "as_of": "2026-01-05", "partner_id": "a"},
        {"type": "rituals_kept", "level": 1, "as_of": "2026-01-05", "partner_id": None},
    ]
    assert agreement.service_milestones(items) == {("fewer_anxious_episodes", 1): d}


def test_the_first_detection_day_and_a_textbook_look_on_one_partner():
    p = simulate_partner(SEED, "improvers", 0)
    first = cohorts.first_detections(p, (FEWER_ANXIOUS_EPISODES,))
    assert set(first) == {FEWER_ANXIOUS_EPISODES}
    look = cohorts.textbook_single_look(p)
    assert look is not None and look["look_day"] == p.n_days - 1
    assert cohorts.textbook_single_look(p, 40) is None  # the windows would overlap


# --- late improvers (the fall starts in weeks 16-26) ---


def test_late_improvers_are_seeded_apart_and_leave_every_existing_partner_as_it_was():
    assert "late_improvers" in cohorts.EXTRA_COHORTS and "late_improvers" not in COHORTS
    assert simulate_partner(7, "late_improvers", 3) == simulate_partner(7, "late_improvers", 3)
    assert cohort(7, "late_improvers", 5)[3] == simulate_partner(7, "late_improvers", 3)
    # the existing cohorts keep their seeds (position in COHORTS): partner 1 of each, as generated before
    # late_improvers was added (checked equal, day by day, on 480 partners of seeds 7 and 20261005)
    before = {
        "steady": (164, None, None, 8.41, 99),
        "worsening": (139, 37, 0.533, 5.899, 113),
        "gappy": (122, None, None, 3.651, 71),
        "improvers": (148, 50, -0.736, 6.287, 123),
    }
    for name, fingerprint in before.items():
        p = simulate_partner(SEED, name, 1)
        assert (p.n_days, p.change_day, p.change, p.weekly_rate, len(p.days)) == fingerprint


def test_two_year_null_histories_are_seeded_apart_and_leave_every_partner_of_the_usual_length_as_it_was():
    before = {
        "steady": (164, None, None, 8.41, 99),
        "worsening": (139, 37, 0.533, 5.899, 113),
        "gappy": (122, None, None, 3.651, 71),
    }
    for name, fingerprint in before.items():
        long = simulate_partner(SEED, name, 1, history_days=730)
        assert long.n_days == 730 and (long.days[-1].day - START).days < 730
        assert long == simulate_partner(SEED, name, 1, history_days=730)
        assert long.weekly_rate != fingerprint[3]  # its own draw, not the short partner stretched
        p = simulate_partner(SEED, name, 1)
        assert (p.n_days, p.change_day, p.change, p.weekly_rate, len(p.days)) == fingerprint
    assert cohort(SEED, "gappy", 3, history_days=730)[2] == simulate_partner(
        SEED, "gappy", 2, history_days=730
    )
    with pytest.raises(ValueError):
        simulate_partner(SEED, "improvers", 0, history_days=730)


def test_late_improvers_are_within_their_ranges():
    for p in cohort(11, "late_improvers", 30):
        assert 105 <= p.change_day <= 181 and -0.75 <= p.change <= -0.5
        assert (
            p.n_days == p.change_day + 7 * 16 + 1
        )  # 16 weeks of follow-up after the change, inclusive
        assert 3 <= p.weekly_rate <= 10 and 0.5 <= p.logging <= 0.9 and p.pattern is None
        assert p.days[0].day == START and (p.days[-1].day - START).days < p.n_days
        History(p.days)
        before = [d.episodes for d in p.days if (d.day - START).days < p.change_day]
        assert len(before) >= 14


@pytest.fixture(scope="module")
def late_report() -> dict:
    return cohorts.late_improver_report(SEED, N)


def test_the_late_improver_report_is_plain_json_and_within_the_ideal(late_report):
    assert json.loads(json.dumps(late_report, allow_nan=False)) == late_report
    fe = late_report["fewer_anxious_episodes"]
    assert fe["found_within_8_weeks"] <= fe["found_within_16_weeks"] <= N
    assert fe["found_within_8_weeks"] <= late_report["ideal_upper_bound"]["found_within_8_weeks"]
    with pytest.raises(ValueError):
        cohorts.late_improver_report(SEED, 0)
    with pytest.raises(ValueError):
        cohorts.late_improver_report(SEED, 1, "steady")


def test_late_improvers_are_found_about_as_often_as_early_ones(report, late_report):
    early = report["cohorts"]["improvers"]["fewer_anxious_episodes"]["found_within_8_weeks"]
    late = late_report["fewer_anxious_episodes"]["found_within_8_weeks"]
    assert late >= 0.5 * early


# --- couples: better_communication and stronger_bond ---

COUPLE_N = 12  # couples per couple cohort: about 15 s on one core


@pytest.fixture(scope="module")
def couple_report() -> dict:
    return cohorts.couple_detection_report(SEED, COUPLE_N)


def expected_rating(mean: float, sd: float) -> float:
    """The mean of a latent normal rating rounded to a whole number and clipped to 1-5."""
    return 1 + sum(1 - statistics.NormalDist(mean, sd).cdf(k + 0.5) for k in range(1, 5))


def communication(days, lo: int, hi: int) -> float:
    """A partner's mean daily communication rating on days lo..hi-1."""
    return statistics.fmean(
        statistics.fmean(d.communication)
        for d in days
        if d.communication and lo <= (d.day - START).days < hi
    )


def check_in_ratings(couple, lo: int, hi: int) -> list[int]:
    return [
        v
        for days in (couple.a, couple.b)
        for d in days
        if lo <= (d.day - START).days < hi
        for v in d.connection + d.understanding
    ]


def test_a_couple_is_a_pure_function_of_seed_cohort_and_index():
    c = simulate_couple(7, "improving_couples", 3)
    assert simulate_couple(7, "improving_couples", 3) == c
    assert couple_cohort(7, "improving_couples", 5)[3] == c  # whatever else is generated
    assert simulate_couple(8, "improving_couples", 3) != c
    assert simulate_couple(7, "steady_couples", 3) != c
    with pytest.raises(ValueError):
        simulate_couple(7, "improvers", 0)  # a partner cohort, not a couple one


@pytest.mark.parametrize("name", COUPLE_COHORTS)
def test_couples_are_within_the_simulators_ranges(name):
    for c in couple_cohort(11, name, 30):
        s = c.shared
        assert 120 <= c.n_days <= 180 and 2.3 <= s["communication_level"] <= 4.0
        assert 0.1 <= s["week_sd"] <= 0.4 and 0 <= s["week_correlation"] <= 0.6
        assert 0.6 <= s["check_in_weeks"] <= 0.95 and 0.25 <= s["conflicts_per_week"] <= 1.5
        assert 0.3 <= s["repair_share"] <= 0.7
        for p, days in zip(c.partners, (c.a, c.b)):
            assert 0.5 <= p["logging"] <= 0.9 and 0.5 <= p["day_sd"] <= 1.0
            assert abs(p["communication_level"] - s["communication_level"]) <= 0.401
            assert (
                days[0].day == START and days[0].communication
            )  # day 0: both partners' first logged day
            assert (days[-1].day - START).days < c.n_days and all(d.logged for d in days)
            History(days)  # one aggregate a day, consistent (ratings 1-5, repaired <= conflicts)
            if (
                name != "gappy_couples"
            ):  # a partner rates communication on about their own share of days
                rated = sum(1 for d in days if d.communication) / c.n_days
                assert abs(rated - p["logging"]) < 0.15
        if name == "improving_couples":
            ch = c.change
            assert 28 <= c.change_day <= 69 and 0.7 <= ch["communication_mean"] <= 1.5
            assert all(0.7 * 0.75 / 1.25 <= r <= 1.5 * 1.25 / 1.0 for r in ch["communication"])
            assert abs(statistics.fmean(ch["communication"]) - ch["communication_mean"]) <= 0.001
            assert 0 <= ch["communication_ramp_days"] <= 21 and 28 <= ch["bond_ramp_days"] <= 84
            assert (
                0.5 <= ch["bond"] <= 1.2
                and 0.1 <= ch["repair"] <= 0.3
                and -0.3 <= ch["conflicts"] <= 0
            )
        elif name == "worsening_couples":
            ch = c.change
            assert 28 <= c.change_day <= 69 and -1.0 <= ch["communication_mean"] <= -0.4
            assert (
                -0.9 <= ch["bond"] <= -0.3
                and -0.2 <= ch["repair"] <= 0
                and 0 <= ch["conflicts"] <= 0.5
            )
        else:
            assert c.change is None
        assert (c.pattern in GAPPY_PATTERNS) == (name == "gappy_couples")


def test_improving_couples_communication_rises_by_the_drawn_amount_and_steady_couples_does_not():
    # after the change has fully arrived, each partner's mean rating is higher by what the drawn rise makes
    # of a rounded 1-5 rating with their own level and spread (the ceiling takes some of it), give or take
    # the noise of a few weeks of days and drifting weeks
    misses = []
    for c in couple_cohort(14, "improving_couples", 40):
        after = c.change_day + c.change["communication_ramp_days"]
        observed, expected = [], []
        for p, days, rise in zip(c.partners, (c.a, c.b), c.change["communication"]):
            sd = math.hypot(p["day_sd"], c.shared["week_sd"])
            observed.append(
                communication(days, after, c.n_days) - communication(days, 0, c.change_day)
            )
            expected.append(
                expected_rating(p["communication_level"] + rise, sd)
                - expected_rating(p["communication_level"], sd)
            )
        rise, drawn = statistics.fmean(observed), statistics.fmean(expected)
        assert rise > 0 and drawn <= c.change["communication_mean"]
        misses.append(rise - drawn)
    assert sum(abs(m) <= 0.5 for m in misses) >= 36
    assert abs(statistics.fmean(misses)) < 0.1 and statistics.median(abs(m) for m in misses) < 0.25
    steady = [
        statistics.fmean(
            communication(days, 49, c.n_days) - communication(days, 0, 49) for days in (c.a, c.b)
        )
        for c in couple_cohort(14, "steady_couples", 40)
    ]
    assert (
        sum(abs(s) <= 0.5 for s in steady) >= 36 and statistics.median(abs(s) for s in steady) < 0.2
    )
    worsening = [
        statistics.fmean(
            communication(days, c.change_day + 28, c.n_days) - communication(days, 0, c.change_day)
            for days in (c.a, c.b)
        )
        for c in couple_cohort(14, "worsening_couples", 40)
    ]
    assert sum(w < 0 for w in worsening) >= 34


def test_improving_couples_check_ins_rise_and_conflicts_are_repaired_sooner():
    def repair_share(couples, later: bool) -> float:
        conflicts = repaired = 0
        for c in couples:
            start = c.change_day if c.change_day is not None else 49
            ramp_half = c.change["bond_ramp_days"] // 2 if c.change else 0
            lo, hi = (start + ramp_half, c.n_days) if later else (0, start)
            days = [d for h in (c.a, c.b) for d in h if lo <= (d.day - START).days < hi]
            conflicts += sum(d.conflicts for d in days)
            repaired += sum(d.conflicts_repaired_24h for d in days)
        return repaired / conflicts

    improving = couple_cohort(14, "improving_couples", 40)
    rises = [
        statistics.fmean(
            check_in_ratings(c, c.change_day + c.change["bond_ramp_days"] // 2, c.n_days)
        )
        - statistics.fmean(check_in_ratings(c, 0, c.change_day))
        for c in improving
    ]
    assert sum(r > 0 for r in rises) >= 36 and statistics.median(rises) > 0.4
    steady = couple_cohort(14, "steady_couples", 40)
    still = [
        statistics.fmean(check_in_ratings(c, 49, c.n_days))
        - statistics.fmean(check_in_ratings(c, 0, 49))
        for c in steady
    ]
    assert abs(statistics.median(still)) < 0.2
    assert repair_share(improving, True) > repair_share(improving, False) + 0.1
    assert abs(repair_share(steady, True) - repair_share(steady, False)) < 0.1


def test_gappy_couples_have_their_patterns():
    shy_rises = []
    for c in couple_cohort(13, "gappy_couples", 45):
        if c.pattern == "gaps":  # nobody who stopped logged anything in a gap
            assert 1 <= len(c.shared["gaps"]) <= 3
            for start, length, who in c.shared["gaps"]:
                assert 7 <= length <= 21
                for k in who:
                    assert not [
                        d for d in (c.a, c.b)[k] if start <= (d.day - START).days < start + length
                    ]
        elif c.pattern == "low_logging_month":  # one partner's 30 days logged near 30%
            k, start = c.shared["low_logging_month"]
            rated = sum(
                1
                for d in (c.a, c.b)[k]
                if d.communication and start <= (d.day - START).days < start + 30
            )
            assert rated <= 0.3 * 30 + 8
        else:  # fewer bad days recorded from the change on: the recorded ratings look better than the days were
            assert 28 <= c.change_day <= 69 and all(
                0.4 <= p["shy_factor"] <= 0.8 for p in c.partners
            )
            shy_rises.append(
                statistics.fmean(
                    communication(days, c.change_day, c.n_days)
                    - communication(days, 0, c.change_day)
                    for days in (c.a, c.b)
                )
            )
    assert len(shy_rises) == 15 and statistics.fmean(shy_rises) > 0.05


# --- couples: the cohort study ---


def test_the_couple_report_is_plain_json_and_deterministic(couple_report):
    assert json.loads(json.dumps(couple_report, allow_nan=False)) == couple_report
    assert set(couple_report["cohorts"]) == set(COUPLE_COHORTS)
    assert couple_report["cohorts"]["improving_couples"]["couples"] == COUPLE_N
    assert cohorts.couple_detection_report(SEED, 1) == cohorts.couple_detection_report(SEED, 1)
    with pytest.raises(ValueError):
        cohorts.couple_detection_report(SEED, 0)


def test_the_first_couple_detection_is_the_first_day_the_service_would_find_it():
    c = simulate_couple(SEED, "improving_couples", 0)
    first = cohorts.couple_first_detections(c)
    assert set(first) == {BETTER_COMMUNICATION, STRONGER_BOND}
    a, b = c.shared_histories  # the couple rules read what the couple shares, as in the service
    for kind, day in first.items():
        if day is None:
            continue
        assert kind in {d.type for d in detect_couple_milestones(a, b, c.day(day))}
        assert all(
            kind not in {d.type for d in detect_couple_milestones(a, b, c.day(i))}
            for i in range(cohorts.COUPLE_FIRST_LOOK_DAY - 7, day)
        )


def test_the_couple_textbook_tests_look_once():
    c = simulate_couple(SEED, "improving_couples", 0)
    look = cohorts.textbook_communication(c)
    assert look is not None and look["look_day"] == c.n_days - 1
    assert cohorts.textbook_communication(c, 50) is None  # the windows would overlap
    bond = cohorts.textbook_bond(c)
    assert bond is not None and bond["weeks"] >= 8 and bond["look_day"] == c.n_days - 1
    assert cohorts.textbook_bond(c, 30) is None  # fewer than 8 weeks


def test_the_couple_report_renders_as_markdown_tables(couple_report):
    table = cohorts.couple_report_table(couple_report)
    for name in COUPLE_COHORTS:
        assert name.replace("_couples", "") in table
    assert (
        BETTER_COMMUNICATION in table and STRONGER_BOND in table and "textbook single look" in table
    )


# the couple scans measured on held-out seed 2026 (docs/detection.md, "Couple milestones": 2,000 null couples a
# cohort, 500 improving couples): (couples found or falsely celebrated, of how many)
MEASURED = {
    ("improving_couples", BETTER_COMMUNICATION): (311, 500),  # within 8 weeks of the change: 62.2%
    ("improving_couples", STRONGER_BOND): (59, 500),  # 11.8%
    ("steady_couples", BETTER_COMMUNICATION): (24, 2000),  # false: 1.2%
    ("steady_couples", STRONGER_BOND): (17, 2000),  # 0.85%
}


def test_the_ci_sample_agrees_with_the_measured_rates(couple_report):
    # a check that the detectors and the simulator still behave as measured, not a goal: each count of the
    # CI-sized sample is within what its measured rate makes likely (two-sided binomial p > 0.001)
    c = couple_report["cohorts"]
    seen = {
        ("improving_couples", BETTER_COMMUNICATION): c["improving_couples"][BETTER_COMMUNICATION][
            "found_within_8_weeks"
        ],
        ("improving_couples", STRONGER_BOND): c["improving_couples"][STRONGER_BOND][
            "found_within_8_weeks"
        ],
        **{
            ("steady_couples", kind): c["steady_couples"]["false_detections"][kind]["couples"]
            for kind in (BETTER_COMMUNICATION, STRONGER_BOND)
        },
    }
    for key, k in seen.items():
        count, of = MEASURED[key]
        assert stats.binomtest(k, COUPLE_N, count / of).pvalue > 0.001, (key, k)


# the couple scans' goals (false at most 1%, better_communication found within 8 weeks and by the end) are
# checked at a CI size in test_couple_scan_rules.py


# --- the milestones no cohort changes, looked at every day (a CI-sized check of their lifetime false rate) ---

STEADY_RULES_SEED, STEADY_RULES_PARTNERS = 4243, 300


def test_calmer_episodes_and_more_independence_stay_within_half_a_percent_of_false_partners():
    from simulation import steady_rules

    rates = steady_rules.false_rates(STEADY_RULES_SEED, STEADY_RULES_PARTNERS)
    # held out (seed 2026, 2,000 a cohort): at most 0.25% (0.4% over two years). At a true 0.5% of
    # 300 partners (1.5 expected), 6 or more has a chance of 0.4% (binomial): so 5 at most
    for cohort_name, kinds in rates.items():
        for kind, rate in kinds.items():
            assert rate * STEADY_RULES_PARTNERS <= 5, (cohort_name, kind, rate)
