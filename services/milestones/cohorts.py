"""Synthetic partners with known truth, and the cohort study of the detectors.

Pure and seeded: no I/O, no clock, no global random state. The same
``(seed, cohort, index)`` always gives the same partner, whatever else is
generated, so a study can be grown or cut without changing its partners.

Each partner is a run of daily aggregates (:class:`~services.milestones.
detectors.DayAggregate`, logged days only) for a person with anxious
attachment, day 0 being the first logged day:

* Anxious episodes: a baseline rate drawn from 3-10 a week. A quarter of the
  partners have plain Poisson days; the others are over-dispersed the way
  people are: a day-level gamma multiplier (negative-binomial day counts,
  shape 1.5-6) times a week-level multiplier that follows a log-normal AR(1)
  across weeks (sd 0.1-0.45 on the log scale, week-to-week correlation 0-0.5),
  so bad weeks come in clusters.
* Logging: each day is logged with a partner's own probability, 50-90%.
* Intensities (0-10) and independence activities are generated too, from
  their own steady processes (day- and week-level variation as above); no
  cohort changes them, so *any* ``calmer_episodes`` or ``more_independence``
  detection is a false one.
* History: 120-180 days.

Cohorts (the truth about the episode rate):

* ``steady``: the rate does not change.
* ``worsening``: the rate rises by 40-100% from a random day in weeks 5-10.
* ``gappy``: the rate does not change, but logging does, in one of three
  patterns (partners take them in turn): ``gaps``, 1-3 gaps of 7-21 days
  without logging, placed in the partner's *worst* weeks (people stop logging
  in a bad spell); ``low_logging_month``, logging drops to 30% for 30 days;
  ``shy_on_bad_days``, from a random day in weeks 5-10 on, a day with more
  episodes than the partner's average is logged with only 40-80% of the usual
  probability ("no logging is not no anxiety").
* ``improvers``: the rate falls by 50-75% from a random day in weeks 5-10.

An extra cohort, outside ``COHORTS`` (so :func:`detection_report` and every
existing partner stay as they were; ``EXTRA_COHORTS``):

* ``late_improvers``: like ``improvers``, but the fall starts on a random day
  in weeks 16-26 (days 105-181), and the history runs until 16 weeks after
  the change (``change_day + 113`` days, so 218-294 days) instead of
  120-180 days. :func:`late_improver_report` studies it.

Late and out-of-order sync is a transport concern and is not simulated.

:func:`detection_report` runs the detectors the way the service does: every
day, from the first day a detection is possible to the end of each history,
and sets beside them a single-look textbook test and, for improvers, an ideal
upper bound that no rule-abiding detector can beat (:func:`ideal_detection`);
:func:`report_table` renders a report as Markdown. 1000 partners a cohort take
about four minutes on one core; 50 about fifteen seconds.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Callable, Optional

import numpy as np

from . import detectors as det
from .detectors import (
    CALMER_EPISODES, FEWER_ANXIOUS_EPISODES, MORE_INDEPENDENCE, DayAggregate, History, compare_rates,
)

__all__ = [
    "COHORTS", "GAPPY_PATTERNS", "START", "DETECTION_WEEKS", "SyntheticPartner",
    "simulate_partner", "cohort", "first_detections", "textbook_single_look", "ideal_detection",
    "detection_report", "report_table", "EXTRA_COHORTS", "late_improver_report",
]

COHORTS = ("steady", "worsening", "gappy", "improvers")
# cohorts outside the cohort study of detection_report; seeded after COHORTS, so no existing partner changes
EXTRA_COHORTS = ("late_improvers",)
_SEEDED = COHORTS + EXTRA_COHORTS
GAPPY_PATTERNS = ("gaps", "low_logging_month", "shy_on_bad_days")
START = date(2026, 1, 5)  # day 0 of every synthetic history
DETECTION_WEEKS = 8  # an improver counts as found if detected within 8 weeks of the change

# the simulator's ranges
HISTORY_DAYS = (120, 180)
WEEKLY_RATE = (3.0, 10.0)
LOGGING = (0.5, 0.9)
POISSON_SHARE = 0.25
WEEK_SD = (0.1, 0.45)  # log-scale sd of the week multiplier
WEEK_CORRELATION = (0.0, 0.5)
DAY_SHAPE = (1.5, 6.0)  # gamma shape of the day multiplier (negative-binomial counts)
CHANGE_DAYS = (28, 69)  # weeks 5-10, day 0 being the first logged day
IMPROVER_FALL = (0.5, 0.75)
LATE_CHANGE_DAYS = (105, 181)  # weeks 16-26 (late_improvers)
LATE_FOLLOW_UP_WEEKS = 16  # late_improvers' histories run until 16 weeks after the change (inclusive)
WORSENING_RISE = (0.4, 1.0)
GAPS = (1, 3)
GAP_DAYS = (7, 21)
LOW_LOGGING = 0.3
LOW_LOGGING_DAYS = 30
SHY_FACTOR = (0.4, 0.8)
INTENSITY_MEAN = (3.5, 7.5)
ACTIVITIES_PER_WEEK = (0.5, 4.0)


@dataclass(frozen=True)
class SyntheticPartner:
    """One synthetic partner: the daily aggregates and the truth behind them.

    ``days`` holds the logged days only (day 0 is ``START`` and is logged).
    ``change_day`` is the day index from which the episode rate is
    ``weekly_rate * (1 + change)`` (improvers: ``change`` < 0), or, for the
    ``shy_on_bad_days`` pattern, the day the shyness starts; None otherwise.
    """

    cohort: str
    index: int
    pattern: Optional[str]
    n_days: int
    weekly_rate: float
    logging: float
    noise: dict
    change_day: Optional[int]
    change: Optional[float]
    days: tuple[DayAggregate, ...]

    @property
    def history(self) -> History:
        return History(self.days)

    def day(self, i: int) -> date:
        return START + timedelta(days=i)

    def counts(self) -> tuple[list[int], list[bool]]:
        """(episodes per day, logged per day) for days 0..n_days-1 (0 when not logged)."""
        episodes, logged = [0] * self.n_days, [False] * self.n_days
        for d in self.days:
            i = (d.day - START).days
            episodes[i], logged[i] = d.episodes, True
        return episodes, logged


def _week_multipliers(rng: np.random.Generator, n_days: int, sd: float, rho: float) -> np.ndarray:
    """A day's week-level multiplier, mean 1: log-normal, AR(1) from week to week."""
    weeks = n_days // 7 + 1
    if sd == 0:
        return np.ones(n_days)
    z = np.empty(weeks)
    z[0] = rng.normal(0.0, sd)
    for w in range(1, weeks):
        z[w] = rho * z[w - 1] + math.sqrt(1 - rho * rho) * rng.normal(0.0, sd)
    return np.repeat(np.exp(z - sd * sd / 2), 7)[:n_days]


