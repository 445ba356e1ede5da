"""Synthetic partners with known truth, and the cohort study of the detectors.

Pure and seeded: no I/O, no clock, no global random state. The same
``(seed, cohort, index)`` always gives the same partner, whatever else is
generated, so a study can be grown or cut without changing its partners.

Each partner is a run of daily aggregates (:class:`~services.milestones.rules.
DayAggregate`, logged days only) for a person with anxious
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
* History: 120-180 days (or, for a null cohort, a length of one's choosing,
  e.g. two years: ``history_days``, seeded apart).

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

Couples (the couple milestones ``better_communication`` and
``stronger_bond``; :func:`simulate_couple`, seeded apart from every partner,
so no partner above changes). Each couple is two partners' daily aggregates
(communication ratings, check-ins and conflicts only: the couple rules read
nothing else), day 0 being both partners' first logged day, over 120-180 days.
Latent values are on the 1-5 rating scale and every rating is rounded to a
whole number and clipped to 1-5, so couples near the top have a ceiling:

* Communication: the couple's usual rating 2.3-4.0 (couples working on
  attachment wounds rate their talks middling to good, rarely at the top),
  each partner's own level the couple's +-0.4 (partners see the same talks
  differently), each partner's own day-to-day sd 0.5-1.0 (diary studies of
  daily relationship ratings: a within-person sd of about 0.5-1 point), of
  which 20-50% of the variance is shared by the partners (a good or bad day
  is often both partners'). A week-level drift common to the couple, AR(1)
  across weeks with sd 0.1-0.4 and week-to-week correlation 0-0.6 (busy,
  tired or close weeks; no change in truth: it averages out). A conflict day
  lowers both partners' rating that day by 0.3-1.0.
* Logging: each partner writes a daily reflection with a communication
  rating on their own 50-90% of days (as the partners above log).
* Check-ins: the couple checks in on 60-95% of weeks, on their usual
  weekday +- 1 day; each partner records their side with their own 80-100%
  completion. Each partner's connection level is their communication level
  +-0.3, their understanding their connection +-0.3; a check-in is that
  level plus the couple's week drift plus the partner's own check-in noise
  (sd 0.3-0.6), each item with its own noise (sd 0.35), rounded.
* Conflicts: 0.25-1.5 a week (more in bad weeks: the rate times
  exp(-week drift)), 30-70% repaired within 24 hours (at most 95% ever).
  Each partner records each conflict with their own logging probability, so
  one conflict may be counted twice, as the service would count it.

Couple cohorts (the truth; the change starts on a random day in weeks 5-10):

* ``steady_couples``: nothing changes.
* ``worsening_couples``: communication falls 0.4-1.0 points and connection
  and understanding 0.3-0.9, each linearly over 4-12 weeks; conflicts rise
  by 0-50% and the share repaired within 24 hours falls by 0-0.2.
* ``gappy_couples``: steady, with the patterns of ``gappy`` (couples take
  them in turn): ``gaps``, 1-3 gaps of 7-21 days in the couple's worst weeks,
  for both partners or (half the time) one; ``low_logging_month``, one
  partner logs at 30% for 30 days; ``shy_on_bad_days``, from a random day in
  weeks 5-10 each partner records a day below their own usual communication
  (or a check-in below their usual connection) with only 40-80% of their
  usual probability.
* ``improving_couples``: communication rises by 0.7-1.5 points (the
  couple's mean; each partner's share 0.75-1.25 of it, before the ceiling),
  reached over 0-21 days; connection and understanding rise 0.5-1.2 points
  linearly over 4-12 weeks; over the same weeks the share of conflicts
  repaired within 24 hours rises by 0.1-0.3 and conflicts fall by 0-30%.
  (Couple therapy moves relationship satisfaction by about one standard
  deviation; against a day-to-day sd of 0.5-1.0 and the week drift, these
  are changes of that order, not larger.)

What the couple shares (:attr:`SyntheticCouple.shared_histories`): the
service builds a couple's milestones only from entries their authors shared
(a private entry counts only toward its author's own milestones). Each
partner shares a share of their entries drawn per partner (60-100%: most
people in a couples app share most of what they write about the two of
them, some keep a good part private); each entry (a day's reflection, their
side of a check-in, a day's conflict records) is shared with that
probability, on its own, whatever its rating. The draws have their own
seed stream, so nothing else of a couple changes.

A null couple cohort can also be simulated over a length of one's choosing
(``history_days``, e.g. two years for the false rate of a long watch),
seeded apart (the length is part of the seed), so no couple of the usual
length changes.

:func:`couple_detection_report` runs
:func:`~services.milestones.rules.detect_couple_milestones` every day, as
the service does, beside single-look textbook tests;
:func:`couple_report_table` renders it. About 0.3 s a couple on one core.

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
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import numpy as np
from scipy import stats

from services.milestones import rules as det
from services.milestones.rules import (
    BETTER_COMMUNICATION,
    CALMER_EPISODES,
    FEWER_ANXIOUS_EPISODES,
    MORE_INDEPENDENCE,
    STRONGER_BOND,
    DayAggregate,
    History,
)
from services.milestones.rules import fewer_anxious_episodes as _fewer
from services.milestones.rules.registry import FEWER_EPISODES_LEVELS
from services.milestones.rules.tests_of_change import ALPHA, _common_language, compare_rates
from services.milestones.rules.weekly_means import BLOCK_DAYS, WeeklySettings
from services.milestones.rules.windows import (
    BASELINE_LOGGED_DAYS,
    CALMER_CONFIRM_DAYS,
    INDEPENDENCE_CONFIRM_DAYS,
    WINDOW_DAYS,
)
from services.milestones.rules.wording import _num, _p

__all__ = [
    "COHORTS",
    "GAPPY_PATTERNS",
    "START",
    "DETECTION_WEEKS",
    "SyntheticPartner",
    "simulate_partner",
    "cohort",
    "first_detections",
    "textbook_single_look",
    "ideal_detection",
    "detection_report",
    "report_table",
    "EXTRA_COHORTS",
    "late_improver_report",
    "COUPLE_COHORTS",
    "COUPLE_TYPES",
    "SyntheticCouple",
    "simulate_couple",
    "couple_cohort",
    "couple_first_detections",
    "textbook_communication",
    "textbook_bond",
    "couple_detection_report",
    "couple_report_table",
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
LATE_FOLLOW_UP_WEEKS = (
    16  # late_improvers' histories run until 16 weeks after the change (inclusive)
)
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
    pattern: str | None
    n_days: int
    weekly_rate: float
    logging: float
    noise: dict
    change_day: int | None
    change: float | None
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


def _week_drift(rng: np.random.Generator, n_days: int, sd: float, rho: float) -> np.ndarray:
    """A day's week-level deviation, mean 0, sd ``sd``: AR(1) from week to week (correlation ``rho``)."""
    weeks = n_days // 7 + 1
    z = np.empty(weeks)
    z[0] = rng.normal(0.0, sd)
    for w in range(1, weeks):
        z[w] = rho * z[w - 1] + math.sqrt(1 - rho * rho) * rng.normal(0.0, sd)
    return np.repeat(z, 7)[:n_days]


