"""more_independence: a partner's independence activities per logged day reliably more, recent against baseline.

The binomial test of two rates, and again on the counts divided by their
over-dispersion (activities come in busy weeks), in the windows of :mod:`.windows`.
"""

from __future__ import annotations

from datetime import date
from functools import cache

from .aggregates import PARTNER, Detection, History, HistoryLike, _check_as_of
from .registry import MORE_INDEPENDENCE
from .tests_of_change import _scaled_binomial_p, compare_rates
from .windows import (
    INDEPENDENCE_CONFIRM_DAYS,
    _confirmed,
    _dispersion,
    _Look,
    _rate_windows,
    _summary,
    _weekly,
    _Window,
)
from .wording import _months, _num, _p

INDEPENDENCE_MIN_RATIO = 1.4


def _activity_side(w: _Window) -> dict:
    k = sum(d.activities for d in w.days)
    rate = k / w.logged_days
    return dict(
        w.describe(),
        activities=k,
        activity_days=sum(1 for d in w.days if d.activities),
        activities_per_logged_day=_num(rate),
        activities_per_week=_num(rate * 7, 2),
    )


def _independence_look(history: History, as_of: date) -> _Look | None:
    windows = _rate_windows(history, as_of)
    if windows is None:
        return None
    baseline, recent = windows.baseline, windows.recent
    b, r = _activity_side(baseline), _activity_side(recent)
    cmp = compare_rates(
        b["activities"], baseline.logged_days, r["activities"], recent.logged_days, "greater"
    )

    @cache
    def dispersed() -> tuple[float, int, float]:
        # activities come in busy and quiet weeks: the same test on counts scaled down by the dispersion
        phi, df = _dispersion(windows, lambda d: d.activities)
        n = b["activities"] + r["activities"]
        p0 = recent.logged_days / (baseline.logged_days + recent.logged_days)
        return (
            phi,
            df,
            _scaled_binomial_p(r["activities"] / phi, n / phi, p0, "greater") if n else 1.0,
        )

    # the dispersion's weeks are counted only if the rest holds
    holds = (
        windows.logging_kept
        and cmp.p_value < windows.alpha
        and cmp.ratio >= INDEPENDENCE_MIN_RATIO
        and dispersed()[2] < windows.alpha
    )

    def explain():
        phi, df, p_phi = dispersed()
        a, c = _weekly(b["activities"], r["activities"], windows)
        start = "none" if a == "none" else f"about {a} a week"
        headline = (
            f"Time for yourself: activities of your own went from {start} in "
            f"{_months(baseline.start, baseline.end)} to about {c} a week now."
        )
        evidence = {
            "test": "exact conditional binomial test of two Poisson rates, one-sided (greater)",
            "measure": "independence activities per logged day",
            "baseline": b,
            "recent": r,
            "rate_ratio": _num(cmp.ratio),
            "baseline_had_none": b["activities"] == 0,
            "p_value": _p(cmp.p_value),
            "over_dispersion": {
                "phi": _num(phi),
                "df": df,
                "p_value": _p(p_phi),
                "rule": "the binomial test again on counts divided by phi (Pearson chi-square "
                "of weekly counts / df, at least 1)",
            },
            **windows.describe(),
        }
        return (
            evidence,
            headline,
            _summary(
                windows,
                rate_ratio=_num(cmp.ratio),
                p_value=_p(cmp.p_value),
                over_dispersion_p_value=_p(p_phi),
            ),
        )

    return _Look((1,) if holds else (), explain)


def more_independence(history: HistoryLike, as_of: date) -> list[Detection]:
    """A partner's reliably higher rate of independence activities per logged day.

    The rate test one-sided (greater), p < the look's alpha
    (:func:`look_alpha`), and again with the counts divided by their
    over-dispersion (quasi-Poisson phi from the weekly counts, at least 1:
    activities come in busy and quiet weeks); rate ratio >= 1.4 (a baseline
    with no activity counts as an infinite ratio; ``rate_ratio`` is then null
    in the evidence), >= 14 logged days per window, the windows and the
    logging guard of :mod:`.windows`; also as of 7 days
    earlier. One level.
    """
    _check_as_of(as_of)
    h = History.of(history)
    rules = {
        1: f"rate ratio >= {INDEPENDENCE_MIN_RATIO}, p < the look's alpha, also with over-dispersion"
    }
    return _confirmed(
        MORE_INDEPENDENCE,
        PARTNER,
        as_of,
        lambda d: _independence_look(h, d),
        rules,
        INDEPENDENCE_CONFIRM_DAYS,
    )
