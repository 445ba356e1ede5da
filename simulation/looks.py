"""The look harness: a rule run over every daily look of each synthetic partner, its oracle, calibration.

The service looks at every partner every day, so what matters is the share
of partners with *any* alarm over all their looks. For each partner the
harness computes, once, the rule's strongest statistic at every day of the
history minus the threshold's rise with the look day (the *margin* above the
threshold's base); a base ``h`` then fires on the first day the margin
reaches it. Calibration picks, on calibration seeds, the smallest base that
keeps each null cohort's lifetime false rate at or under a target (the
largest across cohorts, each over its usual history and over two years);
the report measures it on held-out seeds.

The oracle is told the true change day: every day before it against every
day from it to the look, the same statistic, every day from the change on,
calibrated the same way, on the same null partners (given a change day
drawn as the improvers' are, seeded apart).
"""

from __future__ import annotations

import statistics as stats_
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from services.milestones.rules import fewer_anxious_episodes as rule
from services.milestones.rules.statistics import ScanSettings, best, prefix, scan, split_at

from . import cohorts

__all__ = [
    "CALIBRATION_SEED",
    "HELD_OUT_SEED",
    "NULL_COHORTS",
    "TARGETS",
    "LONG_HISTORY_DAYS",
    "Margins",
    "partners",
    "null_partners",
    "rule_margins",
    "oracle_margins",
    "textbook",
    "calibrate",
    "false_rate",
    "found",
    "FIRST_LOOK",
]

CALIBRATION_SEED = 9101
HELD_OUT_SEED = 2026
NULL_COHORTS = ("steady", "worsening", "gappy")
TARGETS = (0.005, 0.01, 0.02, 0.05)
LONG_HISTORY_DAYS = 730
FIRST_LOOK = rule.FIRST_LOOK


@dataclass(frozen=True)
class Margins:
    """One partner's margin above the threshold's base at each day (-inf: no admissible split)."""

    margin: np.ndarray
    change_day: int | None

    @property
    def peak(self) -> float:
        return float(self.margin.max()) if len(self.margin) else -np.inf

    def first(self, base: float) -> int | None:
        hit = np.flatnonzero(self.margin >= base)
        return int(hit[0]) if len(hit) else None


def partners(seed: int, cohort_name: str, n: int, history_days: int | None = None) -> list:
    return cohorts.cohort(seed, cohort_name, n, history_days)


def null_partners(seed: int, n: int) -> dict[str, list]:
    """The null cohorts a threshold is calibrated on: each over its usual history (120-180 days) and,
    seeded apart, over two years, so that the false rate stays bounded as a history grows."""
    return {
        **{c: partners(seed, c, n) for c in NULL_COHORTS},
        **{f"{c} over two years": partners(seed, c, n, LONG_HISTORY_DAYS) for c in NULL_COHORTS},
    }


def _arrays(partner) -> tuple[np.ndarray, np.ndarray]:
    episodes, logged = partner.counts()
    return np.asarray(episodes, dtype=float), np.asarray(logged, dtype=bool)


def rule_margins(
    group: Sequence,
    settings: ScanSettings = rule.SCAN,
    rise: Callable[[np.ndarray], np.ndarray] = rule.rise,
    persistence: int = rule.PERSISTENCE_DAYS,
) -> list[Margins]:
    """The rule's margin at every day of each partner's history: the smaller of the look's and that of
    the look ``persistence`` days earlier (looks from day 20)."""
    out = []
    for partner in group:
        p = prefix(*_arrays(partner))
        margin = np.full(partner.n_days, -np.inf)
        looks = np.arange(FIRST_LOOK, partner.n_days)
        if len(looks):
            z, _ = best(scan(p, looks, settings))
            margin[looks] = z - rise(looks)
        out.append(Margins(_held(margin, persistence), partner.change_day))
    return out