def _week_multipliers(rng: np.random.Generator, n_days: int, sd: float, rho: float) -> np.ndarray:
    """A day's week-level multiplier, mean 1: log-normal, AR(1) from week to week."""
    if sd == 0:
        return np.ones(n_days)
    return np.exp(_week_drift(rng, n_days, sd, rho) - sd * sd / 2)


def _day_multipliers(rng: np.random.Generator, n_days: int, shape: float) -> np.ndarray:
    return np.ones(n_days) if math.isinf(shape) else rng.gamma(shape, 1.0 / shape, n_days)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _integer(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def simulate_partner(
    seed: int, cohort_name: str, index: int, history_days: int | None = None
) -> SyntheticPartner:
    """The ``index``-th partner of a cohort, from ``seed`` (deterministic).

    ``history_days`` gives a history of that many days instead of 120-180
    (e.g. 730: two years of a null partner, for the false rate of a long
    watch); such a partner is seeded apart (the length is part of its seed),
    so no partner of the usual length changes.
    """
    if cohort_name not in _SEEDED:
        raise ValueError(f"unknown cohort {cohort_name!r}; one of {_SEEDED}")
    if history_days is not None and (
        cohort_name in ("improvers", "late_improvers") or history_days < 120
    ):
        raise ValueError("a history of its own length is for the null cohorts, 120 days or more")
    key = [seed, _SEEDED.index(cohort_name), index] + (
        [] if history_days is None else [history_days]
    )
    rng = np.random.default_rng(key)
    n = _integer(rng, HISTORY_DAYS)
    if history_days is not None:
        n = history_days
    late_change_day: int | None = None
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
        sd, rho, shape = (
            _uniform(rng, WEEK_SD),
            _uniform(rng, WEEK_CORRELATION),
            _uniform(rng, DAY_SHAPE),
        )
        noise = {
            "kind": "overdispersed",
            "week_sd": round(sd, 3),
            "week_correlation": round(rho, 3),
            "day_shape": round(shape, 3),
        }
    week = _week_multipliers(rng, n, sd, rho)
    day = _day_multipliers(rng, n, shape)

    factor = np.ones(n)
    change_day: int | None = None
    change: float | None = None
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
    pattern: str | None = None
    if cohort_name == "gappy":
        pattern = GAPPY_PATTERNS[index % len(GAPPY_PATTERNS)]
        if pattern == "gaps":
            wanted = _integer(rng, GAPS)
            starts = np.arange(14, n - 7, 7)
            worst_first = starts[np.argsort(-week[starts], kind="stable")]
            gap = np.zeros(n, dtype=bool)
            for s in worst_first:
                length = _integer(rng, GAP_DAYS)
                if gap[max(0, s - 7) : s + length + 7].any():
                    continue
                gap[s : s + length] = True
                wanted -= 1
                if wanted == 0:
                    break
            p_log[gap] = 0.0
        elif pattern == "low_logging_month":
            s = _integer(rng, (28, n - LOW_LOGGING_DAYS))
            p_log[s : s + LOW_LOGGING_DAYS] = LOW_LOGGING
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
    activities = rng.poisson(
        activity_rate * _week_multipliers(rng, n, sd, rho) * _day_multipliers(rng, n, shape)
    )

    days = []
    for i in range(n):
        if not logged[i]:
            continue
        k = int(episodes[i])
        centre = intensity_mean + intensity_week[i] + intensity_day[i]
        intensities = tuple(
            int(v) for v in np.clip(np.rint(centre + rng.normal(0.0, 1.2, k)), 0, 10)
        )
        days.append(
            DayAggregate(
                START + timedelta(days=i),
                episodes=k,
                intensities=intensities,
                activities=int(activities[i]),
            )
        )
    return SyntheticPartner(
        cohort_name,
        index,
        pattern,
        n,
        round(weekly_rate, 3),
        round(logging, 3),
        noise,
        change_day,
        None if change is None else round(change, 3),
        tuple(days),
    )


def cohort(
    seed: int, cohort_name: str, n: int, history_days: int | None = None
) -> list[SyntheticPartner]:
    """Partners 0..n-1 of a cohort (``history_days``: see :func:`simulate_partner`)."""
    return [simulate_partner(seed, cohort_name, i, history_days) for i in range(n)]


# --- the cohort study ---

PARTNER_DETECTORS: dict[str, Callable] = {
    FEWER_ANXIOUS_EPISODES: det.fewer_anxious_episodes.fewer_anxious_episodes,
    CALMER_EPISODES: det.calmer_episodes.calmer_episodes,
    MORE_INDEPENDENCE: det.more_independence.more_independence,
}
# The earliest day (day 0 the first logged day) each rule can hold, from the rule's own least data (the
# registry's ``minimum``): the scan's look 3 days earlier has a split with 21 logged days before and 14 after
# (day 37); the windows' rules a baseline of 28 logged days at the earliest (days 0-27), a recent window of 28
# days after it and their confirming looks up to 21 days earlier (day 76). Looking earlier finds nothing, and
# each day is reached (tests/unit/test_cohorts.py).
FIRST_LOOKS: dict[str, int] = {
    FEWER_ANXIOUS_EPISODES: _fewer.SCAN.min_before_logged
    + _fewer.SCAN.min_after_logged
    - 1
    + _fewer.PERSISTENCE_DAYS,
    CALMER_EPISODES: BASELINE_LOGGED_DAYS - 1 + WINDOW_DAYS + max(CALMER_CONFIRM_DAYS),
    MORE_INDEPENDENCE: BASELINE_LOGGED_DAYS - 1 + WINDOW_DAYS + max(INDEPENDENCE_CONFIRM_DAYS),
}


def first_detections(
    partner: SyntheticPartner,
    kinds: tuple[str, ...] = tuple(PARTNER_DETECTORS),
    stop_at: int | None = None,
) -> dict[str, int | None]:
    """The first day (index) each detector fires, looking every day as the service does.

    Looks from the earliest day the rules of ``kinds`` can hold (``FIRST_LOOKS``) to the end of the
    history (or ``stop_at``), each type until it first fires.
    """
    h = partner.history

    def fired(as_of: date, waiting: list[str]) -> set[str]:
        return {kind for kind in waiting if PARTNER_DETECTORS[kind](h, as_of)}

    return _first_days(fired, kinds, min(FIRST_LOOKS[k] for k in kinds), partner.n_days, stop_at)


def _first_days(
    fired: Callable[[date, list[str]], set[str]],
    kinds: tuple[str, ...],
    first_look: int,
    n_days: int,
    stop_at: int | None,
) -> dict[str, int | None]:
    """The first day (index) each kind fires, looking every day from ``first_look`` to the end
    (or ``stop_at``). ``fired(as_of, waiting)``: which of the kinds still waiting hold as of that day."""
    last = n_days - 1 if stop_at is None else min(stop_at, n_days - 1)
    first: dict[str, int | None] = {k: None for k in kinds}
    for i in range(first_look, last + 1):
        for kind in fired(START + timedelta(days=i), [k for k in kinds if first[k] is None]):
            first[kind] = i
        if all(v is not None for v in first.values()):
            break
    return first


def _sums(episodes: list[int], logged: list[bool], lo: int, hi: int) -> tuple[int, int]:
    """(episodes, logged days) on days lo..hi."""
    idx = range(max(lo, 0), min(hi, len(episodes) - 1) + 1)
    return sum(episodes[i] for i in idx if logged[i]), sum(1 for i in idx if logged[i])


def textbook_single_look(partner: SyntheticPartner, look_day: int | None = None) -> dict | None:
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
    return {
        "look_day": end,
        "rate_ratio": _num(cmp.ratio),
        "p_value": _p(cmp.p_value),
        "detected": cmp.p_value < ALPHA,
    }


def ideal_detection(partner: SyntheticPartner, weeks: int = DETECTION_WEEKS) -> int | None:
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
        if cmp.p_value < ALPHA and cmp.ratio <= FEWER_LEVEL_1:
            return i
    return None


FEWER_LEVEL_1 = FEWER_EPISODES_LEVELS[0][1]


def _rate(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def _median_weeks(days: list[int]) -> float | None:
    return round(statistics.median(days) / 7, 1) if days else None


def _false_counts(firsts: list[dict[str, int | None]], unit: str = "partners") -> dict:
    """Partners (or couples) with a (false) detection, per type and of any type (the types in ``firsts``)."""
    n = len(firsts)
    out: dict[str, Any] = {}
    for kind in firsts[0] if firsts else {}:
        k = sum(1 for f in firsts if f[kind] is not None)
        out[kind] = {unit: k, "rate": _rate(k, n)}
    k = sum(1 for f in firsts if any(v is not None for v in f.values()))
    out["any"] = {unit: k, "rate": _rate(k, n)}
    return out


def _report_head(seed: int, unit: str, n: int, first_looks: dict[str, int], textbook: Any) -> dict:
    """The head of a cohort study's report; its cohorts are filled in by the caller. ``first_looks``: the
    earliest day each rule can hold, where its daily looks start."""
    starts = ", ".join(f"{kind} from day {day}" for kind, day in first_looks.items())
    return {
        "seed": seed,
        f"{unit}_per_cohort": n,
        "looks": f"every day from the earliest day each rule can hold ({starts}) to the end of each "
        f"history ({HISTORY_DAYS[0]}-{HISTORY_DAYS[1]} days)",
        "textbook": textbook,
        "cohorts": {},
    }


def detection_report(seed: int, n_per_cohort: int) -> dict:
    """The cohort study: the detectors under daily looks, against the textbook single look.

    For each cohort, ``n_per_cohort`` partners (:func:`cohort`), each rule
    looked at every day from the earliest day it can hold (``FIRST_LOOKS``)
    to the end of each history (as the service evaluates daily and on each
    event).

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
    report = _report_head(
        seed,
        "partners",
        n_per_cohort,
        FIRST_LOOKS,
        "first 28 days against the last 28, episodes per logged day, exact conditional binomial "
        "test one-sided, p < 0.0125, one look",
    )
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
                        "false_detections": _false_counts([firsts[i] for i in ix])["any"][
                            "partners"
                        ],
                        "textbook_false_detections": sum(
                            1 for i in ix if textbook[i] and textbook[i]["detected"]
                        ),
                    }
        else:
            found = _found_after_change(
                [f[FEWER_ANXIOUS_EPISODES] for f in firsts], [p.change_day for p in partners]
            )
            at_8 = [textbook_single_look(p, p.change_day + 7 * DETECTION_WEEKS) for p in partners]
            ideal = [ideal_detection(p) for p in partners]
            ideal_days = [i - p.change_day for p, i in zip(partners, ideal) if i is not None]
            entry["fewer_anxious_episodes"] = {
                "found_within_8_weeks": found["found_within_8_weeks"],
                "rate": _rate(found["found_within_8_weeks"], n_per_cohort),
                **{
                    k: found[k]
                    for k in (
                        "median_weeks_to_detection",
                        "found_by_end_of_history",
                        "detected_before_the_change",
                    )
                },
            }
            entry["false_detections"] = _false_counts(
                [{k: v for k, v in f.items() if k != FEWER_ANXIOUS_EPISODES} for f in firsts]
            )
            k_end = sum(1 for t in textbook if t and t["detected"])
            k_8 = sum(1 for t in at_8 if t and t["detected"])
            entry["textbook_single_look"] = {
                "at_end_of_history": {"found": k_end, "rate": _rate(k_end, n_per_cohort)},
                "at_8_weeks_after_the_change": {"found": k_8, "rate": _rate(k_8, n_per_cohort)},
            }
            entry["ideal_upper_bound"] = {
                "found_within_8_weeks": len(ideal_days),
                "rate": _rate(len(ideal_days), n_per_cohort),
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
        lines.append(
            f"| {name} | {cell(f[FEWER_ANXIOUS_EPISODES])} | {cell(f[CALMER_EPISODES])} "
            f"| {cell(f[MORE_INDEPENDENCE])} | {cell(f['any'])} "
            f"| {t['false_detections']} ({t['rate']:.1%}) |"
        )
    imp = c["improvers"]
    fe, t, ideal = (
        imp["fewer_anxious_episodes"],
        imp["textbook_single_look"],
        imp["ideal_upper_bound"],
    )
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

    Every partner is looked at every day, as the service does, from the
    earliest day the rule can hold (``FIRST_LOOKS``) to 16 weeks after the
    change. ``fewer_anxious_episodes`` found within 8 and within 16 weeks of the change (a detection before the change is counted
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
        hit = first_detections(p, (FEWER_ANXIOUS_EPISODES,), stop_at=p.change_day + 7 * 16)[
            FEWER_ANXIOUS_EPISODES
        ]
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
        "seed": seed,
        "cohort": cohort_name,
        "partners": n,
        "fewer_anxious_episodes": {
            "found_within_8_weeks": within_8,
            "rate_8_weeks": _rate(within_8, n),
            "found_within_16_weeks": within_16,
            "rate_16_weeks": _rate(within_16, n),
            "median_weeks_to_detection": _median_weeks(delays),
            "detected_before_the_change": before,
        },
        "textbook_single_look_at_8_weeks_after_the_change": {"found": k_8, "rate": _rate(k_8, n)},
        "ideal_upper_bound": {
            "found_within_8_weeks": len(ideal_days),
            "rate": _rate(len(ideal_days), n),
            "median_weeks_to_detection": _median_weeks(ideal_days),
        },
    }


# --- synthetic couples (the couple milestones) ---

COUPLE_COHORTS = ("steady_couples", "worsening_couples", "gappy_couples", "improving_couples")
COUPLE_GAPPY_PATTERNS = GAPPY_PATTERNS
# couples are seeded [seed, COUPLE_STREAM + position in COUPLE_COHORTS, index]: apart from every partner
COUPLE_STREAM = 1000
# what each partner shares is drawn from [seed, COUPLE_SHARING_STREAM + position in COUPLE_COHORTS, index]
COUPLE_SHARING_STREAM = 2000
COUPLE_SHARING = (0.6, 1.0)  # a partner's share of their entries shared with the couple
COUPLE_TYPES = (BETTER_COMMUNICATION, STRONGER_BOND)

# the couple simulator's ranges (latent values are on the 1-5 rating scale, before rounding)
COUPLE_LEVEL = (2.3, 4.0)  # the couple's usual communication rating
PARTNER_OFFSET = 0.4  # each partner's own level: the couple's +- up to this
DAY_SD = (0.5, 1.0)  # a partner's own day-to-day sd
SHARED_DAY = (0.2, 0.5)  # share of the day-to-day variance the partners have in common
COUPLE_WEEK_SD = (0.1, 0.4)  # the couple's week-level drift: sd ...
COUPLE_WEEK_CORRELATION = (0.0, 0.6)  # ... and week-to-week correlation (AR(1))
BOND_OFFSET = 0.3  # a partner's connection level: their communication level +- up to this
UNDERSTANDING_OFFSET = 0.3  # their understanding: their connection +- up to this
CHECK_IN_WEEKS = (0.6, 0.95)  # the couple's share of weeks with a check-in
CHECK_IN_COMPLETION = (0.8, 1.0)  # a partner's chance of recording their side of a check-in
CHECK_IN_SD = (0.3, 0.6)  # a partner's check-in noise around their level and the week
ITEM_SD = 0.35  # each check-in item's own noise
CONFLICTS_PER_WEEK = (0.25, 1.5)
REPAIR_SHARE = (0.3, 0.7)  # share of conflicts repaired within 24 hours
CONFLICT_DIP = (0.3, 1.0)  # a conflict day's communication, lower by this for both partners
REPAIR_MAX = 0.95
COMMUNICATION_RISE = (0.7, 1.5)  # improving couples: the couple's rise (mean of the partners') ...
PARTNER_SHARE = (0.75, 1.25)  # ... times each partner's own share
COMMUNICATION_RAMP_DAYS = (0, 21)  # reached over this many days from the change
BOND_RISE = (0.5, 1.2)  # connection and understanding ...
BOND_RAMP_WEEKS = (4, 12)  # ... rise linearly over this many weeks from the change
REPAIR_RISE = (0.1, 0.3)  # the share repaired within 24 hours, over the bond ramp
CONFLICT_FALL = (0.0, 0.3)  # fewer conflicts, over the bond ramp
COMMUNICATION_FALL = (0.4, 1.0)  # worsening couples, over WORSENING_RAMP_WEEKS
BOND_FALL = (0.3, 0.9)
WORSENING_RAMP_WEEKS = (4, 12)
REPAIR_FALL = (0.0, 0.2)
CONFLICT_RISE = (0.0, 0.5)
# no couple scan holds before its least weeks before and after a change: day 41 (stronger_bond has no
# confirming look; better_communication's, 3 days earlier, holds from day 44)
COUPLE_FIRST_LOOK_DAY = (
    BLOCK_DAYS * (WeeklySettings.min_before_weeks + WeeklySettings.min_after_weeks) - 1
)
# The textbook single looks' own conditions (never the service's rules).
TEXTBOOK_MIN_RATINGS, TEXTBOOK_MIN_EFFECT = (
    10,
    0.7,
)  # communication: values a window, common-language effect
TEXTBOOK_MIN_TAU, TEXTBOOK_MIN_WEEKS = 0.5, 8  # check-ins: Kendall's tau, weeks with a check-in


@dataclass(frozen=True)
class SyntheticCouple:
    """One synthetic couple: both partners' daily aggregates and the truth behind them.

    ``a`` and ``b`` hold each partner's logged days (day 0 is ``START``, logged
    by both). ``partners``: each partner's own parameters; ``shared``: the
    couple's. ``change_day`` is the first day of the change (improving and
    worsening couples; for ``shy_on_bad_days``, the day the shyness starts);
    ``change`` its drawn sizes (``communication``: each partner's rise, a
    fall being negative, and ``communication_mean`` the couple's; ``bond``:
    connection and understanding; ``repair``: the share repaired within 24
    hours; ``conflicts``: the relative change in their rate; the ramps in days).
    """

    cohort: str
    index: int
    pattern: str | None
    n_days: int
    partners: tuple[dict, dict]
    shared: dict
    change_day: int | None
    change: dict | None
    a: tuple[DayAggregate, ...]
    b: tuple[DayAggregate, ...]
    sharing: tuple[float, float] = (
        1.0,
        1.0,
    )  # each partner's share of entries shared with the couple
    a_shared: tuple[
        DayAggregate, ...
    ] = ()  # the days of each partner's shared entries (what couple rules read)
    b_shared: tuple[DayAggregate, ...] = ()

    @property
    def histories(self) -> tuple[History, History]:
        """Everything each partner wrote (their own milestones read this)."""
        return History(self.a), History(self.b)

    @property
    def shared_histories(self) -> tuple[History, History]:
        """Each partner's shared entries only: what the service gives the couple rules."""
        return History(self.a_shared), History(self.b_shared)

    def day(self, i: int) -> date:
        return START + timedelta(days=i)


