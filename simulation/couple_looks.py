"""The look harness of the couple rules: each rule run over every daily look of each synthetic couple's shared
entries, its oracle, and the textbook single look.

As for the partner rules (:mod:`.looks`, whose :class:`~.looks.Margins`,
calibration and counts are used here as they are), the harness computes once,
for each couple, the rule's strongest statistic at every day of the history
less the threshold's rise with the look day (the *margin* above the base),
the smaller of the look's and that of its confirming look (3 days earlier,
for ``better_communication``); a base then
fires on the first day the margin reaches it. The rules read only what the
couple shares (:attr:`~.cohorts.SyntheticCouple.shared_histories`), as the
service gives them.

The oracle is told the true change: its day and, for ``stronger_bond``,
whose connection and understanding rise linearly over 4-12 weeks, how long
the rise takes. It fits that shape (every week before the change against
every week from it to the look; for ``stronger_bond`` the rise over the
known weeks, then flat) with the same statistic and the same conditions,
every day from the change on, calibrated the same way (null couples are
given a change drawn as the improving couples' are, seeded apart).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from services.milestones.rules import (
    BETTER_COMMUNICATION,
    STRONGER_BOND,
    better_communication,
    couple_scan,
    stronger_bond,
)
from services.milestones.rules.couple_scan import CoupleScan
from services.milestones.rules.statistics import best
from services.milestones.rules.weekly_means import Prefix, WeeklySettings, ramp_at, scan

from . import cohorts
from .looks import CALIBRATION_SEED, HELD_OUT_SEED, LONG_HISTORY_DAYS, TARGETS, Margins

__all__ = [
    "RULES",
    "NULL_COUPLES",
    "IMPROVING",
    "CALIBRATION_SEED",
    "HELD_OUT_SEED",
    "LONG_HISTORY_DAYS",
    "TARGETS",
    "couples",
    "rule_statistics",
    "held",
    "rule_margins",
    "oracle_margins",
    "pseudo_change_day",
    "pseudo_change",
    "textbook_found",
]

RULES: dict[str, CoupleScan] = {
    BETTER_COMMUNICATION: better_communication.RULE,
    STRONGER_BOND: stronger_bond.RULE,
}
NULL_COUPLES = ("steady_couples", "worsening_couples", "gappy_couples")
IMPROVING = "improving_couples"
ORACLE_STREAM = 7927
CHUNK = 64  # the looks a scan takes at once
# the rules whose change the simulator spreads over weeks: the truth's key for the length of the rise (days)
RAMPS = {STRONGER_BOND: "bond_ramp_days"}
RAMP_WEEKS = {STRONGER_BOND: cohorts.BOND_RAMP_WEEKS}


def couples(seed: int, cohort_name: str, n: int, history_days: int | None = None) -> list:
    return cohorts.couple_cohort(seed, cohort_name, n, history_days)


def _prefix(rule: CoupleScan, couple) -> tuple[Prefix, int | None]:
    """The running sums of the couple's shared ratings (day 0 is ``START``) and their first shared day."""
    a, b = couple.shared_histories
    last = couple.day(couple.n_days - 1)
    first = rule.first_day(a, b, last)
    return rule.arrays(a, b, cohorts.START, last), None if first is None else (
        first - cohorts.START
    ).days


def rule_statistics(
    group: Sequence, rule: CoupleScan, settings: WeeklySettings | None = None
) -> list[tuple[np.ndarray, int | None]]:
    """The rule's strongest statistic at every day of each couple's history (-inf: no admissible split) and
    the day of the couple's first shared entry (day 0 of the threshold's rise)."""
    settings = settings or rule.settings
    out = []
    for couple in group:
        p, first = _prefix(rule, couple)
        z = np.full(couple.n_days, -np.inf)
        if first is not None:
            for lo in range(
                first, couple.n_days, CHUNK
            ):  # in chunks of looks: arrays that stay in cache
                looks = np.arange(lo, min(lo + CHUNK, couple.n_days))
                z[looks] = best(scan(p, looks, settings))[0]
        out.append((z, first))
    return out


