"""Milestone detectors: pure functions from daily aggregates to detections.

Nothing here touches a database, a broker, a file or the clock. The caller
gives each partner's daily aggregates (:class:`DayAggregate`, keyed by the
partner's local date) and the evaluation date ``as_of``; the detectors return
every milestone type and level whose rule holds as of that date
(:class:`Detection`). Deciding which levels are new, storing and announcing
them is the caller's business: a level is achieved once, ever, and never taken
back. The same aggregates always give the same detections, whatever order
they are given in.

The rules follow ``shared/milestone-science.md``, tuned on the synthetic
cohorts of :mod:`simulation.cohorts` (never loosened):

* Windows of the partner milestones (fewer anxious episodes, calmer
  episodes, more independence). *baseline*: the partner's first 28 *logged*
  days, from the first logged day, within its first 56 days (a partner who
  logged fewer than 28 of those 56 days gets the 56 days); *recent*: the 28
  days ending at ``as_of`` (inclusive). Each needs at least 14 logged days
  and they must not overlap, or nothing is tested. Days after ``as_of`` are
  ignored (a baseline that would reach past the recent window's start is an
  overlap). "The first 28 days with data" read as 28 logged days gives a
  partner who logs half the days 28 baseline days, not 14.
* Rates are per logged day: a day without logging is missing, never a day
  without anxiety.
* Logging guard: if the recent window's share of logged days is below 0.9 of
  the baseline's, nothing is tested (people may stop logging on bad days; a
  month with fewer logged days is not evidence of a calmer month).
* Alpha. Each family has alpha 0.0125 (a result counts when p < alpha), and
  no look uses more. Because the service looks every day and on every event,
  the alpha of a look is spent over time (:func:`look_alpha`): 0.0125 in the
  first 28 days in which a detection is possible, then 0.0125 / 4,
  0.0125 / 9, ... (period ** 2), so the alpha of all periods together stays
  below 0.021 however long a partner is watched.
* Persistence: a statistical rule must hold as of ``as_of`` and also as of
  ``as_of - 7 days`` (every window shifted, only the data up to that day, its
  own look alpha), and each level must hold at every look. Calmer episodes
  and more independence must also hold as of 14 and 21 days earlier (their
  tests keep their level at each look, so daily looks need more confirming
  than the episode-day test, which is conservative; tuned on the cohorts).

Choices made where the notes are silent (each is documented where it lives):

* ``fewer_anxious_episodes`` counts *episode-days* (logged days with at least
  one episode), as the notes say, so one bad day with many episodes weighs as
  one day, and tests them with the E-test (``scipy.stats.poisson_means_test``,
  which the notes name as the more powerful test) rather than the exact
  conditional binomial test. Episode counts were tried and not kept: they are
  over-dispersed (bad days, bad weeks), and every count test made valid for
  that (quasi-Poisson with the weekly dispersion, with a t reference or an
  upper bound, capped counts) found fewer improvers at the same false rate
  than episode-days, whose 0/1 days absorb a bad day's pile-up. On the
  cohorts, a single look of the E-test on episode-days rejects a steady
  partner 0.09% (Poisson) to 0.38% (over-dispersed) of the time at 0.0125.
* ``calmer_episodes`` keeps the notes' Mann-Whitney U on the episodes'
  intensities and its effect size, and also asks the weeks: Welch's t-test on
  the weekly mean intensities must agree (p below the look's alpha), since
  episodes of one bad week are not independent.
* ``more_independence`` counts activities per logged day, as the notes say;
  the binomial test must also hold on the counts divided by their
  over-dispersion (quasi-Poisson phi from the weekly counts at its 75% upper
  confidence bound, at least 1), since activities come in busy weeks.
* ``calmer_episodes``, ``better_communication``, ``stronger_bond`` and
  ``more_independence`` have a single level (1).
* ``better_communication``: each partner's daily value is the mean of that
  day's ratings; the windows are the partner's first and last
  ``min(14, n // 2)`` rated days (so they never overlap) and both partners
  need at least 10 per window. (Its windows, alpha and persistence are the
  notes' defaults: the cohort study does not cover the couple milestones.)
* ``stronger_bond``: weekly blocks are 7-day blocks counted back from
  ``as_of``; the last 26 weeks at most; the week's value is the mean of all
  connection and understanding ratings of both partners in it. Repair of
  conflicts: see :func:`stronger_bond`.
* ``rituals_kept`` is the couple's (both partners' rituals together); the
  weekly check-in rhythm is its own milestone type, ``check_in_rhythm``,
  because a (type, level) pair is achieved once and the ritual counts already
  use levels 1 to 4.
* The couple rules are given the days of each partner's shared entries
  alone (the service builds them so). Their evidence, which both partners
  read, holds the windows compared with their counts and means, the effect
  size and the p-value: never a breakdown (by ritual, by week, by partner)
  that would tell what a single entry said.
* ``worsening_check`` compares the last 28 days with the 28 days before them
  (a change for the worse lately), on episode-days with the exact binomial
  test, with the 7-day persistence; it never celebrates, so it keeps the
  notes' defaults.
* A headline must never read as a decline: a detection whose own numbers would
  not show the improvement (e.g. lower-ranked but higher-mean intensities) is
  not made. A baseline spanning three months is named "October to December".

What the cohorts show (every partner looked at every day for 120-180 days,
2000 partners a cohort, seeds 101 and 102; see
:func:`simulation.cohorts.detection_report`): partners with a false
celebration of any kind: steady 0.5%, worsening 0.3%, gappy 0.65% (the notes'
defaults as first written: 14.4%, 14.0% and 9.3%, mostly calmer episodes and
more independence); ``fewer_anxious_episodes`` alone: 0.15%, 0% and 0.5%
(defaults: 0.25%, 0% and 0.9%). Improvers whose episode rate fell by 50-75%
found within 8 weeks of the change: 14.5%, after a median of about 5 weeks,
never before the change (defaults: 13.4%). Finding 90% within 8 weeks is out
of reach at alpha 0.0125: an ideal test that knew the change day, pooled every
day before it against every day after it, took over-dispersed counts for
Poisson ones and looked every day without correction or persistence finds
76%. Stricter settings trade the two: confirming ``fewer_anxious_episodes``
at 7 and 14 days earlier cuts its false rate to about 0.1% and the improvers
found to about 8.5%.
"""
from __future__ import annotations

import copy
import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache, cached_property, lru_cache
from statistics import fmean
from typing import Any, Callable, Collection, Iterable, Optional, Union

import numpy as np
from scipy import special, stats

__all__ = [
    "ALPHA", "WINDOW_DAYS", "MIN_LOGGED_DAYS", "PERSISTENCE_DAYS", "BASELINE_LOGGED_DAYS", "BASELINE_MAX_DAYS",
    "LOGGING_GUARD", "SPENDING_PERIOD_DAYS", "RATE_TESTS", "FEWER_CONFIRM_DAYS", "CALMER_CONFIRM_DAYS",
    "INDEPENDENCE_CONFIRM_DAYS", "DISPERSION_BOUND", "look_alpha",
    "FEWER_ANXIOUS_EPISODES", "CALMER_EPISODES", "BETTER_COMMUNICATION", "STRONGER_BOND",
    "MORE_INDEPENDENCE", "RITUALS_KEPT", "CHECK_IN_RHYTHM", "MILESTONE_TYPES", "LEVELS",
    "DayAggregate", "History", "Detection", "RateComparison", "WorseningCheck",
    "compare_rates", "fewer_episodes_levels", "fewer_anxious_episodes", "calmer_episodes", "more_independence",
    "better_communication", "stronger_bond", "rituals_kept", "check_in_rhythm",
    "detect_partner_milestones", "detect_couple_milestones", "worsening_check",
]

# --- the rules' numbers ---