def _ramp(n: int, start: int, days: int) -> np.ndarray:
    """0 before ``start``, rising linearly to 1 over ``days`` days from it (a step if 0)."""
    i = np.arange(n)
    return np.clip((i - start + 1) / (days + 1), 0.0, 1.0) * (i >= start)


def _ratings(latent: np.ndarray) -> np.ndarray:
    """Whole-number ratings 1-5: rounded, with the scale's floor and ceiling."""
    return np.clip(np.rint(latent), 1, 5).astype(int)


def _couple_gaps(
    rng: np.random.Generator, n: int, week: np.ndarray
) -> list[tuple[int, int, tuple[int, ...]]]:
    """1-3 gaps of 7-21 days in the couple's worst weeks: (start, length, partners who stop)."""
    wanted = _integer(rng, GAPS)
    starts = np.arange(14, n - 7, 7)
    worst_first = starts[np.argsort(week[starts], kind="stable")]
    taken = np.zeros(n, dtype=bool)
    gaps = []
    for s in worst_first:
        length = _integer(rng, GAP_DAYS)
        who = (0, 1) if rng.random() < 0.5 else (int(rng.integers(2)),)
        if taken[max(0, s - 7) : s + length + 7].any():
            continue
        taken[s : s + length] = True
        gaps.append((int(s), length, who))
        if len(gaps) == wanted:
            break
    return gaps