def _day_multipliers(rng: np.random.Generator, n_days: int, shape: float) -> np.ndarray:
    return np.ones(n_days) if math.isinf(shape) else rng.gamma(shape, 1.0 / shape, n_days)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _integer(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def simulate_partner(seed: int, cohort_name: str, index: int) -> SyntheticPartner:
    """The ``index``-th partner of a cohort, from ``seed`` (deterministic)."""
    if cohort_name not in _SEEDED:
        raise ValueError(f"unknown cohort {cohort_name!r}; one of {_SEEDED}")
    rng = np.random.default_rng([seed, _SEEDED.index(cohort_name), index])
    n = _integer(rng, HISTORY_DAYS)
    late_change_day: Optional[int] = None
    if cohort_name == "late_improvers":
        late_change_day = _integer(rng, LATE_CHANGE_DAYS)
        n = late_change_day + 7 * LATE_FOLLOW_UP_WEEKS + 1
    weekly_rate = _uniform(rng, WEEKLY_RATE)
    lam = weekly_rate / 7
    logging = _uniform(rng, LOGGING)
    if rng.random() < POISSON_SHARE:
        noise = {"kind": "poisson"}
        sd, rho, shape = 0.0, 0.0, math.inf
    else:
        sd, rho, shape = _uniform(rng, WEEK_SD), _uniform(rng, WEEK_CORRELATION), _uniform(rng, DAY_SHAPE)
        noise = {"kind": "overdispersed", "week_sd": round(sd, 3), "week_correlation": round(rho, 3),
                 "day_shape": round(shape, 3)}
    week = _week_multipliers(rng, n, sd, rho)
    day = _day_multipliers(rng, n, shape)

    factor = np.ones(n)
    change_day: Optional[int] = None
    change: Optional[float] = None
    if cohort_name == "improvers":
        change_day, change = _integer(rng, CHANGE_DAYS), -_uniform(rng, IMPROVER_FALL)
    elif cohort_name == "late_improvers":
        change_day, change = late_change_day, -_uniform(rng, IMPROVER_FALL)
    elif cohort_name == "worsening":
        change_day, change = _integer(rng, CHANGE_DAYS), _uniform(rng, WORSENING_RISE)
    if change_day is not None:
        factor[change_day:] = 1 + change
    episodes = rng.poisson(lam * factor * week * day)

    p_log = np.full(n, logging)
    pattern: Optional[str] = None
    if cohort_name == "gappy":
        pattern = GAPPY_PATTERNS[index % len(GAPPY_PATTERNS)]
        if pattern == "gaps":
            wanted = _integer(rng, GAPS)
            starts = np.arange(14, n - 7, 7)
            worst_first = starts[np.argsort(-week[starts], kind="stable")]
            gap = np.zeros(n, dtype=bool)
            for s in worst_first:
                length = _integer(rng, GAP_DAYS)
                if gap[max(0, s - 7):s + length + 7].any():
                    continue
                gap[s:s + length] = True
                wanted -= 1
                if wanted == 0:
                    break
            p_log[gap] = 0.0
        elif pattern == "low_logging_month":
            s = _integer(rng, (28, n - LOW_LOGGING_DAYS))
            p_log[s:s + LOW_LOGGING_DAYS] = LOW_LOGGING
        else:  # shy_on_bad_days
            shy = _uniform(rng, SHY_FACTOR)
            change_day = _integer(rng, CHANGE_DAYS)
            bad = (episodes > lam) & (np.arange(n) >= change_day)
            p_log[bad] *= shy
            noise = dict(noise, shy_factor=round(shy, 3))
    logged = rng.random(n) < p_log
    logged[0] = True  # day 0 is the first logged day by definition

    # intensities and activities: steady in every cohort
    intensity_mean = _uniform(rng, INTENSITY_MEAN)
    intensity_week = np.repeat(rng.normal(0.0, 0.5, n // 7 + 1), 7)[:n]
    intensity_day = rng.normal(0.0, 0.8, n)
    activity_rate = _uniform(rng, ACTIVITIES_PER_WEEK) / 7
    activities = rng.poisson(activity_rate * _week_multipliers(rng, n, sd, rho) * _day_multipliers(rng, n, shape))

    days = []
    for i in range(n):
        if not logged[i]:
            continue
        k = int(episodes[i])
        centre = intensity_mean + intensity_week[i] + intensity_day[i]
        intensities = tuple(int(v) for v in np.clip(np.rint(centre + rng.normal(0.0, 1.2, k)), 0, 10))
        days.append(DayAggregate(START + timedelta(days=i), episodes=k, intensities=intensities,
                                 activities=int(activities[i])))
    return SyntheticPartner(cohort_name, index, pattern, n, round(weekly_rate, 3), round(logging, 3), noise,
                            change_day, None if change is None else round(change, 3), tuple(days))


def cohort(seed: int, cohort_name: str, n: int) -> list[SyntheticPartner]:
    """Partners 0..n-1 of a cohort."""
    return [simulate_partner(seed, cohort_name, i) for i in range(n)]


# --- the cohort study ---

FIRST_LOOK_DAY = 2 * det.WINDOW_DAYS + det.PERSISTENCE_DAYS - 1  # day 62: no detection is possible before
PARTNER_DETECTORS: dict[str, Callable] = {
    FEWER_ANXIOUS_EPISODES: det.fewer_anxious_episodes,
    CALMER_EPISODES: det.calmer_episodes,
    MORE_INDEPENDENCE: det.more_independence,
}


def first_detections(partner: SyntheticPartner, kinds: tuple[str, ...] = tuple(PARTNER_DETECTORS),
                     stop_at: Optional[int] = None) -> dict[str, Optional[int]]:
    """The first day (index) each detector fires, looking every day as the service does.

    Looks from day 62 (no detection is possible earlier) to the end of the
    history (or ``stop_at``), each type until it first fires.
    """
    h = partner.history
    last = partner.n_days - 1 if stop_at is None else min(stop_at, partner.n_days - 1)
    first: dict[str, Optional[int]] = {k: None for k in kinds}
    for i in range(FIRST_LOOK_DAY, last + 1):
        as_of = partner.day(i)
        for kind in kinds:
            if first[kind] is None and PARTNER_DETECTORS[kind](h, as_of):
                first[kind] = i
        if all(v is not None for v in first.values()):
            break
    return first


def _sums(episodes: list[int], logged: list[bool], lo: int, hi: int) -> tuple[int, int]:
    """(episodes, logged days) on days lo..hi."""
    idx = range(max(lo, 0), min(hi, len(episodes) - 1) + 1)
    return sum(episodes[i] for i in idx if logged[i]), sum(1 for i in idx if logged[i])


def textbook_single_look(partner: SyntheticPartner, look_day: Optional[int] = None) -> Optional[dict]:
    """The textbook test, once: the first 28 days against the 28 days ending on ``look_day``.

    Episodes per logged day, exact conditional binomial test one-sided (less),
    p < 0.0125; nothing else (no effect size, no persistence, no guard).
    ``look_day`` defaults to the last day of the history. None if a window
    has no logged day or they overlap.
    """
    episodes, logged = partner.counts()
    end = partner.n_days - 1 if look_day is None else look_day
    if end - 27 <= 27 or end >= partner.n_days:
        return None
    kb, tb = _sums(episodes, logged, 0, 27)
    kr, tr = _sums(episodes, logged, end - 27, end)
    if tb == 0 or tr == 0:
        return None
    cmp = compare_rates(kb, tb, kr, tr, "less")
    return {"look_day": end, "rate_ratio": det._num(cmp.ratio), "p_value": det._p(cmp.p_value),
            "detected": cmp.p_value < det.ALPHA}


def ideal_detection(partner: SyntheticPartner, weeks: int = DETECTION_WEEKS) -> Optional[int]:
    """An upper bound no rule-abiding detector can beat: the first day it would fire, or None.

    It knows the change day: every logged day before the change against
    every logged day from the change to the look, episode counts, the exact
    conditional binomial test (which over-dispersed counts make too lenient,
    in its favour), p < 0.0125 and rate ratio <= 0.7, at any daily look in
    the ``weeks`` after the change, with no persistence and no correction
    for looking often.
    """
    if partner.change_day is None:
        return None
    episodes, logged = partner.counts()
    c = partner.change_day
    kb, tb = _sums(episodes, logged, 0, c - 1)
    if tb == 0 or kb == 0:
        return None
    for i in range(c + 7, min(c + 7 * weeks, partner.n_days - 1) + 1):
        kr, tr = _sums(episodes, logged, c, i)
        if tr == 0:
            continue
        cmp = compare_rates(kb, tb, kr, tr, "less")
        if cmp.p_value < det.ALPHA and cmp.ratio <= FEWER_LEVEL_1:
            return i
    return None


FEWER_LEVEL_1 = det.FEWER_EPISODES_LEVELS[0][1]


def _rate(k: int, n: int) -> Optional[float]:
    return round(k / n, 4) if n else None


def _median_weeks(days: list[int]) -> Optional[float]:
    return round(statistics.median(days) / 7, 1) if days else None


def _false_counts(firsts: list[dict[str, Optional[int]]]) -> dict:
    """Partners with a (false) detection, per type and of any type (the types in ``firsts``)."""
    n = len(firsts)
    out: dict[str, Any] = {}
    for kind in (firsts[0] if firsts else {}):
        k = sum(1 for f in firsts if f[kind] is not None)
        out[kind] = {"partners": k, "rate": _rate(k, n)}
    k = sum(1 for f in firsts if any(v is not None for v in f.values()))
    out["any"] = {"partners": k, "rate": _rate(k, n)}
    return out


def detection_report(seed: int, n_per_cohort: int) -> dict:
    """The cohort study: the detectors under daily looks, against the textbook single look.

    For each cohort, ``n_per_cohort`` partners (:func:`cohort`), each looked
    at every day from day 62 to the end of their history (as the service
    evaluates daily and on each event).

    * ``steady``, ``worsening``, ``gappy``: partners with any false detection
      (every type; for ``fewer_anxious_episodes`` any detection is false
      here), and the textbook test's false detections at its one look at the
      end of each history. ``gappy`` is also broken down by pattern.
    * ``improvers``: ``fewer_anxious_episodes`` found within 8 weeks of the
      change (a detection before the change counts as false, not found),
      the median weeks from the change to detection, found by the end of the
      history; the textbook test at the end of the history and at its most
      favourable single look, exactly 8 weeks after the change; and the
      :func:`ideal_detection` upper bound. Calmer and independence
      detections are false here too (their processes never change).

    Returns plain JSON-serialisable data.
    """
    if n_per_cohort < 1:
        raise ValueError("n_per_cohort must be >= 1")
    report: dict[str, Any] = {
        "seed": seed, "partners_per_cohort": n_per_cohort,
        "looks": f"every day from day {FIRST_LOOK_DAY} (the earliest possible detection) to the end of each "
                 f"history ({HISTORY_DAYS[0]}-{HISTORY_DAYS[1]} days)",
        "textbook": "first 28 days against the last 28, episodes per logged day, exact conditional binomial "
                    "test one-sided, p < 0.0125, one look",
        "cohorts": {},
    }
    for name in COHORTS:
        partners = cohort(seed, name, n_per_cohort)
        firsts = [first_detections(p) for p in partners]
        textbook = [textbook_single_look(p) for p in partners]
        entry: dict[str, Any] = {"partners": n_per_cohort}
        if name != "improvers":
            entry["false_detections"] = _false_counts(firsts)
            k = sum(1 for t in textbook if t and t["detected"])
            entry["textbook_single_look"] = {"false_detections": k, "rate": _rate(k, n_per_cohort)}
            if name == "gappy":
                entry["by_pattern"] = {}
                for pattern in GAPPY_PATTERNS:
                    ix = [i for i, p in enumerate(partners) if p.pattern == pattern]
                    entry["by_pattern"][pattern] = {
                        "partners": len(ix),
                        "false_detections": _false_counts([firsts[i] for i in ix])["any"]["partners"],
                        "textbook_false_detections": sum(1 for i in ix if textbook[i] and textbook[i]["detected"]),
                    }
        else:
            within, before, by_end, delays = 0, 0, 0, []
            for p, f in zip(partners, firsts):
                hit = f[FEWER_ANXIOUS_EPISODES]
                if hit is None:
                    continue
                if hit < p.change_day:
                    before += 1
                    continue
                by_end += 1
                if hit - p.change_day <= 7 * DETECTION_WEEKS:
                    within += 1
                    delays.append(hit - p.change_day)
            at_8 = [textbook_single_look(p, p.change_day + 7 * DETECTION_WEEKS) for p in partners]
            ideal = [ideal_detection(p) for p in partners]
            ideal_days = [i - p.change_day for p, i in zip(partners, ideal) if i is not None]
            entry["fewer_anxious_episodes"] = {
                "found_within_8_weeks": within, "rate": _rate(within, n_per_cohort),
                "median_weeks_to_detection": _median_weeks(delays),
                "found_by_end_of_history": by_end, "detected_before_the_change": before,
            }
            entry["false_detections"] = _false_counts(
                [{k: v for k, v in f.items() if k != FEWER_ANXIOUS_EPISODES} for f in firsts])
            k_end = sum(1 for t in textbook if t and t["detected"])
            k_8 = sum(1 for t in at_8 if t and t["detected"])
            entry["textbook_single_look"] = {
                "at_end_of_history": {"found": k_end, "rate": _rate(k_end, n_per_cohort)},
                "at_8_weeks_after_the_change": {"found": k_8, "rate": _rate(k_8, n_per_cohort)},
            }
            entry["ideal_upper_bound"] = {
                "found_within_8_weeks": len(ideal_days), "rate": _rate(len(ideal_days), n_per_cohort),
                "median_weeks_to_detection": _median_weeks(ideal_days),
            }
        report["cohorts"][name] = entry
    return report


def report_table(report: dict) -> str:
    """A :func:`detection_report` as a Markdown table (for BENCHMARKS.md and the like)."""
    c = report["cohorts"]
    lines = [
        f"Seed {report['seed']}, {report['partners_per_cohort']} partners a cohort; {report['looks']}.",
        "",
        "| cohort | false: fewer anxious episodes | false: calmer episodes | false: more independence "
        "| false: any | textbook single look: false |",
        "|---|---|---|---|---|---|",
    ]

    def cell(x: dict) -> str:
        return f"{x['partners']} ({x['rate']:.1%})"

    for name in ("steady", "worsening", "gappy"):
        f, t = c[name]["false_detections"], c[name]["textbook_single_look"]
        lines.append(f"| {name} | {cell(f[FEWER_ANXIOUS_EPISODES])} | {cell(f[CALMER_EPISODES])} "
                     f"| {cell(f[MORE_INDEPENDENCE])} | {cell(f['any'])} "
                     f"| {t['false_detections']} ({t['rate']:.1%}) |")
    imp = c["improvers"]
    fe, t, ideal = imp["fewer_anxious_episodes"], imp["textbook_single_look"], imp["ideal_upper_bound"]
    lines += [
        "",
        "| improvers | found within 8 weeks | median weeks to detection | found by the end | before the change |",
        "|---|---|---|---|---|",
        f"| this design (daily looks) | {fe['found_within_8_weeks']} ({fe['rate']:.1%}) "
        f"| {fe['median_weeks_to_detection']} | {fe['found_by_end_of_history']} | {fe['detected_before_the_change']} |",
        f"| textbook single look at the end | {t['at_end_of_history']['found']} "
        f"({t['at_end_of_history']['rate']:.1%}) | | | |",
        f"| textbook single look 8 weeks after the change | {t['at_8_weeks_after_the_change']['found']} "
        f"({t['at_8_weeks_after_the_change']['rate']:.1%}) | | | |",
        f"| ideal upper bound | {ideal['found_within_8_weeks']} ({ideal['rate']:.1%}) "
        f"| {ideal['median_weeks_to_detection']} | | |",
    ]
    return "\n".join(lines)


def late_improver_report(seed: int, n: int, cohort_name: str = "late_improvers") -> dict:
    """The current design on ``n`` late improvers (fall from weeks 16-26, 16 weeks of follow-up).

    Every partner is looked at every day, as the service does, from day 62 to
    16 weeks after the change. ``fewer_anxious_episodes`` found within 8 and
    within 16 weeks of the change (a detection before the change is counted
    apart, never as found), the median weeks to detection (of those found
    within 16 weeks), the textbook single look 8 weeks after the change and
    the :func:`ideal_detection` upper bound (within 8 weeks). ``cohort_name``
    may be ``improvers`` too, for comparison (whose histories may end before
    16 weeks after the change). Plain JSON-serialisable data.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    if cohort_name not in ("improvers", "late_improvers"):
        raise ValueError(f"an improver cohort (improvers or late_improvers), not {cohort_name!r}")
    partners = cohort(seed, cohort_name, n)
    within_8, within_16, before, delays = 0, 0, 0, []
    for p in partners:
        hit = first_detections(p, (FEWER_ANXIOUS_EPISODES,), stop_at=p.change_day + 7 * 16)[FEWER_ANXIOUS_EPISODES]
        if hit is None:
            continue
        if hit < p.change_day:
            before += 1
            continue
        within_16 += 1
        delays.append(hit - p.change_day)
        within_8 += hit - p.change_day <= 7 * DETECTION_WEEKS
    at_8 = [textbook_single_look(p, p.change_day + 7 * DETECTION_WEEKS) for p in partners]
    k_8 = sum(1 for t in at_8 if t and t["detected"])
    ideal_days = [i - p.change_day for p in partners if (i := ideal_detection(p)) is not None]
    return {
        "seed": seed, "cohort": cohort_name, "partners": n,
        "fewer_anxious_episodes": {
            "found_within_8_weeks": within_8, "rate_8_weeks": _rate(within_8, n),
            "found_within_16_weeks": within_16, "rate_16_weeks": _rate(within_16, n),
            "median_weeks_to_detection": _median_weeks(delays),
            "detected_before_the_change": before,
        },
        "textbook_single_look_at_8_weeks_after_the_change": {"found": k_8, "rate": _rate(k_8, n)},
        "ideal_upper_bound": {"found_within_8_weeks": len(ideal_days), "rate": _rate(len(ideal_days), n),
                              "median_weeks_to_detection": _median_weeks(ideal_days)},
    }