ALPHA = 0.0125  # per milestone family; a result counts when p < ALPHA
WINDOW_DAYS = 28
MIN_LOGGED_DAYS = 14
PERSISTENCE_DAYS = 7
# confirming looks (days before as_of at which the rule must hold too), per partner milestone
FEWER_CONFIRM_DAYS = (PERSISTENCE_DAYS,)
CALMER_CONFIRM_DAYS = (PERSISTENCE_DAYS, 2 * PERSISTENCE_DAYS, 3 * PERSISTENCE_DAYS)
INDEPENDENCE_CONFIRM_DAYS = CALMER_CONFIRM_DAYS
COMMUNICATION_CONFIRM_DAYS = (PERSISTENCE_DAYS, 2 * PERSISTENCE_DAYS)

BASELINE_LOGGED_DAYS = 28  # the baseline: the first 28 logged days ...
BASELINE_MAX_DAYS = 56  # ... within the first 56 days
LOGGING_GUARD = 0.9  # the recent share of logged days must be >= 0.9 x the baseline's
SPENDING_PERIOD_DAYS = 28  # look alpha = ALPHA / period ** 2, a new period every 28 days of looks

FEWER_EPISODES_LEVELS = ((1, 0.7), (2, 0.5), (3, 0.3))  # (level, rate ratio at most)
FEWER_EPISODES_MIN_BASELINE_EPISODE_DAYS = 8
CALMER_MIN_EPISODES = 8  # per window
CALMER_MIN_EFFECT = 0.7  # common-language effect
COMMUNICATION_WINDOW = 14  # rated days
COMMUNICATION_MIN_RATINGS = 10  # per window, per partner
COMMUNICATION_MIN_EFFECT = 0.7
BOND_MIN_TAU = 0.5
BOND_MIN_WEEKS = 8
BOND_MAX_WEEKS = 26
REPAIR_SETTLED_DAYS = 2  # a conflict's 24 hours may still be running on the last two local days
INDEPENDENCE_MIN_RATIO = 1.4
DISPERSION_BOUND = 0.25  # phi at its 75% upper confidence bound: Pearson chi-square / its 25% quantile
WORSENING_MIN_RATIO = 1.4
RITUAL_LEVELS = ((1, 10), (2, 25), (3, 50), (4, 100))  # (level, rituals at least)
RHYTHM_WEEKS = 5
RHYTHM_MIN_WEEKS = 4
CHECK_IN_RITUAL_TAG = "weekly_check_in"

FEWER_ANXIOUS_EPISODES = "fewer_anxious_episodes"
CALMER_EPISODES = "calmer_episodes"
BETTER_COMMUNICATION = "better_communication"
STRONGER_BOND = "stronger_bond"
MORE_INDEPENDENCE = "more_independence"
RITUALS_KEPT = "rituals_kept"
CHECK_IN_RHYTHM = "check_in_rhythm"
MILESTONE_TYPES = (FEWER_ANXIOUS_EPISODES, CALMER_EPISODES, MORE_INDEPENDENCE,
                   BETTER_COMMUNICATION, STRONGER_BOND, RITUALS_KEPT, CHECK_IN_RHYTHM)
# Every level of each type (a type whose every level is held has nothing left to find).
LEVELS = {FEWER_ANXIOUS_EPISODES: tuple(level for level, _ in FEWER_EPISODES_LEVELS), CALMER_EPISODES: (1,),
          MORE_INDEPENDENCE: (1,), BETTER_COMMUNICATION: (1,), STRONGER_BOND: (1,),
          RITUALS_KEPT: tuple(level for level, _ in RITUAL_LEVELS), CHECK_IN_RHYTHM: (1,)}

PARTNER = "partner"
COUPLE = "couple"

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


# --- inputs ---

def _check_date(value: Any, name: str) -> None:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime.date (a local date), not {type(value).__name__}")


