"""better_communication: the couple's daily communication ratings reliably higher, last rated days against first.

Each partner's daily value is the mean of that day's ratings; the windows are
the partner's first and last ``min(14, n // 2)`` rated days (so they never
overlap) and both partners need at least 10 per window. Its evidence, which
both partners read, holds the windows compared with their counts and means:
never a breakdown by partner.
"""
from __future__ import annotations

from datetime import date, timedelta
from functools import cache
from statistics import fmean
from typing import Optional

from .aggregates import COUPLE, Detection, History, HistoryLike, _check_as_of
from .registry import BETTER_COMMUNICATION
from .tests_of_change import ALPHA, _common_language
from .windows import (
    COMMUNICATION_CONFIRM_DAYS, COMMUNICATION_WINDOW, SPENDING_PERIOD_DAYS, _confirmed, _Look, look_alpha,
)
from .wording import _distinct, _iso, _mean_text, _num, _p

COMMUNICATION_MIN_RATINGS = 10  # per window, per partner
COMMUNICATION_MIN_EFFECT = 0.7


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
