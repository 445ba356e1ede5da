"""A CI-sized calibration check of the couple scans, on seeds apart from the calibration's (9101) and the report's
(2026): null couples stay within the lifetime false bound over every daily look, improving couples are found
at the goal's rate, each within a stated tolerance. The figures they are checked against are the held-out ones
in docs/detection.md."""
from __future__ import annotations

import pytest

from services.milestones.rules import BETTER_COMMUNICATION, STRONGER_BOND
from simulation import couple_looks, looks

CI_SEED = 4242
NULL_N = 200  # couples a null cohort
IMPROVING_N = 150


@pytest.fixture(scope="module")
def null_couples() -> dict:
    return {c: couple_looks.couples(CI_SEED, c, NULL_N) for c in couple_looks.NULL_COUPLES}


@pytest.fixture(scope="module")
def improving() -> dict:
    group = couple_looks.couples(CI_SEED, couple_looks.IMPROVING, IMPROVING_N)
    return {kind: looks.found(couple_looks.rule_margins(group, rule), rule.base())
            for kind, rule in couple_looks.RULES.items()}


@pytest.mark.parametrize("kind", [BETTER_COMMUNICATION, STRONGER_BOND])
def test_null_couples_stay_within_the_lifetime_false_rate(null_couples, kind):
    rule = couple_looks.RULES[kind]
    for cohort, group in null_couples.items():
        false = sum(m.peak >= rule.base() for m in couple_looks.rule_margins(group, rule))
        # 1% of 200 is 2; 7 or more has a chance of 0.5% at a true 1% (binomial), so 6 at most
        assert false <= 6, (cohort, false)


def test_better_communication_finds_the_goals_share_within_8_weeks(improving):
    found = improving[BETTER_COMMUNICATION]
    # goal: at least 60% within 8 weeks of the change (held out: 62.2%); 3 binomial sd of 150 couples is
    # 12 points
    assert found["within_8_weeks"] >= 0.60 - 0.12
    assert found["before_change"] <= 0.01


def test_stronger_bond_finds_improving_couples_at_the_measured_rate(improving):
    found = improving[STRONGER_BOND]
    # held out (seed 2026, 500 couples): 11.8% within 8 weeks, 22.8% by the end (1.23 and 0.79 of the oracle told
    # the rise's start and length); 3 binomial sd of 150 couples is 8 and 10 points
    assert abs(found["within_8_weeks"] - 0.118) <= 0.08
    assert abs(found["by_end"] - 0.228) <= 0.10
    assert found["before_change"] <= 0.01


@pytest.mark.xfail(strict=True, reason=(
    "Goal: 80% of improving couples found by the end of their history. Held out (seed 2026, 500 couples): "
    "69.6%, and the oracle told the change day 76.2%. At the end of their histories, at the true change day, "
    "84.2% of improving couples (seed 9101, 1,000) have a split the rule may take at all: the effect-size "
    "floor (a common-language effect of 0.7) shuts out 6.5%, the rise of half a point 6.2% more "
    "(docs/detection.md)."))
def test_better_communication_finds_80_percent_by_the_end(improving):
    assert improving[BETTER_COMMUNICATION]["by_end"] >= 0.80 - 0.10