@dataclass(frozen=True)
class _CoupleChange:
    """What changes, day by day (improving and worsening couples; nothing otherwise)."""

    change_day: int | None
    truth: dict | None
    communication: tuple[np.ndarray, np.ndarray]  # each partner's latent shift
    bond: np.ndarray  # connection and understanding, latent shift
    repair: np.ndarray  # the share repaired within 24 hours, shift
    conflicts: np.ndarray  # the conflict rate, factor


def _couple_change(rng: np.random.Generator, n: int, cohort_name: str) -> _CoupleChange:
    if cohort_name not in ("improving_couples", "worsening_couples"):
        return _CoupleChange(
            None, None, (np.zeros(n), np.zeros(n)), np.zeros(n), np.zeros(n), np.ones(n)
        )
    improving = cohort_name == "improving_couples"
    change_day = _integer(rng, CHANGE_DAYS)
    sign = 1.0 if improving else -1.0
    mean = _uniform(rng, COMMUNICATION_RISE if improving else COMMUNICATION_FALL)
    if improving:
        shares = [_uniform(rng, PARTNER_SHARE) for _ in range(2)]
        rises = [
            mean * s * 2 / sum(shares) for s in shares
        ]  # the couple's mean rise stays the drawn one
        comm_days = _integer(rng, COMMUNICATION_RAMP_DAYS)
    else:
        rises = [mean, mean]
        comm_days = 7 * _integer(rng, WORSENING_RAMP_WEEKS)
    bond_days = 7 * _integer(rng, BOND_RAMP_WEEKS if improving else WORSENING_RAMP_WEEKS)
    bond = _uniform(rng, BOND_RISE if improving else BOND_FALL)
    repair = _uniform(rng, REPAIR_RISE if improving else REPAIR_FALL)
    conflicts = _uniform(rng, CONFLICT_FALL if improving else CONFLICT_RISE)
    comm_ramp, bond_ramp = _ramp(n, change_day, comm_days), _ramp(n, change_day, bond_days)
    truth = {
        "communication": [round(sign * r, 3) for r in rises],
        "communication_mean": round(sign * mean, 3),
        "communication_ramp_days": comm_days,
        "bond": round(sign * bond, 3),
        "bond_ramp_days": bond_days,
        "repair": round(sign * repair, 3),
        "conflicts": round(-sign * conflicts, 3),
    }
    return _CoupleChange(
        change_day,
        truth,
        (sign * rises[0] * comm_ramp, sign * rises[1] * comm_ramp),
        sign * bond * bond_ramp,
        sign * repair * bond_ramp,
        1 - sign * conflicts * bond_ramp,
    )


