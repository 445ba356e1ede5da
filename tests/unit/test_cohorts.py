"""The synthetic cohorts (pure, seeded) and the cohort study of the milestone detectors.

The study looks at every partner every day, from day 62 (the earliest possible
detection) to the end of their 120-180 days, as the service does, and runs a
single-look textbook test on the same partners for comparison. The seed and
size were fixed before the first run; the figures in the xfail reasons are
this seed's, with the large-sample ones (1000 partners a cohort, two seeds)
beside them.
"""
from __future__ import annotations

import json
import statistics

import pytest

from services.milestones import cohorts
from services.milestones.cohorts import (
    COHORTS, DETECTION_WEEKS, GAPPY_PATTERNS, START, cohort, detection_report, simulate_partner,
)
from services.milestones.detectors import FEWER_ANXIOUS_EPISODES, History

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
        elif p.pattern == "low_logging_month":  # some 30 days logged well below the partner's usual share
            assert min(sum(1 for i in range(s, s + 30) if i in logged) for s in range(p.n_days - 29)) <= 0.3 * 30 + 6
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
    return {name: report["cohorts"][name]["false_detections"]["any"]["partners"]
            for name in ("steady", "worsening", "gappy")}


def test_no_false_celebration_for_steady_or_worsening_partners(report):
    # any milestone of any partner type: fewer anxious episodes, calmer episodes, more independence
    found = false_detections(report)
    assert found["steady"] == 0 and found["worsening"] == 0


def test_daily_looks_celebrate_falsely_less_often_than_one_textbook_look(report):
    # the textbook test (first 28 days against the last 28, binomial on episode counts, once) takes
    # over-dispersed counts for Poisson ones; the design looks every day and still errs less
    textbook = sum(report["cohorts"][n]["textbook_single_look"]["false_detections"]
                   for n in ("steady", "worsening", "gappy"))
    ours = sum(report["cohorts"][n]["false_detections"][FEWER_ANXIOUS_EPISODES]["partners"]
               for n in ("steady", "worsening", "gappy"))
    assert ours < textbook


def test_improvers_are_never_celebrated_before_their_change_and_never_beyond_the_ideal(report):
    imp = report["cohorts"]["improvers"]
    assert imp["fewer_anxious_episodes"]["detected_before_the_change"] == 0
    assert imp["false_detections"]["any"]["partners"] == 0
    assert imp["fewer_anxious_episodes"]["found_within_8_weeks"] <= imp["ideal_upper_bound"]["found_within_8_weeks"]
    assert imp["fewer_anxious_episodes"]["median_weeks_to_detection"] <= DETECTION_WEEKS


def test_finding_90_percent_of_improvers_is_beyond_any_test_at_the_rules_alpha(report):
    # the ideal test knows the change day, pools every day before it against every day after it, takes
    # over-dispersed counts for Poisson ones (in its favour), looks every day without correction and asks
    # for no persistence: even it finds fewer than 90% within 8 weeks
    assert report["cohorts"]["improvers"]["ideal_upper_bound"]["rate"] < 0.9


@pytest.mark.xfail(strict=True, reason=(
    "Seed 20261005, 50 partners a cohort: 1 false detection among 150 (a gappy, shy-on-bad-days partner "
    "whose first month had more than twice the episodes of any later month: fewer_anxious_episodes); none "
    "among steady or worsening partners. Over 2000 partners a cohort (seeds 101 and 102), partners with "
    "any false detection: steady 0.5%, worsening 0.3%, gappy 0.65% (the notes' defaults as first written: "
    "14.4%, 14.0%, 9.3%); fewer_anxious_episodes alone 0.15%, 0%, 0.5%. So 150 partners are clean only "
    "about half the time. Tightening further (confirming at 7 and 14 days) cuts fewer_anxious_"
    "episodes' false rate to about 0.1% but halves the improvers found (8.5% within 8 weeks): the owner "
    "of the rules decides that trade, not this test."))
def test_no_false_celebration_at_all_among_steady_worsening_and_gappy_partners(report):
    assert sum(false_detections(report).values()) == 0


@pytest.mark.xfail(strict=True, reason=(
    "Not reachable under milestone-science.md's rules. Seed 20261005, 50 improvers (rate falls 50-75% from "
    "weeks 5-10, 3-10 episodes a week, logging 50-90%, over-dispersed): 10 found within 8 weeks (20%); over "
    "2000: 14.5% (the notes' defaults: 13.4%), median 5 weeks. Even an ideal test that knows the change day, "
    "pools all days before and after it, takes over-dispersed counts for Poisson ones and looks daily without "
    "correction or persistence finds 76% (this seed: 38 of 50). A decision for whoever owns the rules "
    "(alpha, windows), not a threshold to loosen here."))
def test_90_percent_of_improvers_are_found_within_8_weeks(report):
    imp = report["cohorts"]["improvers"]["fewer_anxious_episodes"]
    assert imp["found_within_8_weeks"] >= 0.9 * N


def test_the_report_renders_as_a_markdown_table(report):
    table = cohorts.report_table(report)
    for name in COHORTS:
        assert f"| {name}" in table or name in table
    assert "ideal upper bound" in table and "textbook single look" in table


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
    before = {"steady": (164, None, None, 8.41, 99), "worsening": (139, 37, 0.533, 5.899, 113),
              "gappy": (122, None, None, 3.651, 71), "improvers": (148, 50, -0.736, 6.287, 123)}
    for name, fingerprint in before.items():
        p = simulate_partner(SEED, name, 1)
        assert (p.n_days, p.change_day, p.change, p.weekly_rate, len(p.days)) == fingerprint


def test_late_improvers_are_within_their_ranges():
    for p in cohort(11, "late_improvers", 30):
        assert 105 <= p.change_day <= 181 and -0.75 <= p.change <= -0.5
        assert p.n_days == p.change_day + 7 * 16 + 1  # 16 weeks of follow-up after the change, inclusive
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


@pytest.mark.xfail(strict=True, reason=(
    "The alpha spending (look_alpha = 0.0125 / period ** 2, period = 28-day blocks of looks since the first "
    "possible detection) leaves little alpha for a fall that starts in weeks 16-26: 4 to 8 weeks after the "
    "change, late improvers are in periods 3-6 (alpha 0.0125/9 to /36), early ones in periods 1-2. Seed 20261005, 50 a cohort: late improvers "
    "found within 8 weeks 2 of 50 (4%; within 16 weeks 2), early improvers 10 of 50 (20%); the textbook "
    "single look 8 weeks after the change finds 27 of 50 late ones and the ideal bound 47. Seed 7, 1000 a "
    "cohort: late 3.2% within 8 weeks, 5.5% within 16; early improvers given the same 16-week follow-up "
    "16.1% and 22.2%. With look_alpha held at 0.0125 (measurement only): late 22.2% and 39.0%, early 19.7% "
    "and 37.0%, so the whole gap is the spending. Removing it has a price: fewer_anxious_episodes false on "
    "steady partners watched 280-300 days 0.9% -> 2.4%, gappy 0.1% -> 0.6% (seed 7, 1000 each). The owner "
    "of the rules decides that trade, not this test."))
def test_late_improvers_are_found_about_as_often_as_early_ones(report, late_report):
    early = report["cohorts"]["improvers"]["fewer_anxious_episodes"]["found_within_8_weeks"]
    late = late_report["fewer_anxious_episodes"]["found_within_8_weeks"]
    assert late >= 0.5 * early
