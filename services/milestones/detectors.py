"""Milestone detectors: pure functions from daily aggregates to detections.

Nothing here touches a database, a broker, a file or the clock. The caller
gives each partner's daily aggregates (:class:`DayAggregate`, keyed by the
partner's local date) and the evaluation date ``as_of``; the detectors return
every milestone type and level whose rule holds as of that date
(:class:`Detection`). Deciding which levels are new, storing and announcing
them is the caller's business: a level is achieved once, ever, and never taken
back. The same aggregates always give the same detections, whatever order
they are given in.

The rules follow ``shared/milestone-science.md``:

* Windows. *baseline* is the partner's first 28 days starting at the first
  logged day; *recent* is the 28 days ending at ``as_of`` (inclusive). Each
  needs at least 14 logged days and they must not overlap, or nothing is
  tested. Days after ``as_of`` are ignored.
* Rates are per logged day: a day without logging is missing, never a day
  without anxiety.
* Each family has alpha 0.0125 (a result counts when p < alpha).
* Persistence: a statistical rule must hold as of ``as_of`` and also as of
  ``as_of - 7 days`` (every window shifted, only the data up to that day), and
  each level must hold at both looks.

Choices made where the notes are silent (each is documented where it lives):

* ``fewer_anxious_episodes`` counts *episode-days* (logged days with at least
  one episode), as the notes say, so one bad day with many episodes weighs as
  one day. ``more_independence`` counts activities per logged day, as the
  notes say.
* ``calmer_episodes``, ``better_communication``, ``stronger_bond`` and
  ``more_independence`` have a single level (1).
* ``better_communication``: each partner's daily value is the mean of that
  day's ratings; the windows are the partner's first and last
  ``min(14, n // 2)`` rated days (so they never overlap) and both partners
  need at least 10 per window.
* ``stronger_bond``: weekly blocks are 7-day blocks counted back from
  ``as_of``; the last 26 weeks at most; the week's value is the mean of all
  connection and understanding ratings of both partners in it. Repair of
  conflicts: see :func:`stronger_bond`.
* ``rituals_kept`` is the couple's (both partners' rituals together); the
  weekly check-in rhythm is its own milestone type, ``check_in_rhythm``,
  because a (type, level) pair is achieved once and the ritual counts already
  use levels 1 to 4.
* ``worsening_check`` compares the last 28 days with the 28 days before them
  (a change for the worse lately), on episode-days, with the same persistence.
* A headline must never read as a decline: a detection whose own numbers would
  not show the improvement (e.g. lower-ranked but higher-mean intensities) is
  not made.
"""
from __future__ import annotations

import copy
import math
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from statistics import fmean
from typing import Any, Callable, Iterable, Optional, Union

from scipy import stats