def _gappy_logging(
    rng: np.random.Generator,
    index: int,
    n: int,
    week: np.ndarray,
    people: list[dict],
    latent: list[np.ndarray],
    check_latent: list[np.ndarray],
    shared: dict,
) -> tuple[str, int | None, list[np.ndarray], list[np.ndarray]]:
    """A gappy couple's logging: (pattern, the day shyness starts, each partner's factor on the
    days' logging probability, and on the check-ins'). Notes what it drew in ``people`` and ``shared``."""
    pattern = COUPLE_GAPPY_PATTERNS[index % len(COUPLE_GAPPY_PATTERNS)]
    factor = [np.ones(n), np.ones(n)]
    if pattern == "gaps":
        gaps = _couple_gaps(rng, n, week)
        for s, length, who in gaps:
            for k in who:
                factor[k][s : s + length] = 0.0
        shared["gaps"] = [[s, length, list(who)] for s, length, who in gaps]
        return pattern, None, factor, factor
    if pattern == "low_logging_month":
        k, s = int(rng.integers(2)), _integer(rng, (28, n - LOW_LOGGING_DAYS))
        factor[k][s : s + LOW_LOGGING_DAYS] = LOW_LOGGING / people[k]["logging"]
        shared["low_logging_month"] = [k, s]
        return pattern, None, factor, factor
    # shy_on_bad_days: both partners, each their own shyness; a bad day or check-in is below their own level
    start = _integer(rng, CHANGE_DAYS)
    later = np.arange(n) >= start
    check_factor = [np.ones(n), np.ones(n)]
    for k, person in enumerate(people):
        shy = person["shy_factor"] = _uniform(rng, SHY_FACTOR)
        factor[k] = np.where(later & (latent[k] < person["communication_level"]), shy, 1.0)
        check_factor[k] = np.where(later & (check_latent[k] < person["connection_level"]), shy, 1.0)
    return pattern, start, factor, check_factor


