"""stronger_bond: the couple's weekly check-ins reliably rising, and conflicts repaired no worse.

Weekly blocks are 7-day blocks counted back from ``as_of``, the last 26
weeks at most; the week's value is the mean of all connection and
understanding ratings of both partners in it.
"""
from __future__ import annotations

import math
from datetime import date, timedelta
from functools import cache
from statistics import fmean
from typing import Optional

from .aggregates import COUPLE, DayAggregate, Detection, History, HistoryLike, _check_as_of
from .registry import STRONGER_BOND
from .tests_of_change import ALPHA, _kendalltau
from .windows import BOND_MAX_WEEKS, _confirmed, _Look
from .wording import _distinct, _iso, _mean_text, _num, _p

BOND_MIN_TAU = 0.5
BOND_MIN_WEEKS = 8
REPAIR_SETTLED_DAYS = 2  # a conflict's 24 hours may still be running on the last two local days


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