__all__ = [
    "ALPHA", "WINDOW_DAYS", "MIN_LOGGED_DAYS", "PERSISTENCE_DAYS",
    "FEWER_ANXIOUS_EPISODES", "CALMER_EPISODES", "BETTER_COMMUNICATION", "STRONGER_BOND",
    "MORE_INDEPENDENCE", "RITUALS_KEPT", "CHECK_IN_RHYTHM", "MILESTONE_TYPES",
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
    """Two Poisson rates compared by the exact conditional binomial test.

    ``ratio`` is (k_recent / t_recent) / (k_base / t_base): ``math.inf`` when
    the baseline count is 0 and the recent one is not, 1.0 when both are 0.
    """

    k_base: int
    t_base: int
    k_recent: int
    t_recent: int
    ratio: float
    p_value: float


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
    return float(stats.binomtest(k_recent, n, t_recent / (t_base + t_recent), alternative=alternative).pvalue)


def compare_rates(k_base: int, t_base: int, k_recent: int, t_recent: int, alternative: str) -> RateComparison:
    """The exact conditional binomial test of two Poisson rates.

    Given k_base + k_recent events, k_recent ~ Bin(n = k_base + k_recent,
    p0 = t_recent / (t_base + t_recent)) if the rates are equal. ``alternative``
    is ``"less"`` (the recent rate is lower) or ``"greater"``. t are exposures
    (logged days), k event counts.
    """
    for name, v in (("k_base", k_base), ("k_recent", k_recent)):
        _check_count(v, name)
    for name, v in (("t_base", t_base), ("t_recent", t_recent)):
        _check_count(v, name)
        if v == 0:
            raise ValueError(f"{name} must be > 0")
    if alternative not in ("less", "greater"):
        raise ValueError("alternative must be 'less' or 'greater'")
    if k_base == 0:
        ratio = 1.0 if k_recent == 0 else math.inf
    else:  # one division of exact integers, so a ratio of exactly 7/10 is the float 0.7
        ratio = (k_recent * t_base) / (t_recent * k_base)
    p = _binomial_p(k_recent, k_base + k_recent, t_recent, t_base, alternative)
    return RateComparison(k_base, t_base, k_recent, t_recent, ratio, p)


def _common_language(higher: list[float], lower: list[float]) -> tuple[float, float]:
    """Mann-Whitney U, one-sided (``higher`` tends to be larger than ``lower``).

    Returns (common-language effect U / (n1 n2), i.e. the chance that a value
    from ``higher`` exceeds one from ``lower``, ties counted half; p-value).
    The normal approximation with tie correction: the samples are never tiny
    here (>= 8) and ratings tie a lot.
    """
    res = stats.mannwhitneyu(higher, lower, alternative="greater", method="asymptotic")
    return float(res.statistic) / (len(higher) * len(lower)), float(res.pvalue)


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
    if (start.year, start.month) == (end.year, end.month):
        return _MONTHS[start.month - 1]
    return f"{_MONTHS[start.month - 1]} and {_MONTHS[end.month - 1]}"


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

    def describe(self) -> dict:
        return {"start": _iso(self.start), "end": _iso(self.end), "logged_days": self.logged_days}


def _window(history: History, start: date, end: date) -> _Window:
    return _Window(start, end, tuple(d for d in history.between(start, end) if d.logged))


def _rate_windows(history: History, as_of: date) -> Optional[tuple[_Window, _Window]]:
    """(baseline, recent) as of ``as_of``, or None if they overlap or are too thin."""
    first = history.first_logged_day(as_of)
    if first is None:
        return None
    base_end = first + timedelta(days=WINDOW_DAYS - 1)
    recent_start = as_of - timedelta(days=WINDOW_DAYS - 1)
    if recent_start <= base_end:
        return None
    baseline = _window(history, first, base_end)
    recent = _window(history, recent_start, as_of)
    if baseline.logged_days < MIN_LOGGED_DAYS or recent.logged_days < MIN_LOGGED_DAYS:
        return None
    return baseline, recent


# --- one look, and persistence ---

@dataclass(frozen=True)
class _Look:
    """What one evaluation date says: the levels that hold and why."""

    levels: tuple[int, ...]
    evidence: dict
    headline: str
    summary: dict  # the few numbers shown for the confirming look


def _confirmed(kind: str, scope: str, as_of: date, look: Callable[[date], Optional[_Look]],
               level_rules: dict[int, str]) -> list[Detection]:
    """Detections for the levels that hold as of ``as_of`` and 7 days earlier."""
    now = look(as_of)
    if now is None or not now.levels:
        return []
    before_day = as_of - timedelta(days=PERSISTENCE_DAYS)
    before = look(before_day)
    if before is None:
        return []
    levels = sorted(set(now.levels) & set(before.levels))
    out = []
    for level in levels:
        evidence = copy.deepcopy(now.evidence)
        evidence.update({
            "as_of": _iso(as_of),
            "alpha": ALPHA,
            "level": level,
            "level_rule": level_rules[level],
            "confirmed_as_of": _iso(before_day),
            "confirmation": copy.deepcopy(before.summary),
        })
        out.append(Detection(kind, level, scope, evidence, now.headline))
    return out


def _check_as_of(as_of: date) -> None:
    _check_date(as_of, "as_of")


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
    baseline, recent = windows
    b, r = _episode_side(baseline), _episode_side(recent)
    if b["episode_days"] < FEWER_EPISODES_MIN_BASELINE_EPISODE_DAYS:
        return None
    cmp = compare_rates(b["episode_days"], baseline.logged_days, r["episode_days"], recent.logged_days, "less")
    levels = fewer_episodes_levels(cmp)
    base_week = b["episode_days"] / baseline.logged_days * 7
    recent_week = r["episode_days"] / recent.logged_days * 7
    a, c = _distinct(_about(base_week), _about(recent_week), base_week, recent_week, 1)
    now = "to none in the last four weeks." if c == "none" else f"to about {c} a week now."
    headline = f"Days with anxious moments: from about {a} a week in {_months(baseline.start, baseline.end)} {now}"
    evidence = {
        "test": "exact conditional binomial test of two Poisson rates, one-sided (less)",
        "measure": "episode-days (logged days with at least one anxious episode) per logged day",
        "baseline": b, "recent": r,
        "rate_ratio": _num(cmp.ratio), "p_value": _p(cmp.p_value),
    }
    summary = {"recent": recent.describe(), "rate_ratio": _num(cmp.ratio), "p_value": _p(cmp.p_value)}
    return _Look(levels, evidence, headline, summary)


def fewer_episodes_levels(cmp: RateComparison) -> tuple[int, ...]:
    """The levels of ``fewer_anxious_episodes`` one comparison supports (one look).

    Every level needs p < 0.0125; then rate ratio <= 0.7, 0.5, 0.3 for levels
    1, 2, 3. With two 28-day windows of episode-days the test binds first: even
    a baseline with an episode every logged day (28 of 28) needs a ratio of
    about 0.43 or less to be significant.
    """
    if not cmp.p_value < ALPHA:
        return ()
    return tuple(level for level, most in FEWER_EPISODES_LEVELS if cmp.ratio <= most)


def fewer_anxious_episodes(history: HistoryLike, as_of: date) -> list[Detection]:
    """A partner's reliably lower rate of episode-days, recent vs baseline.

    Levels 1, 2, 3 at rate ratio <= 0.7, 0.5, 0.3, each with p < 0.0125 (exact
    conditional binomial test, one-sided), at least 8 episode-days in the
    baseline, and the same holding as of 7 days earlier.
    """
    _check_as_of(as_of)
    h = History.of(history)
    rules = {level: f"rate ratio <= {most}, p < {ALPHA}" for level, most in FEWER_EPISODES_LEVELS}
    return _confirmed(FEWER_ANXIOUS_EPISODES, PARTNER, as_of, lambda d: _fewer_look(h, d), rules)


# --- calmer_episodes ---

def _calmer_look(history: History, as_of: date) -> Optional[_Look]:
    windows = _rate_windows(history, as_of)
    if windows is None:
        return None
    baseline, recent = windows
    base = [i for d in baseline.days for i in d.intensities]
    rec = [i for d in recent.days for i in d.intensities]
    if len(base) < CALMER_MIN_EPISODES or len(rec) < CALMER_MIN_EPISODES:
        return None
    effect, p = _common_language(base, rec)  # the chance a baseline episode was more intense
    base_mean, rec_mean = fmean(base), fmean(rec)
    holds = p < ALPHA and effect >= CALMER_MIN_EFFECT and rec_mean < base_mean
    a, c = _distinct(_mean_text(base_mean), _mean_text(rec_mean), base_mean, rec_mean)
    headline = (f"Anxious moments feel gentler: average intensity from {a} out of 10 in "
                f"{_months(baseline.start, baseline.end)} to {c} now.")
    evidence = {
        "test": "Mann-Whitney U, one-sided (recent intensities lower)",
        "measure": "intensity (0-10) of each anxious episode",
        "baseline": dict(baseline.describe(), episodes=len(base), mean_intensity=_num(base_mean, 2)),
        "recent": dict(recent.describe(), episodes=len(rec), mean_intensity=_num(rec_mean, 2)),
        "common_language_effect": _num(effect), "p_value": _p(p),
    }
    summary = {"recent": recent.describe(), "common_language_effect": _num(effect), "p_value": _p(p)}
    return _Look((1,) if holds else (), evidence, headline, summary)


def calmer_episodes(history: HistoryLike, as_of: date) -> list[Detection]:
    """A partner's episodes reliably less intense, recent vs baseline.

    Mann-Whitney U one-sided, p < 0.0125, common-language effect (the chance
    that a baseline episode was more intense than a recent one) >= 0.7, at
    least 8 episodes in each window, and the recent mean lower; also as of 7
    days earlier. One level.
    """
    _check_as_of(as_of)
    h = History.of(history)
    rules = {1: f"common-language effect >= {CALMER_MIN_EFFECT}, p < {ALPHA}"}
    return _confirmed(CALMER_EPISODES, PARTNER, as_of, lambda d: _calmer_look(h, d), rules)


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
    baseline, recent = windows
    b, r = _activity_side(baseline), _activity_side(recent)
    cmp = compare_rates(b["activities"], baseline.logged_days, r["activities"], recent.logged_days, "greater")
    holds = cmp.p_value < ALPHA and cmp.ratio >= INDEPENDENCE_MIN_RATIO
    base_week = b["activities"] / baseline.logged_days * 7
    recent_week = r["activities"] / recent.logged_days * 7
    a, c = _distinct(_about(base_week), _about(recent_week), base_week, recent_week, 1)
    start = "none" if a == "none" else f"about {a} a week"
    headline = (f"Time for yourself: activities of your own went from {start} in "
                f"{_months(baseline.start, baseline.end)} to about {c} a week now.")
    evidence = {
        "test": "exact conditional binomial test of two Poisson rates, one-sided (greater)",
        "measure": "independence activities per logged day",
        "baseline": b, "recent": r,
        "rate_ratio": _num(cmp.ratio), "baseline_had_none": b["activities"] == 0,
        "p_value": _p(cmp.p_value),
    }
    summary = {"recent": recent.describe(), "rate_ratio": _num(cmp.ratio), "p_value": _p(cmp.p_value)}
    return _Look((1,) if holds else (), evidence, headline, summary)


def more_independence(history: HistoryLike, as_of: date) -> list[Detection]:
    """A partner's reliably higher rate of independence activities per logged day.

    The rate test one-sided (greater), p < 0.0125, rate ratio >= 1.4 (a
    baseline with no activity counts as an infinite ratio; ``rate_ratio`` is
    then null in the evidence), >= 14 logged days per window; also as of 7
    days earlier. One level.
    """
    _check_as_of(as_of)
    h = History.of(history)
    rules = {1: f"rate ratio >= {INDEPENDENCE_MIN_RATIO}, p < {ALPHA}"}
    return _confirmed(MORE_INDEPENDENCE, PARTNER, as_of, lambda d: _independence_look(h, d), rules)


# --- better_communication (the couple's) ---

def _rated_days(history: History, as_of: date) -> list[tuple[date, float]]:
    return [(d.day, fmean(d.communication)) for d in history.until(as_of) if d.communication]


def _communication_look(a: History, b: History, as_of: date) -> Optional[_Look]:
    firsts, lasts, sides = [], [], []
    for h in (a, b):
        rated = _rated_days(h, as_of)
        m = min(COMMUNICATION_WINDOW, len(rated) // 2)
        if m < COMMUNICATION_MIN_RATINGS:
            return None
        first, last = rated[:m], rated[-m:]
        firsts.append(first)
        lasts.append(last)
        sides.append((fmean(v for _, v in first), fmean(v for _, v in last)))
    first_all = sorted(v for w in firsts for _, v in w)  # sorted: the same numbers whichever partner is a
    last_all = sorted(v for w in lasts for _, v in w)
    effect, p = _common_language(last_all, first_all)
    neither_down = all(later >= earlier for earlier, later in sides)
    first_mean, last_mean = fmean(first_all), fmean(last_all)
    holds = p < ALPHA and effect >= COMMUNICATION_MIN_EFFECT and neither_down and last_mean > first_mean

    def window(ws: list[list[tuple[date, float]]], mean: float) -> dict:
        # the couple's window: its date span and size, never one partner's numbers beside the other's
        days = [d for w in ws for d, _ in w]
        return {"start": _iso(min(days)), "end": _iso(max(days)), "ratings": len(days), "mean": _num(mean, 2)}

    x, y = _distinct(_mean_text(first_mean), _mean_text(last_mean), first_mean, last_mean)
    headline = f"Talking together: your daily communication ratings went from about {x} to about {y} out of 5."
    evidence = {
        "test": "Mann-Whitney U, one-sided (the last rated days higher than the first), both partners pooled",
        "measure": "daily communication rating (1-5; a day's ratings averaged)",
        "first": window(firsts, first_mean), "last": window(lasts, last_mean),
        "common_language_effect": _num(effect), "p_value": _p(p),
        "neither_partner_went_down": neither_down,
    }
    summary = {"last": {"start": evidence["last"]["start"], "end": evidence["last"]["end"]},
               "common_language_effect": _num(effect), "p_value": _p(p)}
    return _Look((1,) if holds else (), evidence, headline, summary)


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
    rules = {1: f"common-language effect >= {COMMUNICATION_MIN_EFFECT}, p < {ALPHA}, neither partner's mean lower"}
    return _confirmed(BETTER_COMMUNICATION, COUPLE, as_of, lambda d: _communication_look(ha, hb, d), rules)


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
    res = stats.kendalltau([-w for w in order], means, alternative="greater")
    tau, p = float(res.statistic), float(res.pvalue)
    if not math.isfinite(tau):  # every week the same: no trend
        tau, p = 0.0, 1.0
    # the span of the check-ins, halved by days, for the repair of conflicts
    span_start = as_of - timedelta(days=7 * order[0] + 6)
    mid = span_start + timedelta(days=(as_of - span_start).days // 2)
    first_half = _repair_half(days, span_start, mid)
    recent_half = _repair_half(days, mid + timedelta(days=1), as_of - timedelta(days=REPAIR_SETTLED_DAYS))
    repair = _repair_verdict(first_half, recent_half)
    n = len(means)
    older, newer = fmean(means[:n // 2]), fmean(means[(n + 1) // 2:])
    holds = tau >= BOND_MIN_TAU and p < ALPHA and repair is not None and newer > older
    x, y = _distinct(_mean_text(older), _mean_text(newer), older, newer)
    headline = f"Feeling closer: your weekly check-ins went from about {x} to about {y} out of 5."
    evidence = {
        "test": "Kendall's tau of weekly means against time, one-sided (rising)",
        "measure": "weekly mean of connection and understanding ratings (1-5), both partners",
        "weeks": [{"start": _iso(as_of - timedelta(days=7 * w + 6)), "end": _iso(as_of - timedelta(days=7 * w)),
                   "ratings": len(weeks[w]), "mean": _num(m, 2)} for w, m in zip(order, means)],
        "weeks_with_check_ins": n,
        "first_weeks_mean": _num(older, 2), "last_weeks_mean": _num(newer, 2),
        "kendall_tau": _num(tau), "p_value": _p(p),
        "repair": {"rule": "share of conflicts repaired within 24 hours rising (recent half vs first half "
                           "of the check-in span); no recent conflicts, or every recent one repaired, also passes",
                   "first_half": first_half, "recent_half": recent_half, "passes_because": repair},
    }
    summary = {"kendall_tau": _num(tau), "p_value": _p(p), "weeks_with_check_ins": n,
               "repair_passes_because": repair}
    return _Look((1,) if holds else (), evidence, headline, summary)


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

def rituals_kept(a: HistoryLike, b: HistoryLike, as_of: date) -> list[Detection]:
    """The couple's 10th, 25th, 50th and 100th ritual (levels 1-4).

    Counts every ``ritual`` entry of both partners dated up to ``as_of``;
    totals only, nothing resets. Symmetric in ``a`` and ``b``.
    """
    _check_as_of(as_of)
    tags: Counter[str] = Counter()
    for h in (History.of(a), History.of(b)):
        for d in h.until(as_of):
            tags.update(d.rituals)
    total = sum(tags.values())
    out = []
    for level, threshold in RITUAL_LEVELS:
        if total >= threshold:
            evidence = {"measure": "ritual entries of both partners, counted (never a streak)",
                        "as_of": _iso(as_of), "rituals": total, "threshold": threshold,
                        "by_ritual": dict(sorted(tags.items())), "level": level,
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
    weeks = [{"start": _iso(as_of - timedelta(days=7 * w + 6)), "end": _iso(as_of - timedelta(days=7 * w)),
              "check_in": w in with_check_in} for w in range(RHYTHM_WEEKS - 1, -1, -1)]
    evidence = {"measure": "weeks with a weekly check-in (either partner)", "as_of": _iso(as_of),
                "weeks": weeks, "weeks_with_check_in": kept, "of_weeks": RHYTHM_WEEKS, "level": 1,
                "level_rule": f"a check-in in at least {RHYTHM_MIN_WEEKS} of the last {RHYTHM_WEEKS} weeks"}
    when = (f"in each of the last {RHYTHM_WEEKS} weeks" if kept == RHYTHM_WEEKS
            else f"in {kept} of the last {RHYTHM_WEEKS} weeks")
    return [Detection(CHECK_IN_RHYTHM, 1, COUPLE, evidence,
                      f"Your weekly check-in has found its rhythm: you met for it {when}.")]


# --- all of them ---

def detect_partner_milestones(history: HistoryLike, as_of: date) -> list[Detection]:
    """Every partner-own milestone level that holds as of ``as_of``, in a fixed order."""
    h = History.of(history)
    return fewer_anxious_episodes(h, as_of) + calmer_episodes(h, as_of) + more_independence(h, as_of)


def detect_couple_milestones(a: HistoryLike, b: HistoryLike, as_of: date) -> list[Detection]:
    """Every couple milestone level that holds as of ``as_of``, in a fixed order.

    Pass an empty history for a partner who has not joined yet.
    """
    ha, hb = History.of(a), History.of(b)
    return (better_communication(ha, hb, as_of) + stronger_bond(ha, hb, as_of)
            + rituals_kept(ha, hb, as_of) + check_in_rhythm(ha, hb, as_of))


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