def _couple_partner_days(
    rng: np.random.Generator,
    person: dict,
    n: int,
    latent: np.ndarray,
    check_in: np.ndarray,
    check_latent: np.ndarray,
    factor: np.ndarray,
    check_factor: np.ndarray,
    conflicts: np.ndarray,
    repaired: np.ndarray,
) -> tuple[DayAggregate, ...]:
    """One partner's logged days: reflections with a communication rating, their side of the
    check-ins, and the conflicts they recorded (each conflict recorded by each partner on their own,
    so the service may count one conflict twice, as it would)."""
    reflects = rng.random(n) < person["logging"] * factor
    reflects[0] = True  # day 0 is the first logged day of both
    ratings = _ratings(latent)
    checks = check_in & (rng.random(n) < person["check_in_completion"] * check_factor)
    connection = _ratings(check_latent + rng.normal(0.0, ITEM_SD, n))
    understanding = _ratings(
        check_latent + person["understanding_offset"] + rng.normal(0.0, ITEM_SD, n)
    )
    records, records_repaired = np.zeros(n, dtype=int), np.zeros(n, dtype=int)
    for i in np.flatnonzero(conflicts):
        seen = rng.random(int(conflicts[i])) < person["logging"] * factor[i]
        records[i], records_repaired[i] = int(seen.sum()), int(seen[: int(repaired[i])].sum())
    return tuple(
        DayAggregate(
            START + timedelta(days=i),
            communication=(int(ratings[i]),) if reflects[i] else (),
            connection=(int(connection[i]),) if checks[i] else (),
            understanding=(int(understanding[i]),) if checks[i] else (),
            weekly_check_ins=int(checks[i]),
            conflicts=int(records[i]),
            conflicts_repaired_24h=int(records_repaired[i]),
        )
        for i in range(n)
        if reflects[i] or checks[i] or records[i]
    )


def _shared_days(
    rng: np.random.Generator, share: float, days: tuple[DayAggregate, ...]
) -> tuple[DayAggregate, ...]:
    """The days of a partner's shared entries: each entry (reflection, check-in, conflicts) shared or not."""
    out = []
    for d in days:
        reflection, check_in, conflicts = rng.random(3) < share
        kept = replace(
            d,
            communication=d.communication if reflection else (),
            connection=d.connection if check_in else (),
            understanding=d.understanding if check_in else (),
            weekly_check_ins=d.weekly_check_ins if check_in else 0,
            conflicts=d.conflicts if conflicts else 0,
            conflicts_repaired_24h=d.conflicts_repaired_24h if conflicts else 0,
        )
        if kept.has_entries:
            out.append(kept)
    return tuple(out)


def _rounded(values: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in values.items()}