def _check_count(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")


def _check_ratings(values: tuple, name: str, lo: int, hi: int) -> None:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{name} ratings must be whole numbers {lo}-{hi}, not {v!r}")


@dataclass(frozen=True)
class DayAggregate:
    """One partner's journal for one local date, reduced to what the rules use.

    ``logged``: the partner recorded anything at all that day (any entry kind,
    a mood-only reflection included). A day with any entry below must be
    logged; a day that is not logged may simply be absent.
    ``episodes``: anxious episodes that day; ``intensities``: their intensities
    (0-10), one per episode, so ``len(intensities) == episodes``.
    ``communication``: the day's ``daily_reflection`` communication ratings (1-5).
    ``connection``, ``understanding``: the day's ``check_in`` ratings (1-5).
    ``rituals``: the tags of the day's ``ritual`` entries, one per entry.
    ``activities``: ``independence_activity`` entries that day.
    ``conflicts``: conflicts that occurred that day; ``conflicts_repaired_24h``:
    how many of them have ``repaired_at`` within 24 hours of ``occurred_at``.
    ``weekly_check_ins``: ``check_in`` entries that day (a ``ritual`` tagged
    ``weekly_check_in`` counts as a check-in too, in :func:`check_in_rhythm`).

    Sequences are stored as tuples; lists are accepted and converted.
    """

    day: date
    logged: bool = True
    episodes: int = 0
    intensities: tuple[int, ...] = ()
    communication: tuple[int, ...] = ()
    connection: tuple[int, ...] = ()
    understanding: tuple[int, ...] = ()
    rituals: tuple[str, ...] = ()
    activities: int = 0
    conflicts: int = 0
    conflicts_repaired_24h: int = 0
    weekly_check_ins: int = 0

    def __post_init__(self) -> None:
        _check_date(self.day, "day")
        if not isinstance(self.logged, bool):
            raise TypeError("logged must be a bool")
        for name in ("intensities", "communication", "connection", "understanding", "rituals"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("episodes", "activities", "conflicts", "conflicts_repaired_24h", "weekly_check_ins"):
            _check_count(getattr(self, name), name)
        if len(self.intensities) != self.episodes:
            raise ValueError(f"{self.day}: {self.episodes} episodes but {len(self.intensities)} intensities")
        _check_ratings(self.intensities, "intensity", 0, 10)
        _check_ratings(self.communication, "communication", 1, 5)
        _check_ratings(self.connection, "connection", 1, 5)
        _check_ratings(self.understanding, "understanding", 1, 5)
        if not all(isinstance(r, str) and r for r in self.rituals):
            raise ValueError("rituals must be non-empty tags")
        if self.conflicts_repaired_24h > self.conflicts:
            raise ValueError(f"{self.day}: more conflicts repaired than conflicts")
        if not self.logged and self.has_entries:
            raise ValueError(f"{self.day}: a day with entries is a logged day")

    @classmethod
    def trusted(cls, fields: dict[str, Any]) -> "DayAggregate":
        """An aggregate from the projection's own rows, which were checked when
        written: built without the checks from a new dict of every field
        (tuples expected), which it keeps as its own, as evaluation reads a few
        hundred at a time (a fifth of the time of setting each field)."""
        day = object.__new__(cls)
        object.__setattr__(day, "__dict__", fields)
        return day

    @property
    def has_entries(self) -> bool:
        return bool(self.episodes or self.communication or self.connection or self.understanding
                    or self.rituals or self.activities or self.conflicts or self.weekly_check_ins)

    @property
    def episode_day(self) -> bool:
        """An episode-day: a logged day with at least one anxious episode."""
        return self.episodes > 0

    @property
    def has_check_in(self) -> bool:
        return self.weekly_check_ins > 0 or CHECK_IN_RITUAL_TAG in self.rituals


@dataclass(frozen=True)
class History:
    """One partner's daily aggregates, in date order, at most one per date.

    Give the days in any order (a late or reversed sync); they are sorted here.
    Two aggregates for the same date are an error: merge them first.
    """

    days: tuple[DayAggregate, ...] = ()

    def __post_init__(self) -> None:
        days = tuple(self.days)
        for d in days:
            if not isinstance(d, DayAggregate):
                raise TypeError(f"a History holds DayAggregate, not {type(d).__name__}")
        ordered = tuple(sorted(days, key=lambda d: d.day))
        for a, b in zip(ordered, ordered[1:]):
            if a.day == b.day:
                raise ValueError(f"two aggregates for {a.day}")
        object.__setattr__(self, "days", ordered)
        object.__setattr__(self, "_ordinals", tuple(d.day.toordinal() for d in ordered))
        first = next((d.day for d in ordered if d.logged), None)
        object.__setattr__(self, "_first_logged", first)

    @classmethod
    def of(cls, days: Union["History", Iterable[DayAggregate]]) -> "History":
        return days if isinstance(days, History) else cls(tuple(days))

    def between(self, start: date, end: date) -> tuple[DayAggregate, ...]:
        """The aggregates dated start..end, both included."""
        lo = bisect_left(self._ordinals, start.toordinal())
        hi = bisect_right(self._ordinals, end.toordinal())
        return self.days[lo:hi]

    def until(self, as_of: date) -> tuple[DayAggregate, ...]:
        return self.days[:bisect_right(self._ordinals, as_of.toordinal())]

    def first_logged_day(self, as_of: date) -> Optional[date]:
        """The first logged day, if it is on or before ``as_of``."""
        first = self._first_logged
        return first if first is not None and first <= as_of else None


HistoryLike = Union[History, Iterable[DayAggregate]]


# --- outputs ---

@dataclass(frozen=True)
class Detection:
    """A milestone level whose rule holds as of the evaluation date.

    ``scope`` is ``"partner"`` (a partner's own milestone: the caller sets the
    partner id) or ``"couple"`` (partner id null). ``evidence`` is
    JSON-serialisable (dates as ISO strings, no NaN or infinity).
    ``headline`` is warm, informational, in the person's own numbers.
    """

    type: str
    level: int
    scope: str
    evidence: dict
    headline: str


@dataclass(frozen=True)
class RateComparison:
    """Two Poisson rates compared by a one-sided test (see :func:`compare_rates`).

    ``ratio`` is (k_recent / t_recent) / (k_base / t_base): ``math.inf`` when
    the baseline count is 0 and the recent one is not, 1.0 when both are 0.
    ``method`` is ``"binomial"`` (the exact conditional binomial test) or
    ``"e-test"`` (Krishnamoorthy and Thomson's E-test).
    """

    k_base: int
    t_base: int
    k_recent: int
    t_recent: int
    ratio: float
    p_value: float
    method: str = "binomial"


@dataclass(frozen=True)
class WorseningCheck:
    """Whether the episode rate reliably got worse (for a gentle, private check-in).

    ``evidence`` is None when there were too few logged days to test.
    Never a milestone, never announced, never sent to the partner.
    """

    worsening: bool
    evidence: Optional[dict]


# --- statistics ---

@lru_cache(maxsize=1 << 16)
def _binomial_p(k_recent: int, n: int, t_recent: int, t_base: int, alternative: str) -> float:
    if n == 0:
        return 1.0
    p0 = t_recent / (t_base + t_recent)
    # scipy.stats.binomtest's one-sided p-values, from the ufuncs it is built on (40 times faster)
    if alternative == "less":
        return float(special.bdtr(k_recent, n, p0))
    return 1.0 if k_recent <= 0 else float(special.bdtrc(k_recent - 1, n, p0))


@lru_cache(maxsize=1 << 16)
def _e_test_p(k_recent: int, t_recent: int, k_base: int, t_base: int, alternative: str) -> float:
    if k_recent + k_base == 0:
        return 1.0
    p = float(stats.poisson_means_test(k_recent, t_recent, k_base, t_base, alternative=alternative).pvalue)
    return min(1.0, max(0.0, p))


RATE_TESTS = ("binomial", "e-test")


def compare_rates(k_base: int, t_base: int, k_recent: int, t_recent: int, alternative: str,
                  method: str = "binomial") -> RateComparison:
    """A one-sided test of two Poisson rates, recent against baseline.

    ``method="binomial"``: the exact conditional binomial test: given
    k_base + k_recent events, k_recent ~ Bin(n = k_base + k_recent,
    p0 = t_recent / (t_base + t_recent)) if the rates are equal.
    ``method="e-test"``: the E-test of Krishnamoorthy and Thomson (2004),
    ``scipy.stats.poisson_means_test``, which keeps the level more closely
    than the conditional test (less conservative, so more power) at the small
    counts of a month.
    ``alternative`` is ``"less"`` (the recent rate is lower) or ``"greater"``.
    t are exposures (logged days), k event counts.
    """
    for name, v in (("k_base", k_base), ("k_recent", k_recent)):
        _check_count(v, name)
    for name, v in (("t_base", t_base), ("t_recent", t_recent)):
        _check_count(v, name)
        if v == 0:
            raise ValueError(f"{name} must be > 0")
    if alternative not in ("less", "greater"):
        raise ValueError("alternative must be 'less' or 'greater'")
    if method not in RATE_TESTS:
        raise ValueError(f"method must be one of {RATE_TESTS}")
    if k_base == 0:
        ratio = 1.0 if k_recent == 0 else math.inf
    else:  # one division of exact integers, so a ratio of exactly 7/10 is the float 0.7
        ratio = (k_recent * t_base) / (t_recent * k_base)
    if method == "binomial":
        p = _binomial_p(k_recent, k_base + k_recent, t_recent, t_base, alternative)
    else:
        p = _e_test_p(k_recent, t_recent, k_base, t_base, alternative)
    return RateComparison(k_base, t_base, k_recent, t_recent, ratio, p, method)


def _common_language(higher: list[float], lower: list[float]) -> tuple[float, float]:
    """Mann-Whitney U, one-sided (``higher`` tends to be larger than ``lower``).

    Returns (common-language effect U / (n1 n2), i.e. the chance that a value
    from ``higher`` exceeds one from ``lower``, ties counted half; p-value).
    The normal approximation with tie correction: the samples are never tiny
    here (>= 8) and ratings tie a lot.
    """
    # What scipy.stats.mannwhitneyu(higher, lower, alternative="greater",
    # method="asymptotic") computes (continuity-corrected, average ranks for
    # ties), without its per-call overhead (half a millisecond a call).
    n1, n2 = len(higher), len(lower)
    values, where, counts = np.unique(np.concatenate([np.asarray(higher, float), np.asarray(lower, float)]),
                                      return_inverse=True, return_counts=True)
    ranks = np.cumsum(counts) - (counts - 1) / 2.0
    u = float(ranks[where[:n1]].sum()) - n1 * (n1 + 1) / 2
    n = n1 + n2
    ties = float((counts ** 3 - counts).sum())
    spread = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    excess = u - n1 * n2 / 2 - 0.5
    if spread == 0:  # every value the same
        p = 1.0 if excess <= 0 else 0.0
    else:
        p = float(special.ndtr(-excess / spread))
    return u / (n1 * n2), min(1.0, max(0.0, p))


def _scaled_binomial_p(k_recent: float, n: float, p0: float, alternative: str) -> float:
    """The binomial tail of :func:`compare_rates` for counts that may be fractional.

    ``P(X <= k)`` ("less") or ``P(X >= k)`` ("greater") for X ~ Bin(n, p0),
    through the regularized incomplete beta function: for whole numbers it is
    exactly the binomial test's p-value.
    """
    if alternative == "less":
        return 1.0 if k_recent >= n else float(special.betainc(n - k_recent, k_recent + 1, 1 - p0))
    return 1.0 if k_recent <= 0 else float(special.betainc(k_recent, n - k_recent + 1, p0))


def _variance(xs: list[float]) -> float:
    """The sample variance in floats (``statistics.variance`` is exact, in fractions: 30 times the time)."""
    m = fmean(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


# scipy.stats.kendalltau without its nan-policy wrapper, which inspects the call's signature every time
# (two thirds of a call's 0.2 ms); the weekly means it is given are never NaN.
# tests/unit/test_detectors.py checks it gives what the public function gives.
_kendalltau = getattr(stats.kendalltau, "__wrapped__", stats.kendalltau)


def _welch_lower(base: list[float], recent: list[float], base_floor: float, recent_floor: float
                 ) -> tuple[float, float]:
    """Welch's t-test, one-sided (the recent values lower): (t, p); p = 1 with fewer than 2 values a side.

    Each side's variance is at least its ``floor`` (for weekly means of
    whole-number ratings: the rounding variance 1/12 over the episodes in a
    week), so that a few identical weekly means do not make a certainty.
    """
    if len(base) < 2 or len(recent) < 2:
        return 0.0, 1.0
    vb = max(_variance(base), base_floor) / len(base)
    vr = max(_variance(recent), recent_floor) / len(recent)
    t = (fmean(base) - fmean(recent)) / math.sqrt(vb + vr)
    df = (vb + vr) ** 2 / (vb ** 2 / (len(base) - 1) + vr ** 2 / (len(recent) - 1))
    return t, float(special.stdtr(df, -t))  # stats.t.sf(t, df), without its overhead


# --- formatting (evidence and headlines) ---

def _iso(d: date) -> str:
    return d.isoformat()


def _num(x: float, digits: int = 3) -> Optional[float]:
    """A float for JSON: rounded; None for NaN or infinity."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def _p(p: float) -> float:
    """A p-value to 3 significant digits (small ones stay visible)."""
    return float(f"{p:.3g}")


def _about(x: float) -> str:
    """A per-week figure as people say it: whole numbers from 3, else one decimal."""
    if x <= 0:
        return "none"
    if x >= 3:
        return str(int(round(x)))
    return f"{x:.1f}".rstrip("0").rstrip(".") if x >= 0.05 else "0.1"


def _mean_text(x: float) -> str:
    return f"{x:.1f}"


def _months(start: date, end: date) -> str:
    """The months a window spans: "October", "October and November", "October to December"."""
    if (start.year, start.month) == (end.year, end.month):
        return _MONTHS[start.month - 1]
    apart = (end.year - start.year) * 12 + end.month - start.month
    joint = "and" if apart == 1 else "to"
    return f"{_MONTHS[start.month - 1]} {joint} {_MONTHS[end.month - 1]}"


def _distinct(a: str, b: str, x: float, y: float, digits: int = 2) -> tuple[str, str]:
    """Show two figures so that a real difference does not round away."""
    if a != b:
        return a, b
    return f"{x:.{digits}f}", f"{y:.{digits}f}"


# --- windows ---

@dataclass(frozen=True)
class _Window:
    start: date
    end: date
    days: tuple[DayAggregate, ...]  # the logged days in it

    @property
    def logged_days(self) -> int:
        return len(self.days)

    @property
    def calendar_days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def logged_share(self) -> float:
        return self.logged_days / self.calendar_days

    def describe(self) -> dict:
        return {"start": _iso(self.start), "end": _iso(self.end), "logged_days": self.logged_days}


def _window(history: History, start: date, end: date) -> _Window:
    return _Window(start, end, tuple(d for d in history.between(start, end) if d.logged))


def _baseline(history: History, first: date) -> _Window:
    """The first 28 logged days from ``first``, within its first 56 days.

    Ends on the 28th logged day; a partner who logged fewer than 28 of their
    first 56 days gets those 56 days (and needs at least 14 logged in them).
    """
    cap_end = first + timedelta(days=BASELINE_MAX_DAYS - 1)
    logged = [d for d in history.between(first, cap_end) if d.logged]
    if len(logged) >= BASELINE_LOGGED_DAYS:
        last = logged[BASELINE_LOGGED_DAYS - 1].day
        return _Window(first, last, tuple(logged[:BASELINE_LOGGED_DAYS]))
    return _Window(first, cap_end, tuple(logged))


def look_alpha(period: int) -> float:
    """The alpha of one look in the ``period``-th 28 days of looks: 0.0125 / period ** 2.

    The first 28 days of looks test at the family's 0.0125, the next at a
    quarter of it, then a ninth... The sum over any number of periods stays
    below pi ** 2 / 6 * 0.0125 (about 0.021), however long a partner is
    watched: looking every day for years must not make a chance celebration
    a near certainty.
    """
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ValueError(f"period must be a whole number >= 1, not {period!r}")
    return ALPHA / period ** 2


@dataclass(frozen=True)
class _RateWindows:
    """The baseline and recent windows of one look, its alpha and its logging guard."""

    baseline: _Window
    recent: _Window
    period: int  # 1 for looks in the first 28 days in which a detection is possible (and before), then 2, ...

    @property
    def alpha(self) -> float:
        return look_alpha(self.period)

    @property
    def logging_kept(self) -> bool:
        """The recent share of logged days is at least 0.9 of the baseline's."""
        return self.recent.logged_share >= LOGGING_GUARD * self.baseline.logged_share

    def describe(self) -> dict:
        return {
            "looks": {"period": self.period, "look_alpha": _p(self.alpha),
                      "rule": f"alpha {ALPHA} / period ** 2, period = 1 + days since the first day a "
                              f"detection was possible // {SPENDING_PERIOD_DAYS}"},
            "logging": {"baseline_logged_share": _num(self.baseline.logged_share),
                        "recent_logged_share": _num(self.recent.logged_share),
                        "kept": self.logging_kept,
                        "rule": f"recent share of logged days >= {LOGGING_GUARD} x the baseline's, "
                                "or nothing is tested"},
        }


def _rate_windows(history: History, as_of: date) -> Optional[_RateWindows]:
    """The windows as of ``as_of``, or None if they overlap or are too thin.

    Never reads a day after ``as_of``: a baseline that would reach past the
    start of the recent window is an overlap, and nothing is tested.
    """
    first = history.first_logged_day(as_of)
    if first is None:
        return None
    baseline = _baseline(history, first)
    recent_start = as_of - timedelta(days=WINDOW_DAYS - 1)
    if recent_start <= baseline.end:
        return None
    recent = _window(history, recent_start, as_of)
    if baseline.logged_days < MIN_LOGGED_DAYS or recent.logged_days < MIN_LOGGED_DAYS:
        return None
    # the first day a detection is possible: the first day with a look and a look 7 days before it
    first_detection = baseline.end + timedelta(days=WINDOW_DAYS + PERSISTENCE_DAYS)
    period = 1 + max(0, (as_of - first_detection).days) // SPENDING_PERIOD_DAYS
    return _RateWindows(baseline, recent, period)


def _weeks(w: _Window, backwards: bool) -> list[tuple[DayAggregate, ...]]:
    """The window's logged days in 7-day blocks, from its start or (``backwards``) back from its end.

    Blocks without a logged day are left out (never counted as zero).
    """
    blocks: dict[int, list[DayAggregate]] = {}
    for d in w.days:
        offset = (w.end - d.day).days if backwards else (d.day - w.start).days
        blocks.setdefault(offset // 7, []).append(d)
    return [tuple(blocks[k]) for k in sorted(blocks)]


def _dispersion(windows: _RateWindows, count: Callable[[DayAggregate], int]) -> tuple[float, int]:
    """Quasi-Poisson dispersion of a daily count over the two windows' weeks: (phi, df).

    Pearson's chi-square of the weekly counts around each window's own rate
    (expected: rate x the week's logged days), divided by its degrees of
    freedom (weeks - 1 per window); at least 1 (never less variable than
    Poisson). The baseline's weeks run from its start, the recent window's
    back from ``as_of``.
    """
    x2, df = 0.0, 0
    for w, backwards in ((windows.baseline, False), (windows.recent, True)):
        blocks = _weeks(w, backwards)
        df += len(blocks) - 1
        k = sum(count(d) for d in w.days)
        if k == 0:
            continue
        rate = k / w.logged_days
        for block in blocks:
            expected = rate * len(block)
            x2 += (sum(count(d) for d in block) - expected) ** 2 / expected
    if not df:
        return 1.0, df
    # an upper confidence bound, not the estimate: a month has few weeks, and an estimate of phi from
    # them is too often too low (which would make the test too lenient half of the time)
    return max(1.0, x2 / float(special.chdtri(df, 1 - DISPERSION_BOUND))), df  # chdtri: stats.chi2.ppf of 1 - q


# --- one look, and persistence ---

@dataclass(frozen=True)
class _Look:
    """What one evaluation date says: the levels that hold, and why.

    ``explain`` makes the why: (the evidence, the headline, the summary: the
    few numbers shown for the confirming look). Only a look whose levels hold
    is explained, once; most looks hold none, and their words are never made.
    """

    levels: tuple[int, ...]
    explain: Callable[[], tuple[dict, str, dict]]

    @cached_property
    def _explained(self) -> tuple[dict, str, dict]:
        return self.explain()

    @property
    def evidence(self) -> dict:
        return self._explained[0]

    @property
    def headline(self) -> str:
        return self._explained[1]

    @property
    def summary(self) -> dict:
        return self._explained[2]


def _confirmed(kind: str, scope: str, as_of: date, look: Callable[[date], Optional[_Look]],
               level_rules: dict[int, str], confirm_days: tuple[int, ...] = (PERSISTENCE_DAYS,)
               ) -> list[Detection]:
    """Detections for the levels that hold as of ``as_of`` and as of each of ``confirm_days`` earlier.

    ``confirmed_as_of`` and ``confirmation`` are the look 7 days earlier;
    with more confirming looks, ``confirmations`` lists them all.
    """
    now = look(as_of)
    if now is None or not now.levels:
        return []
    levels = set(now.levels)
    befores = []
    for days in confirm_days:
        day = as_of - timedelta(days=days)
        before = look(day)
        if before is None:
            return []
        levels &= set(before.levels)
        if not levels:
            return []
        befores.append((day, before))
    out = []
    for level in sorted(levels):
        evidence = copy.deepcopy(now.evidence)
        evidence.update({
            "as_of": _iso(as_of),
            "alpha": ALPHA,
            "level": level,
            "level_rule": level_rules[level],
            "confirmed_as_of": _iso(befores[0][0]),
            "confirmation": copy.deepcopy(befores[0][1].summary),
        })
        if len(befores) > 1:
            evidence["confirmations"] = [{"as_of": _iso(day), **copy.deepcopy(b.summary)} for day, b in befores]
        out.append(Detection(kind, level, scope, evidence, now.headline))
    return out


def _weekly(k_base: int, k_recent: int, windows: _RateWindows) -> tuple[str, str]:
    """Each window's count a week (per logged day, times 7) in words, the two told apart."""
    base_week = k_base / windows.baseline.logged_days * 7
    recent_week = k_recent / windows.recent.logged_days * 7
    return _distinct(_about(base_week), _about(recent_week), base_week, recent_week, 1)


def _check_as_of(as_of: date) -> None:
    _check_date(as_of, "as_of")


def _summary(windows: _RateWindows, **numbers: Any) -> dict:
    """The few numbers shown for the confirming look a week earlier."""
    return {"recent": windows.recent.describe(), "look_alpha": _p(windows.alpha), **numbers}


# --- fewer_anxious_episodes ---

def _episode_side(w: _Window) -> dict:
    k = sum(1 for d in w.days if d.episode_day)
    rate = k / w.logged_days
    return dict(w.describe(), episode_days=k, episodes=sum(d.episodes for d in w.days),
                episode_days_per_logged_day=_num(rate), episode_days_per_week=_num(rate * 7, 2))


def _fewer_look(history: History, as_of: date) -> Optional[_Look]:
    windows = _rate_windows(history, as_of)
    if windows is None:
        return None
    baseline, recent = windows.baseline, windows.recent
    b, r = _episode_side(baseline), _episode_side(recent)
    if b["episode_days"] < FEWER_EPISODES_MIN_BASELINE_EPISODE_DAYS:
        return None
    cmp = compare_rates(b["episode_days"], baseline.logged_days, r["episode_days"], recent.logged_days, "less",
                        method="e-test")
    levels = fewer_episodes_levels(cmp, windows.alpha) if windows.logging_kept else ()

    def explain():
        a, c = _weekly(b["episode_days"], r["episode_days"], windows)
        now = "to none in the last four weeks." if c == "none" else f"to about {c} a week now."
        headline = (f"Days with anxious moments: from about {a} a week in {_months(baseline.start, baseline.end)} "
                    f"{now}")
        evidence = {
            "test": "E-test of two Poisson rates (Krishnamoorthy and Thomson), one-sided (less)",
            "measure": "episode-days (logged days with at least one anxious episode) per logged day",
            "baseline": b, "recent": r,
            "rate_ratio": _num(cmp.ratio), "p_value": _p(cmp.p_value),
            **windows.describe(),
        }
        return evidence, headline, _summary(windows, rate_ratio=_num(cmp.ratio), p_value=_p(cmp.p_value))

    return _Look(levels, explain)


def fewer_episodes_levels(cmp: RateComparison, alpha: float = ALPHA) -> tuple[int, ...]:
    """The levels of ``fewer_anxious_episodes`` one comparison supports (one look).

    Every level needs p < ``alpha`` (0.0125, or less for a later look: see
    :func:`look_alpha`); then rate ratio <= 0.7, 0.5, 0.3 for levels 1, 2, 3.
    With two 28-day windows of episode-days the test binds first: even a
    baseline with an episode every logged day (28 of 28) needs 13 of 28 or
    fewer lately (a ratio of about 0.46) for the E-test at 0.0125.
    """
    if alpha > ALPHA:
        raise ValueError(f"a look's alpha is at most {ALPHA}")
    if not cmp.p_value < alpha:
        return ()
    return tuple(level for level, most in FEWER_EPISODES_LEVELS if cmp.ratio <= most)


def fewer_anxious_episodes(history: HistoryLike, as_of: date) -> list[Detection]:
    """A partner's reliably lower rate of episode-days, recent vs baseline.

    Episode-days per logged day in the recent 28 days against the baseline
    (the first 28 logged days, within the first 56 days), the E-test
    one-sided. Levels 1, 2, 3 at rate ratio <= 0.7, 0.5, 0.3, each with
    p < the look's alpha (0.0125 in the first 28 days of looks, then
    0.0125 / 4, 0.0125 / 9, ...: :func:`look_alpha`), at least 8 episode-days
    in the baseline, at least 14 logged days per window, the recent share of
    logged days at least 0.9 of the baseline's, and all of it holding as of
    7 days earlier too.
    """
    _check_as_of(as_of)
    h = History.of(history)
    rules = {level: f"rate ratio <= {most}, p < the look's alpha" for level, most in FEWER_EPISODES_LEVELS}
    return _confirmed(FEWER_ANXIOUS_EPISODES, PARTNER, as_of, lambda d: _fewer_look(h, d), rules,
                      FEWER_CONFIRM_DAYS)


# --- calmer_episodes ---

def _calmer_look(history: History, as_of: date) -> Optional[_Look]:
    windows = _rate_windows(history, as_of)
    if windows is None:
        return None
    baseline, recent = windows.baseline, windows.recent
    base = [i for d in baseline.days for i in d.intensities]
    rec = [i for d in recent.days for i in d.intensities]
    if len(base) < CALMER_MIN_EPISODES or len(rec) < CALMER_MIN_EPISODES:
        return None
    base_mean, rec_mean = fmean(base), fmean(rec)

    @cache
    def episodes() -> tuple[float, float]:
        return _common_language(base, rec)  # the chance a baseline episode was more intense

    @cache
    def weekly() -> tuple[list[float], list[float], float]:
        # episodes of one week are not independent (bad weeks): the weekly mean intensities must tell too
        base_weeks = [fmean(i for d in b for i in d.intensities) for b in _weeks(baseline, False)
                      if any(d.intensities for d in b)]
        rec_weeks = [fmean(i for d in b for i in d.intensities) for b in _weeks(recent, True)
                     if any(d.intensities for d in b)]
        _, p_weeks = _welch_lower(base_weeks, rec_weeks, len(base_weeks) / (12 * len(base)),
                                  len(rec_weeks) / (12 * len(rec)))
        return base_weeks, rec_weeks, p_weeks

    def tested() -> bool:
        effect, p = episodes()
        return p < windows.alpha and effect >= CALMER_MIN_EFFECT and weekly()[2] < windows.alpha

    # the cheap conditions first: the tests run only if they hold (a recent mean not lower, a look's
    # common case, runs neither)
    holds = windows.logging_kept and rec_mean < base_mean and tested()

    def explain():
        (effect, p), (base_weeks, rec_weeks, p_weeks) = episodes(), weekly()
        a, c = _distinct(_mean_text(base_mean), _mean_text(rec_mean), base_mean, rec_mean)
        headline = (f"Anxious moments feel gentler: average intensity from {a} out of 10 in "
                    f"{_months(baseline.start, baseline.end)} to {c} now.")
        evidence = {
            "test": "Mann-Whitney U, one-sided (recent intensities lower); and Welch's t-test on weekly mean "
                    "intensities, one-sided",
            "measure": "intensity (0-10) of each anxious episode",
            "baseline": dict(baseline.describe(), episodes=len(base), mean_intensity=_num(base_mean, 2)),
            "recent": dict(recent.describe(), episodes=len(rec), mean_intensity=_num(rec_mean, 2)),
            "common_language_effect": _num(effect), "p_value": _p(p),
            "weekly": {"baseline_weekly_means": [_num(x, 2) for x in base_weeks],
                       "recent_weekly_means": [_num(x, 2) for x in rec_weeks], "p_value": _p(p_weeks)},
            **windows.describe(),
        }
        return evidence, headline, _summary(windows, common_language_effect=_num(effect), p_value=_p(p),
                                            weekly_p_value=_p(p_weeks))

    return _Look((1,) if holds else (), explain)


def calmer_episodes(history: HistoryLike, as_of: date) -> list[Detection]:
    """A partner's episodes reliably less intense, recent vs baseline.

    Mann-Whitney U one-sided on the episodes' intensities and, because
    episodes of one week are not independent (bad weeks), Welch's t-test
    one-sided on the weekly mean intensities (7-day blocks), both p < the
    look's alpha (:func:`look_alpha`); common-language effect (the chance
    that a baseline episode was more intense than a recent one) >= 0.7; at
    least 8 episodes in each window; the recent mean lower; the windows and
    the logging guard of :func:`fewer_anxious_episodes`; also as of 7 days
    earlier. One level.
    """
    _check_as_of(as_of)
    h = History.of(history)
    rules = {1: f"common-language effect >= {CALMER_MIN_EFFECT}, both tests p < the look's alpha"}
    return _confirmed(CALMER_EPISODES, PARTNER, as_of, lambda d: _calmer_look(h, d), rules,
                      CALMER_CONFIRM_DAYS)


# --- more_independence ---

def _activity_side(w: _Window) -> dict:
    k = sum(d.activities for d in w.days)
    rate = k / w.logged_days
    return dict(w.describe(), activities=k, activity_days=sum(1 for d in w.days if d.activities),
                activities_per_logged_day=_num(rate), activities_per_week=_num(rate * 7, 2))


def _independence_look(history: History, as_of: date) -> Optional[_Look]:
    windows = _rate_windows(history, as_of)
    if windows is None:
        return None
    baseline, recent = windows.baseline, windows.recent
    b, r = _activity_side(baseline), _activity_side(recent)
    cmp = compare_rates(b["activities"], baseline.logged_days, r["activities"], recent.logged_days, "greater")

    @cache
    def dispersed() -> tuple[float, int, float]:
        # activities come in busy and quiet weeks: the same test on counts scaled down by the dispersion
        phi, df = _dispersion(windows, lambda d: d.activities)
        n = b["activities"] + r["activities"]
        p0 = recent.logged_days / (baseline.logged_days + recent.logged_days)
        return phi, df, _scaled_binomial_p(r["activities"] / phi, n / phi, p0, "greater") if n else 1.0

    # the dispersion's weeks are counted only if the rest holds
    holds = (windows.logging_kept and cmp.p_value < windows.alpha and cmp.ratio >= INDEPENDENCE_MIN_RATIO
             and dispersed()[2] < windows.alpha)

    def explain():
        phi, df, p_phi = dispersed()
        a, c = _weekly(b["activities"], r["activities"], windows)
        start = "none" if a == "none" else f"about {a} a week"
        headline = (f"Time for yourself: activities of your own went from {start} in "
                    f"{_months(baseline.start, baseline.end)} to about {c} a week now.")
        evidence = {
            "test": "exact conditional binomial test of two Poisson rates, one-sided (greater)",
            "measure": "independence activities per logged day",
            "baseline": b, "recent": r,
            "rate_ratio": _num(cmp.ratio), "baseline_had_none": b["activities"] == 0,
            "p_value": _p(cmp.p_value),
            "over_dispersion": {"phi": _num(phi), "df": df, "p_value": _p(p_phi),
                                "rule": "the binomial test again on counts divided by phi (Pearson chi-square "
                                        "of weekly counts / df, at least 1)"},
            **windows.describe(),
        }
        return evidence, headline, _summary(windows, rate_ratio=_num(cmp.ratio), p_value=_p(cmp.p_value),
                                            over_dispersion_p_value=_p(p_phi))

    return _Look((1,) if holds else (), explain)


def more_independence(history: HistoryLike, as_of: date) -> list[Detection]:
    """A partner's reliably higher rate of independence activities per logged day.

    The rate test one-sided (greater), p < the look's alpha
    (:func:`look_alpha`), and again with the counts divided by their
    over-dispersion (quasi-Poisson phi from the weekly counts, at least 1:
    activities come in busy and quiet weeks); rate ratio >= 1.4 (a baseline
    with no activity counts as an infinite ratio; ``rate_ratio`` is then null
    in the evidence), >= 14 logged days per window, the windows and the
    logging guard of :func:`fewer_anxious_episodes`; also as of 7 days
    earlier. One level.
    """
    _check_as_of(as_of)
    h = History.of(history)
    rules = {1: f"rate ratio >= {INDEPENDENCE_MIN_RATIO}, p < the look's alpha, also with over-dispersion"}
    return _confirmed(MORE_INDEPENDENCE, PARTNER, as_of, lambda d: _independence_look(h, d), rules,
                      INDEPENDENCE_CONFIRM_DAYS)


# --- better_communication (the couple's) ---

def _rated_days(history: History, as_of: date) -> list[tuple[date, float]]:
    return [(d.day, sum(d.communication) / len(d.communication)) for d in history.until(as_of) if d.communication]


def _communication_period(rated: list[list[tuple[date, float]]], as_of: date) -> int:
    """The look's spending period (:func:`look_alpha`): 1 for the first 28 days
    after the first day a confirmed detection was possible (both partners with
    2 x 10 rated days, and a look 7 days before), then 2, ..."""
    ready = max(r[2 * COMMUNICATION_MIN_RATINGS - 1][0] for r in rated)
    first_detection = ready + timedelta(days=max(COMMUNICATION_CONFIRM_DAYS))
    return 1 + max(0, (as_of - first_detection).days) // SPENDING_PERIOD_DAYS


def _communication_look(a: History, b: History, as_of: date) -> Optional[_Look]:
    firsts, lasts, sides, rated_both = [], [], [], []
    for h in (a, b):
        rated = _rated_days(h, as_of)
        m = min(COMMUNICATION_WINDOW, len(rated) // 2)
        if m < COMMUNICATION_MIN_RATINGS:
            return None
        first, last = rated[:m], rated[-m:]
        firsts.append(first)
        lasts.append(last)
        rated_both.append(rated)
        sides.append((fmean(v for _, v in first), fmean(v for _, v in last)))
    period = _communication_period(rated_both, as_of)
    alpha = look_alpha(period)
    first_all = sorted(v for w in firsts for _, v in w)  # sorted: the same numbers whichever partner is a
    last_all = sorted(v for w in lasts for _, v in w)
    neither_down = all(later >= earlier for earlier, later in sides)
    first_mean, last_mean = fmean(first_all), fmean(last_all)

    @cache
    def ranked() -> tuple[float, float]:
        return _common_language(last_all, first_all)

    def tested() -> bool:
        effect, p = ranked()
        return p < alpha and effect >= COMMUNICATION_MIN_EFFECT

    # the cheap conditions first: the ranks are tested only if the means rose and neither partner's fell
    holds = neither_down and last_mean > first_mean and tested()

    def window(ws: list[list[tuple[date, float]]], mean: float) -> dict:
        # the couple's window: its date span and size, never one partner's numbers beside the other's
        days = [d for w in ws for d, _ in w]
        return {"start": _iso(min(days)), "end": _iso(max(days)), "ratings": len(days), "mean": _num(mean, 2)}

    def explain():
        effect, p = ranked()
        x, y = _distinct(_mean_text(first_mean), _mean_text(last_mean), first_mean, last_mean)
        headline = f"Talking together: your daily communication ratings went from about {x} to about {y} out of 5."
        evidence = {
            "test": "Mann-Whitney U, one-sided (the last rated days higher than the first), both partners pooled",
            "measure": "daily communication rating (1-5; a day's ratings averaged)",
            "first": window(firsts, first_mean), "last": window(lasts, last_mean),
            "common_language_effect": _num(effect), "p_value": _p(p),
            "neither_partner_went_down": neither_down,
            "looks": {"period": period, "look_alpha": _p(alpha),
                      "rule": f"alpha {ALPHA} / period ** 2, period = 1 + days since the first day a "
                              f"detection was possible // {SPENDING_PERIOD_DAYS}"},
        }
        summary = {"last": {"start": evidence["last"]["start"], "end": evidence["last"]["end"]},
                   "common_language_effect": _num(effect), "p_value": _p(p), "look_alpha": _p(alpha)}
        return evidence, headline, summary

    return _Look((1,) if holds else (), explain)


def better_communication(a: HistoryLike, b: HistoryLike, as_of: date) -> list[Detection]:
    """The couple's communication ratings reliably higher, last vs first rated days.

    Each partner's rated days (days with a communication rating; a day's
    ratings are averaged into one value) give a first and a last window of
    ``min(14, n // 2)`` rated days, so they never overlap; each partner needs
    at least 10 per window. Both partners' windows are pooled: Mann-Whitney U
    one-sided, p < 0.0125, common-language effect >= 0.7, and neither
    partner's own mean went down; also as of 7 days earlier. One level.
    Symmetric in ``a`` and ``b``.
    """
    _check_as_of(as_of)
    ha, hb = History.of(a), History.of(b)
    rules = {1: f"common-language effect >= {COMMUNICATION_MIN_EFFECT}, p < the look's alpha, "
                "neither partner's mean lower"}
    return _confirmed(BETTER_COMMUNICATION, COUPLE, as_of, lambda d: _communication_look(ha, hb, d), rules,
                      COMMUNICATION_CONFIRM_DAYS)


# --- stronger_bond (the couple's) ---

def _repair_half(days: list[DayAggregate], start: date, end: date) -> dict:
    inside = [d for d in days if start <= d.day <= end]
    conflicts = sum(d.conflicts for d in inside)
    repaired = sum(d.conflicts_repaired_24h for d in inside)
    return {"start": _iso(start), "end": _iso(end), "conflicts": conflicts, "repaired_within_24h": repaired,
            "share": _num(repaired / conflicts) if conflicts else None}


def _repair_verdict(first: dict, recent: dict) -> Optional[str]:
    """Why conflict repair does not block a stronger bond, or None if it does."""
    if recent["conflicts"] == 0:
        return "no conflicts in the recent half" if first["conflicts"] else "no conflicts at all"
    recent_share = recent["repaired_within_24h"] / recent["conflicts"]
    if recent_share == 1.0:
        return "every recent conflict repaired within 24 hours"
    if first["conflicts"] and recent_share > first["repaired_within_24h"] / first["conflicts"]:
        return "share repaired within 24 hours rising"
    return None


def _bond_look(a: History, b: History, as_of: date) -> Optional[_Look]:
    oldest = as_of - timedelta(days=7 * BOND_MAX_WEEKS - 1)
    days = [d for h in (a, b) for d in h.between(oldest, as_of)]
    weeks: dict[int, list[int]] = {}
    for d in days:
        ratings = d.connection + d.understanding
        if ratings:
            weeks.setdefault((as_of - d.day).days // 7, []).extend(ratings)
    if len(weeks) < BOND_MIN_WEEKS:
        return None
    order = sorted(weeks, reverse=True)  # oldest week first
    means = [fmean(weeks[w]) for w in order]
    n = len(means)
    older, newer = fmean(means[:n // 2]), fmean(means[(n + 1) // 2:])

    @cache
    def trend() -> tuple[float, float]:
        res = _kendalltau([-w for w in order], means, alternative="greater")
        tau, p = float(res.statistic), float(res.pvalue)
        return (tau, p) if math.isfinite(tau) else (0.0, 1.0)  # every week the same: no trend

    @cache
    def repair() -> tuple[dict, dict, Optional[str]]:
        # the span of the check-ins, halved by days, for the repair of conflicts
        span_start = as_of - timedelta(days=7 * order[0] + 6)
        mid = span_start + timedelta(days=(as_of - span_start).days // 2)
        first_half = _repair_half(days, span_start, mid)
        recent_half = _repair_half(days, mid + timedelta(days=1), as_of - timedelta(days=REPAIR_SETTLED_DAYS))
        return first_half, recent_half, _repair_verdict(first_half, recent_half)

    def tested() -> bool:
        if repair()[2] is None:
            return False
        tau, p = trend()
        return tau >= BOND_MIN_TAU and p < ALPHA

    # the cheapest conditions first: the later weeks higher, then the repair, then the trend's test
    holds = newer > older and tested()

    def explain():
        (tau, p), (first_half, recent_half, passes) = trend(), repair()
        x, y = _distinct(_mean_text(older), _mean_text(newer), older, newer)
        headline = f"Feeling closer: your weekly check-ins went from about {x} to about {y} out of 5."

        def half(ws: list[int], mean: float) -> dict:
            # the weeks compared, as one window: never a week's mean, which may be one check-in's ratings
            return {"start": _iso(as_of - timedelta(days=7 * ws[0] + 6)),
                    "end": _iso(as_of - timedelta(days=7 * ws[-1])), "weeks": len(ws),
                    "ratings": sum(len(weeks[w]) for w in ws), "mean": _num(mean, 2)}

        evidence = {
            "test": "Kendall's tau of weekly means against time, one-sided (rising)",
            "measure": "weekly mean of connection and understanding ratings (1-5), both partners",
            "first": half(order[:n // 2], older), "last": half(order[(n + 1) // 2:], newer),
            "weeks_with_check_ins": n,
            "kendall_tau": _num(tau), "p_value": _p(p),
            "repair": {"rule": "share of conflicts repaired within 24 hours rising (recent half vs first half "
                               "of the check-in span); no recent conflicts, or every recent one repaired, also "
                               "passes",
                       "first_half": first_half, "recent_half": recent_half, "passes_because": passes},
        }
        summary = {"kendall_tau": _num(tau), "p_value": _p(p), "weeks_with_check_ins": n,
                   "repair_passes_because": passes}
        return evidence, headline, summary

    return _Look((1,) if holds else (), explain)


def stronger_bond(a: HistoryLike, b: HistoryLike, as_of: date) -> list[Detection]:
    """The couple's weekly check-ins reliably rising, and conflicts repaired no worse.

    Weeks are 7-day blocks counted back from ``as_of`` (block 0 ends on it),
    over the last 26 weeks; a week's value is the mean of every connection and
    understanding rating of both partners in it; weeks without a check-in are
    left out (never filled in). At least 8 such weeks; Kendall's tau of the
    weekly means against time >= 0.5 with one-sided p < 0.0125.

    Repair: the span from the first check-in week to ``as_of`` is halved by
    days; a conflict counts in the half of its date, and the last 2 days are
    left out (their 24 hours may still be running). The rule passes if the
    recent half had no conflict (a couple without conflicts is not blocked),
    if every recent conflict was repaired within 24 hours, or if the recent
    share repaired within 24 hours is higher than the first half's.
    Also as of 7 days earlier. One level. Symmetric in ``a`` and ``b``.
    """
    _check_as_of(as_of)
    ha, hb = History.of(a), History.of(b)
    rules = {1: f"Kendall's tau >= {BOND_MIN_TAU}, p < {ALPHA}, repair within 24 hours not falling"}
    return _confirmed(STRONGER_BOND, COUPLE, as_of, lambda d: _bond_look(ha, hb, d), rules)


# --- rituals (the couple's; counts, never streaks) ---

def rituals_kept(a: HistoryLike, b: HistoryLike, as_of: date,
                 prior: Optional[dict[str, int]] = None) -> list[Detection]:
    """The couple's 10th, 25th, 50th and 100th ritual (levels 1-4).

    Counts every ``ritual`` entry of both partners dated up to ``as_of``;
    totals only, nothing resets. Symmetric in ``a`` and ``b``. ``prior``:
    rituals (by tag) dated before every day given, for a caller that passes
    only the days the other rules read.
    The evidence is the total alone: a count by ritual would name what one
    entry was about.
    """
    _check_as_of(as_of)
    total = sum((prior or {}).values()) + sum(
        len(d.rituals) for h in (History.of(a), History.of(b)) for d in h.until(as_of))
    out = []
    for level, threshold in RITUAL_LEVELS:
        if total >= threshold:
            evidence = {"measure": "ritual entries of both partners, counted (never a streak)",
                        "as_of": _iso(as_of), "rituals": total, "threshold": threshold, "level": level,
                        "level_rule": f"at least {threshold} rituals"}
            out.append(Detection(RITUALS_KEPT, level, COUPLE, evidence,
                                 f"You have kept {threshold} rituals together."))
    return out


def check_in_rhythm(a: HistoryLike, b: HistoryLike, as_of: date) -> list[Detection]:
    """Weekly check-ins in at least 4 of the last 5 weeks (one level).

    Weeks are 7-day blocks counted back from ``as_of``; a week counts if
    either partner recorded a ``check_in`` or a ritual tagged
    ``weekly_check_in`` in it. A flexible rhythm, not a streak: any 4 of 5.
    """
    _check_as_of(as_of)
    oldest = as_of - timedelta(days=7 * RHYTHM_WEEKS - 1)
    with_check_in = {(as_of - d.day).days // 7 for h in (History.of(a), History.of(b))
                     for d in h.between(oldest, as_of) if d.has_check_in}
    kept = len(with_check_in)
    if kept < RHYTHM_MIN_WEEKS:
        return []
    # the span and its count, never which week had one (that would date a single entry)
    evidence = {"measure": "weeks with a weekly check-in (either partner)", "as_of": _iso(as_of),
                "start": _iso(oldest), "end": _iso(as_of), "weeks_with_check_in": kept, "of_weeks": RHYTHM_WEEKS,
                "level": 1,
                "level_rule": f"a check-in in at least {RHYTHM_MIN_WEEKS} of the last {RHYTHM_WEEKS} weeks"}
    when = (f"in each of the last {RHYTHM_WEEKS} weeks" if kept == RHYTHM_WEEKS
            else f"in {kept} of the last {RHYTHM_WEEKS} weeks")
    return [Detection(CHECK_IN_RHYTHM, 1, COUPLE, evidence,
                      f"Your weekly check-in has found its rhythm: you met for it {when}.")]


# --- all of them ---

def detect_partner_milestones(history: HistoryLike, as_of: date, done: Collection[str] = ()) -> list[Detection]:
    """Every partner-own milestone level that holds as of ``as_of``, in a fixed order.

    ``done``: types whose every level is held already, not looked at (a
    long-time partner's evaluation runs only the rules with a level left).
    """
    h = History.of(history)
    return ((fewer_anxious_episodes(h, as_of) if FEWER_ANXIOUS_EPISODES not in done else [])
            + (calmer_episodes(h, as_of) if CALMER_EPISODES not in done else [])
            + (more_independence(h, as_of) if MORE_INDEPENDENCE not in done else []))


def detect_couple_milestones(a: HistoryLike, b: HistoryLike, as_of: date,
                             prior_rituals: Optional[dict[str, int]] = None,
                             done: Collection[str] = ()) -> list[Detection]:
    """Every couple milestone level that holds as of ``as_of``, in a fixed order.

    Pass an empty history for a partner who has not joined yet. ``done``: as
    in :func:`detect_partner_milestones`.
    """
    ha, hb = History.of(a), History.of(b)
    return ((better_communication(ha, hb, as_of) if BETTER_COMMUNICATION not in done else [])
            + (stronger_bond(ha, hb, as_of) if STRONGER_BOND not in done else [])
            + (rituals_kept(ha, hb, as_of, prior_rituals) if RITUALS_KEPT not in done else [])
            + (check_in_rhythm(ha, hb, as_of) if CHECK_IN_RHYTHM not in done else []))


# --- a reliable worsening (never a milestone) ---

def _worsening_look(history: History, as_of: date) -> Optional[tuple[bool, dict]]:
    recent_start = as_of - timedelta(days=WINDOW_DAYS - 1)
    previous_end = recent_start - timedelta(days=1)
    previous = _window(history, previous_end - timedelta(days=WINDOW_DAYS - 1), previous_end)
    recent = _window(history, recent_start, as_of)
    if previous.logged_days < MIN_LOGGED_DAYS or recent.logged_days < MIN_LOGGED_DAYS:
        return None
    p_side, r_side = _episode_side(previous), _episode_side(recent)
    cmp = compare_rates(p_side["episode_days"], previous.logged_days, r_side["episode_days"],
                        recent.logged_days, "greater")
    worse = cmp.p_value < ALPHA and cmp.ratio >= WORSENING_MIN_RATIO
    return worse, {"as_of": _iso(as_of), "previous": p_side, "recent": r_side,
                   "rate_ratio": _num(cmp.ratio), "p_value": _p(cmp.p_value)}


def worsening_check(history: HistoryLike, as_of: date) -> WorseningCheck:
    """Whether episode-days per logged day reliably rose (for a private check-in).

    Compares the last 28 days with the 28 days before them ("lately, compared
    with the month before"), each with >= 14 logged days: the rate test
    one-sided (greater), p < 0.0125, rate ratio >= 1.4 (a previous month
    without episodes counts as an infinite ratio), and the same as of 7 days
    earlier, so one hard week does not set it off.
    """
    _check_as_of(as_of)
    h = History.of(history)
    now = _worsening_look(h, as_of)
    if now is None:
        return WorseningCheck(False, None)
    worse_now, evidence = now
    before_day = as_of - timedelta(days=PERSISTENCE_DAYS)
    before = _worsening_look(h, before_day) if worse_now else None
    worse = worse_now and before is not None and before[0]
    evidence = dict(evidence, test="exact conditional binomial test of two Poisson rates, one-sided (greater)",
                    measure="episode-days per logged day", alpha=ALPHA,
                    rule=f"rate ratio >= {WORSENING_MIN_RATIO}, p < {ALPHA}, also as of {_iso(before_day)}",
                    confirmation=None if before is None else {k: before[1][k] for k in ("rate_ratio", "p_value")})
    return WorseningCheck(worse, evidence)