def held(
    z: np.ndarray,
    first: int | None,
    rise: Callable[[np.ndarray], np.ndarray],
    persistence: int = couple_scan.PERSISTENCE_DAYS,
) -> np.ndarray:
    """The margin above the base at each day: the statistic less the threshold's rise, the smaller of the
    look's and that of the look ``persistence`` days earlier."""
    days = np.arange(len(z))
    margin = z - (rise(days - first) if first is not None else 0.0)
    if persistence:
        out = np.full(len(z), -np.inf)
        out[persistence:] = np.minimum(margin[persistence:], margin[:-persistence])
        return out
    return margin


def rule_margins(
    group: Sequence,
    rule: CoupleScan,
    settings: WeeklySettings | None = None,
    persistence: int | None = None,
    rise: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[Margins]:
    """The rule's margin at every day of each couple's history (:func:`held`; ``persistence``: the rule's
    confirming look unless given)."""
    rise = rise or rule.rise
    persistence = rule.persistence_days if persistence is None else persistence
    return [
        Margins(held(z, first, rise, persistence), c.change_day if c.cohort == IMPROVING else None)
        for c, (z, first) in zip(group, rule_statistics(group, rule, settings))
    ]


def pseudo_change_day(seed: int, cohort_name: str, index: int) -> int:
    """A null couple's change day for the oracle: drawn as the improving couples' are, seeded apart."""
    return pseudo_change(seed, cohort_name, index, None)[0]


def pseudo_change(seed: int, cohort_name: str, index: int, kind: str | None) -> tuple[int, int]:
    """A null couple's change for the oracle of rule ``kind``: its day and the weeks its rise takes (0: a
    step), drawn as the improving couples' are, seeded apart (the day is the same draw for every rule)."""
    rng = np.random.default_rng(
        [seed, ORACLE_STREAM, cohorts.COUPLE_COHORTS.index(cohort_name), index]
    )
    day = int(rng.integers(cohorts.CHANGE_DAYS[0], cohorts.CHANGE_DAYS[1] + 1))
    if kind not in RAMP_WEEKS:
        return day, 0
    low, high = RAMP_WEEKS[kind]
    return day, int(rng.integers(low, high + 1))


def true_change(couple, seed: int, kind: str) -> tuple[int, int]:
    """The change the oracle is told: an improving couple's (its day, the weeks its rise takes for the rule),
    a null couple's drawn (:func:`pseudo_change`)."""
    if couple.cohort != IMPROVING:
        return pseudo_change(seed, couple.cohort, couple.index, kind)
    return couple.change_day, (couple.change[RAMPS[kind]] // 7 if kind in RAMPS else 0)


def oracle_margins(
    group: Sequence, seed: int, rule: CoupleScan, settings: WeeklySettings | None = None
) -> list[Margins]:
    """The oracle's statistic at every day from the (true, or for null couples drawn) change day: the known
    shape (a step, or a rise over the known weeks) fitted with the rule's statistic and conditions."""
    settings = settings or rule.settings
    out = []
    for couple in group:
        change, weeks = true_change(couple, seed, rule.type)
        p, _ = _prefix(rule, couple)
        margin = np.full(couple.n_days, -np.inf)
        looks = np.arange(change, couple.n_days)
        if len(looks):
            margin[looks] = ramp_at(p, looks, change, weeks, settings).z
        out.append(Margins(margin, couple.change_day if couple.cohort == IMPROVING else None))
    return out


def textbook_found(group: Sequence, kind: str, weeks: int | None = None) -> float:
    """The share of couples the textbook single look finds on their shared entries: at the end of the history,
    or ``weeks`` after the change."""
    test = cohorts.COUPLE_TEXTBOOK[kind]
    hits = 0
    for couple in group:
        shared = replace(couple, a=couple.a_shared, b=couple.b_shared)
        look = None if weeks is None else min(couple.change_day + 7 * weeks, couple.n_days - 1)
        result = test(shared, look)
        hits += bool(result and result["detected"])
    return hits / len(group)