def simulate_couple(
    seed: int, cohort_name: str, index: int, history_days: int | None = None
) -> SyntheticCouple:
    """The ``index``-th couple of a couple cohort, from ``seed`` (deterministic).

    ``history_days``: a null couple's history of that many days instead of
    120-180 (seeded apart: the length is part of the seed).
    """
    if cohort_name not in COUPLE_COHORTS:
        raise ValueError(f"unknown couple cohort {cohort_name!r}; one of {COUPLE_COHORTS}")
    if history_days is not None and (cohort_name == "improving_couples" or history_days < 120):
        raise ValueError(
            "a history of its own length is for the null couple cohorts, 120 days or more"
        )
    length = [] if history_days is None else [history_days]
    rng = np.random.default_rng(
        [seed, COUPLE_STREAM + COUPLE_COHORTS.index(cohort_name), index] + length
    )
    n = _integer(rng, HISTORY_DAYS)
    if history_days is not None:
        n = history_days
    level = _uniform(rng, COUPLE_LEVEL)
    shared = {
        "communication_level": level,
        "week_sd": _uniform(rng, COUPLE_WEEK_SD),
        "week_correlation": _uniform(rng, COUPLE_WEEK_CORRELATION),
        "shared_day_variance": _uniform(rng, SHARED_DAY),
        "check_in_weeks": _uniform(rng, CHECK_IN_WEEKS),
        "check_in_weekday": int(rng.integers(7)),
        "conflicts_per_week": _uniform(rng, CONFLICTS_PER_WEEK),
        "repair_share": _uniform(rng, REPAIR_SHARE),
        "conflict_dip": _uniform(rng, CONFLICT_DIP),
    }
    people = []
    for _ in range(2):
        own = level + _uniform(rng, (-PARTNER_OFFSET, PARTNER_OFFSET))
        people.append(
            {
                "logging": _uniform(rng, LOGGING),
                "communication_level": own,
                "day_sd": _uniform(rng, DAY_SD),
                "connection_level": own + _uniform(rng, (-BOND_OFFSET, BOND_OFFSET)),
                "understanding_offset": _uniform(
                    rng, (-UNDERSTANDING_OFFSET, UNDERSTANDING_OFFSET)
                ),
                "check_in_completion": _uniform(rng, CHECK_IN_COMPLETION),
                "check_in_sd": _uniform(rng, CHECK_IN_SD),
            }
        )
    week = _week_drift(rng, n, shared["week_sd"], shared["week_correlation"])
    change = _couple_change(rng, n, cohort_name)

    # conflicts (more of them in bad weeks) and their repair within 24 hours
    conflicts = rng.poisson(shared["conflicts_per_week"] / 7 * np.exp(-week) * change.conflicts)
    repaired = rng.binomial(
        conflicts, np.clip(shared["repair_share"] + change.repair, 0.0, REPAIR_MAX)
    )

    # each partner's latent daily communication: own level, the couple's week, a day shared in part, conflicts
    shared_noise, w = rng.normal(0.0, 1.0, n), shared["shared_day_variance"]
    latent = [
        p["communication_level"]
        + week
        + change.communication[k]
        + p["day_sd"] * (math.sqrt(w) * shared_noise + math.sqrt(1 - w) * rng.normal(0.0, 1.0, n))
        - shared["conflict_dip"] * (conflicts > 0)
        for k, p in enumerate(people)
    ]

    # check-ins: most weeks, on the couple's weekday +- 1 day; each partner's rating of the week
    check_in = np.zeros(n, dtype=bool)
    for wk in range(n // 7 + 1):
        d = min(
            max(7 * wk + shared["check_in_weekday"] + int(rng.integers(-1, 2)), 7 * wk), 7 * wk + 6
        )
        if d < n and rng.random() < shared["check_in_weeks"]:
            check_in[d] = True
    check_latent = [
        p["connection_level"] + week + change.bond + rng.normal(0.0, p["check_in_sd"], n)
        for p in people
    ]

    # logging: each partner's own probability, times a factor (gaps, a low month, shyness)
    pattern, change_day = None, change.change_day
    factor = check_factor = [np.ones(n), np.ones(n)]
    if cohort_name == "gappy_couples":
        pattern, change_day, factor, check_factor = _gappy_logging(
            rng, index, n, week, people, latent, check_latent, shared
        )
    a, b = (
        _couple_partner_days(
            rng,
            p,
            n,
            latent[k],
            check_in,
            check_latent[k],
            factor[k],
            check_factor[k],
            conflicts,
            repaired,
        )
        for k, p in enumerate(people)
    )
    sharing_rng = np.random.default_rng(
        [seed, COUPLE_SHARING_STREAM + COUPLE_COHORTS.index(cohort_name), index] + length
    )
    sharing = (_uniform(sharing_rng, COUPLE_SHARING), _uniform(sharing_rng, COUPLE_SHARING))
    a_shared, b_shared = (
        _shared_days(sharing_rng, share, days) for share, days in zip(sharing, (a, b))
    )
    return SyntheticCouple(
        cohort_name,
        index,
        pattern,
        n,
        (_rounded(people[0]), _rounded(people[1])),
        _rounded(shared),
        change_day,
        change.truth,
        a,
        b,
        (round(sharing[0], 3), round(sharing[1], 3)),
        a_shared,
        b_shared,
    )


def couple_cohort(
    seed: int, cohort_name: str, n: int, history_days: int | None = None
) -> list[SyntheticCouple]:
    """Couples 0..n-1 of a couple cohort (``history_days``: see :func:`simulate_couple`)."""
    return [simulate_couple(seed, cohort_name, i, history_days) for i in range(n)]


# --- the cohort study of the couple milestones ---


def couple_first_detections(
    couple: SyntheticCouple, kinds: tuple[str, ...] = COUPLE_TYPES, stop_at: int | None = None
) -> dict[str, int | None]:
    """The first day (index) each couple milestone fires, looking every day as the service does.

    :func:`~services.milestones.rules.detect_couple_milestones` on what
    the couple shares (:attr:`SyntheticCouple.shared_histories`, as the
    service gives them) as of every day from day 41 (neither scan holds
    earlier: 4 weeks before a change and 2 after it) to the end of the history (or ``stop_at``).
    """
    a, b = couple.shared_histories

    def fired(as_of: date, waiting: list[str]) -> set[str]:
        return {d.type for d in det.detect_couple_milestones(a, b, as_of) if d.type in waiting}

    return _first_days(fired, kinds, COUPLE_FIRST_LOOK_DAY, couple.n_days, stop_at)


def _day_ratings(days: tuple[DayAggregate, ...], lo: int, hi: int) -> list[float]:
    """A partner's daily communication values (a day's ratings averaged) on days lo..hi."""
    return [
        statistics.fmean(d.communication)
        for d in days
        if d.communication and lo <= (d.day - START).days <= hi
    ]


def textbook_communication(couple: SyntheticCouple, look_day: int | None = None) -> dict | None:
    """The textbook test of ``better_communication``, once: the first 28 days against the 28 ending on ``look_day``.

    Both partners' daily communication values pooled, Mann-Whitney U
    one-sided, p < 0.0125 and common-language effect >= 0.7; nothing else (no
    look at each partner, no persistence). ``look_day`` defaults to the last
    day. None if the windows overlap or either has fewer than 10 values.
    """
    end = couple.n_days - 1 if look_day is None else look_day
    if end - 27 <= 27 or end >= couple.n_days:
        return None
    first = [v for days in (couple.a, couple.b) for v in _day_ratings(days, 0, 27)]
    last = [v for days in (couple.a, couple.b) for v in _day_ratings(days, end - 27, end)]
    if min(len(first), len(last)) < TEXTBOOK_MIN_RATINGS:
        return None
    effect, p = _common_language(last, first)
    return {
        "look_day": end,
        "common_language_effect": _num(effect),
        "p_value": _p(p),
        "detected": p < ALPHA and effect >= TEXTBOOK_MIN_EFFECT,
    }


def textbook_bond(couple: SyntheticCouple, look_day: int | None = None) -> dict | None:
    """The textbook test of ``stronger_bond``, once: Kendall's tau over the whole history up to ``look_day``.

    Weekly means of both partners' connection and understanding ratings
    (7-day blocks from day 0; weeks without a check-in left out), tau
    one-sided, p < 0.0125 and tau >= 0.5; no repair rule, no persistence.
    ``look_day`` defaults to the last day. None with fewer than 8 weeks.
    """
    end = couple.n_days - 1 if look_day is None else look_day
    if end >= couple.n_days:
        return None
    weeks: dict[int, list[int]] = {}
    for d in couple.a + couple.b:
        i = (d.day - START).days
        if i <= end and (d.connection or d.understanding):
            weeks.setdefault(i // 7, []).extend(d.connection + d.understanding)
    if len(weeks) < TEXTBOOK_MIN_WEEKS:
        return None
    order = sorted(weeks)
    res = stats.kendalltau(
        order, [statistics.fmean(weeks[w]) for w in order], alternative="greater"
    )
    tau, p = float(res.statistic), float(res.pvalue)
    if not math.isfinite(tau):
        tau, p = 0.0, 1.0
    return {
        "look_day": end,
        "weeks": len(order),
        "kendall_tau": _num(tau),
        "p_value": _p(p),
        "detected": p < ALPHA and tau >= TEXTBOOK_MIN_TAU,
    }


COUPLE_TEXTBOOK: dict[str, Callable[[SyntheticCouple, int | None], dict | None]] = {
    BETTER_COMMUNICATION: textbook_communication,
    STRONGER_BOND: textbook_bond,
}


def _found_after_change(
    hits: list[int | None], change_days: list[int], weeks: int = DETECTION_WEEKS
) -> dict:
    """Improvers found within ``weeks`` of their change and by the end; a hit before the change is apart."""
    within, before, by_end, delays = 0, 0, 0, []
    for hit, change_day in zip(hits, change_days):
        if hit is None:
            continue
        if hit < change_day:
            before += 1
            continue
        by_end += 1
        if hit - change_day <= 7 * weeks:
            within += 1
            delays.append(hit - change_day)
    return {
        "found_within_8_weeks": within,
        "median_weeks_to_detection": _median_weeks(delays),
        "found_by_end_of_history": by_end,
        "detected_before_the_change": before,
    }


def _textbook_found(looks: list[dict | None], n: int) -> dict:
    k = sum(1 for t in looks if t and t["detected"])
    return {"detected": k, "rate": _rate(k, n)}


def couple_detection_report(seed: int, n: int) -> dict:
    """The cohort study of the couple milestones: daily looks against the textbook single look.

    For each couple cohort, ``n`` couples (:func:`couple_cohort`), each looked
    at every day from day 41 to the end of their history with
    :func:`~services.milestones.rules.detect_couple_milestones`, as the
    service evaluates daily and on each event.

    * ``steady_couples``, ``worsening_couples``, ``gappy_couples``: couples
      with any detection of ``better_communication``, of ``stronger_bond``,
      and of either (all false here), and the textbook tests' detections at
      one look at the end of each history; ``gappy_couples`` also by pattern.
    * ``improving_couples``, per type: found within 8 weeks of the change and
      by the end of the history (a detection before the change is counted
      apart, never as found), the median weeks from the change to the
      milestone; the textbook tests at the end of the history and 8 weeks
      after the change.

    Returns plain JSON-serialisable data.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    report = _report_head(
        seed,
        "couples",
        n,
        {kind: COUPLE_FIRST_LOOK_DAY for kind in COUPLE_TYPES},
        {
            BETTER_COMMUNICATION: "first 28 days against the last 28, both partners' daily ratings pooled, "
            "Mann-Whitney U one-sided, p < 0.0125 and common-language effect >= 0.7, one look",
            STRONGER_BOND: "Kendall's tau of weekly mean connection/understanding over the whole history, one-sided, "
            "p < 0.0125 and tau >= 0.5, one look",
        },
    )
    for name in COUPLE_COHORTS:
        couples = couple_cohort(seed, name, n)
        firsts = [couple_first_detections(c) for c in couples]
        at_end = {kind: [test(c, None) for c in couples] for kind, test in COUPLE_TEXTBOOK.items()}
        entry: dict[str, Any] = {"couples": n}
        if name != "improving_couples":
            entry["false_detections"] = _false_counts(firsts, "couples")
            entry["textbook_single_look"] = {
                kind: _textbook_found(looks, n) for kind, looks in at_end.items()
            }
            if name == "gappy_couples":
                entry["by_pattern"] = {}
                for pattern in COUPLE_GAPPY_PATTERNS:
                    ix = [i for i, c in enumerate(couples) if c.pattern == pattern]
                    entry["by_pattern"][pattern] = {
                        "couples": len(ix),
                        "false_detections": {
                            **{
                                kind: sum(1 for i in ix if firsts[i][kind] is not None)
                                for kind in COUPLE_TYPES
                            },
                            "any": sum(
                                1 for i in ix if any(v is not None for v in firsts[i].values())
                            ),
                        },
                        "textbook_false_detections": {
                            kind: _textbook_found([looks[i] for i in ix], len(ix))["detected"]
                            for kind, looks in at_end.items()
                        },
                    }
        else:
            change_days = [c.change_day for c in couples]
            at_8 = {
                kind: [test(c, c.change_day + 7 * DETECTION_WEEKS) for c in couples]
                for kind, test in COUPLE_TEXTBOOK.items()
            }
            for kind in COUPLE_TYPES:
                found = _found_after_change([f[kind] for f in firsts], change_days)
                found["rate_within_8_weeks"] = _rate(found["found_within_8_weeks"], n)
                found["rate_by_end_of_history"] = _rate(found["found_by_end_of_history"], n)
                found["textbook_single_look"] = {
                    "at_end_of_history": _textbook_found(at_end[kind], n),
                    "at_8_weeks_after_the_change": _textbook_found(at_8[kind], n),
                }
                entry[kind] = found
        report["cohorts"][name] = entry
    return report


def couple_report_table(report: dict) -> str:
    """A :func:`couple_detection_report` as Markdown tables (for BENCHMARKS.md and the like)."""
    c = report["cohorts"]

    def share(k: int, rate: float) -> str:
        return f"{k} ({rate:.1%})"

    lines = [
        f"Seed {report['seed']}, {report['couples_per_cohort']} couples a cohort; {report['looks']}.",
        "",
        "| cohort | false: better communication | false: stronger bond | false: either "
        "| textbook single look: better communication | textbook single look: stronger bond |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("steady_couples", "worsening_couples", "gappy_couples"):
        f, t = c[name]["false_detections"], c[name]["textbook_single_look"]
        cells = [share(f[k]["couples"], f[k]["rate"]) for k in (*COUPLE_TYPES, "any")]
        cells += [share(t[k]["detected"], t[k]["rate"]) for k in COUPLE_TYPES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for pattern, p in c["gappy_couples"]["by_pattern"].items():
        f, t = p["false_detections"], p["textbook_false_detections"]
        lines.append(
            f"| gappy: {pattern} ({p['couples']}) | {f[BETTER_COMMUNICATION]} | {f[STRONGER_BOND]} "
            f"| {f['any']} | {t[BETTER_COMMUNICATION]} | {t[STRONGER_BOND]} |"
        )
    imp = c["improving_couples"]
    lines += [
        "",
        f"| improving couples ({imp['couples']}) | found within 8 weeks | median weeks to the milestone "
        "| found by the end | detected before the change | textbook single look 8 weeks after the change "
        "| textbook single look at the end |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in COUPLE_TYPES:
        f, t = imp[kind], imp[kind]["textbook_single_look"]
        at_8, at_end = t["at_8_weeks_after_the_change"], t["at_end_of_history"]
        lines.append(
            f"| {kind} | {share(f['found_within_8_weeks'], f['rate_within_8_weeks'])} "
            f"| {f['median_weeks_to_detection']} | {share(f['found_by_end_of_history'], f['rate_by_end_of_history'])} "
            f"| {f['detected_before_the_change']} | {share(at_8['detected'], at_8['rate'])} "
            f"| {share(at_end['detected'], at_end['rate'])} |"
        )
    return "\n".join(lines)