def pseudo_change_day(seed: int, cohort_name: str, index: int) -> int:
    """A null partner's change day for the oracle: drawn as the improvers' are, seeded apart."""
    rng = np.random.default_rng([seed, 7919, cohorts.COHORTS.index(cohort_name), index])
    return int(rng.integers(cohorts.CHANGE_DAYS[0], cohorts.CHANGE_DAYS[1] + 1))


def _held(margin: np.ndarray, persistence: int) -> np.ndarray:
    """The smaller of each day's margin and that of ``persistence`` days earlier (-inf before)."""
    if not persistence:
        return margin
    held = np.full(len(margin), -np.inf)
    held[persistence:] = np.minimum(margin[persistence:], margin[:-persistence])
    return held


def oracle_margins(
    group: Sequence,
    seed: int,
    settings: ScanSettings = rule.SCAN,
    rise: Callable[[np.ndarray], np.ndarray] | None = None,
    persistence: int = 0,
) -> list[Margins]:
    """The oracle's statistic at every day from the (true, or for null partners drawn) change day
    (less the threshold's ``rise`` and held ``persistence`` days, if given: the oracle held to the
    rule's threshold, to measure what not knowing the change day costs)."""
    out = []
    for partner in group:
        change = (
            partner.change_day
            if partner.cohort == "improvers"
            else pseudo_change_day(seed, partner.cohort, partner.index)
        )
        p = prefix(*_arrays(partner))
        margin = np.full(partner.n_days, -np.inf)
        looks = np.arange(change, partner.n_days)
        if len(looks):
            margin[looks] = split_at(p, looks, change, settings).z - (rise(looks) if rise else 0.0)
        out.append(
            Margins(
                _held(margin, persistence),
                partner.change_day if partner.cohort == "improvers" else None,
            )
        )
    return out


def textbook(group: Sequence) -> dict:
    """The textbook single look (the first 28 days against 28, exact conditional binomial test, p < 0.0125):
    null partners' share detected at the end of their history; improvers' at 8 weeks after the change
    and at the end."""

    def share(tests: list) -> float:
        return float(np.mean([bool(t and t["detected"]) for t in tests])) if tests else 0.0

    at_end = [cohorts.textbook_single_look(p) for p in group]
    changing = [p for p in group if p.cohort == "improvers"]
    if not changing:
        return {"false": share(at_end)}
    at_8 = [
        cohorts.textbook_single_look(p, p.change_day + 7 * cohorts.DETECTION_WEEKS)
        for p in changing
    ]
    return {"within_8_weeks": share(at_8), "by_end": share(at_end)}


def calibrate(null: dict[str, list[Margins]], target: float) -> float:
    """The smallest base keeping every null cohort's share of partners with any alarm at or under ``target``."""
    bases = []
    for group in null.values():
        peaks = np.sort([m.peak for m in group])[::-1]
        allowed = int(np.floor(target * len(peaks) + 1e-9))
        bases.append(
            float(np.nextafter(peaks[allowed], np.inf)) if allowed < len(peaks) else -np.inf
        )
    return max(bases)


def false_rate(group: list[Margins], base: float) -> float:
    return float(np.mean([m.peak >= base for m in group]))


def found(group: list[Margins], base: float, weeks: int = cohorts.DETECTION_WEEKS) -> dict:
    """Improvers found within ``weeks`` of their change, by the end, before it (false), median weeks."""
    within, by_end, before, delays = 0, 0, 0, []
    for m in group:
        hit = m.first(base)
        if hit is None:
            continue
        if hit < m.change_day:
            before += 1
            continue
        by_end += 1
        if hit - m.change_day <= 7 * weeks:
            within += 1
            delays.append(hit - m.change_day)
    n = len(group)
    return {
        "partners": n,
        "within_8_weeks": within / n,
        "by_end": by_end / n,
        "before_change": before / n,
        "median_weeks": round(stats_.median(delays) / 7, 1) if delays else None,
    }
