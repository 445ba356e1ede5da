"""The windows the old rules compare (baseline and recent), the alpha of each look, and persistence.

A baseline is the partner's first 28 *logged* days, from the first logged
day, within its first 56 days (a partner who logged fewer than 28 of those
56 days gets the 56 days); *recent* is the 28 days ending at ``as_of``. Each
needs at least 14 logged days and they must not overlap, or nothing is
tested. The alpha of a look is spent over time (:func:`look_alpha`), and a
rule must hold also at its confirming looks (:func:`_confirmed`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from typing import Any

from scipy import special

from .aggregates import DayAggregate, Detection, History
from .tests_of_change import ALPHA
from .wording import _about, _distinct, _iso, _num, _p

WINDOW_DAYS = 28
MIN_LOGGED_DAYS = 14
PERSISTENCE_DAYS = 7
# confirming looks (days before as_of at which the rule must hold too), per partner milestone
CALMER_CONFIRM_DAYS = (PERSISTENCE_DAYS, 2 * PERSISTENCE_DAYS, 3 * PERSISTENCE_DAYS)
INDEPENDENCE_CONFIRM_DAYS = CALMER_CONFIRM_DAYS

BASELINE_LOGGED_DAYS = 28  # the baseline: the first 28 logged days ...
BASELINE_MAX_DAYS = 56  # ... within the first 56 days
LOGGING_GUARD = 0.9  # the recent share of logged days must be >= 0.9 x the baseline's
SPENDING_PERIOD_DAYS = 28  # look alpha = ALPHA / period ** 2, a new period every 28 days of looks
DISPERSION_BOUND = (
    0.25  # phi at its 75% upper confidence bound: Pearson chi-square / its 25% quantile
)
RHYTHM_WEEKS = 5


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
    return ALPHA / period**2


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
            "looks": {
                "period": self.period,
                "look_alpha": _p(self.alpha),
                "rule": f"alpha {ALPHA} / period ** 2, period = 1 + days since the first day a "
                f"detection was possible // {SPENDING_PERIOD_DAYS}",
            },
            "logging": {
                "baseline_logged_share": _num(self.baseline.logged_share),
                "recent_logged_share": _num(self.recent.logged_share),
                "kept": self.logging_kept,
                "rule": f"recent share of logged days >= {LOGGING_GUARD} x the baseline's, "
                "or nothing is tested",
            },
        }


def _rate_windows(history: History, as_of: date) -> _RateWindows | None:
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
    return max(
        1.0, x2 / float(special.chdtri(df, 1 - DISPERSION_BOUND))
    ), df  # chdtri: stats.chi2.ppf of 1 - q


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


def _confirmed(
    kind: str,
    scope: str,
    as_of: date,
    look: Callable[[date], _Look | None],
    level_rules: dict[int, str],
    confirm_days: tuple[int, ...] = (PERSISTENCE_DAYS,),
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
        evidence.update(
            {
                "as_of": _iso(as_of),
                "alpha": ALPHA,
                "level": level,
                "level_rule": level_rules[level],
                "confirmed_as_of": _iso(befores[0][0]),
                "confirmation": copy.deepcopy(befores[0][1].summary),
            }
        )
        if len(befores) > 1:
            evidence["confirmations"] = [
                {"as_of": _iso(day), **copy.deepcopy(b.summary)} for day, b in befores
            ]
        out.append(Detection(kind, level, scope, evidence, now.headline))
    return out


def _weekly(k_base: int, k_recent: int, windows: _RateWindows) -> tuple[str, str]:
    """Each window's count a week (per logged day, times 7) in words, the two told apart."""
    base_week = k_base / windows.baseline.logged_days * 7
    recent_week = k_recent / windows.recent.logged_days * 7
    return _distinct(_about(base_week), _about(recent_week), base_week, recent_week, 1)


def _summary(windows: _RateWindows, **numbers: Any) -> dict:
    """The few numbers shown for the confirming look a week earlier."""
    return {"recent": windows.recent.describe(), "look_alpha": _p(windows.alpha), **numbers}
