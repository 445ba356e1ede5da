"""The worsening check: a partner's episode-days reliably more lately (never a milestone, never announced).

It compares the last 28 days with the 28 days before them, on episode-days
with the exact binomial test, with the 7-day persistence; it may lead to a
gentle private check-in, never sent to the partner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from .aggregates import History, HistoryLike, _check_as_of
from .tests_of_change import ALPHA, compare_rates
from .windows import MIN_LOGGED_DAYS, PERSISTENCE_DAYS, WINDOW_DAYS, _Window, _window
from .wording import _iso, _num, _p

WORSENING_MIN_RATIO = 1.4


@dataclass(frozen=True)
class WorseningCheck:
    """Whether the episode rate reliably got worse (for a gentle, private check-in).

    ``evidence`` is None when there were too few logged days to test.
    Never a milestone, never announced, never sent to the partner.
    """

    worsening: bool
    evidence: dict | None


def _episode_side(w: _Window) -> dict:
    k = sum(1 for d in w.days if d.episode_day)
    rate = k / w.logged_days
    return dict(
        w.describe(),
        episode_days=k,
        episodes=sum(d.episodes for d in w.days),
        episode_days_per_logged_day=_num(rate),
        episode_days_per_week=_num(rate * 7, 2),
    )


def _worsening_look(history: History, as_of: date) -> tuple[bool, dict] | None:
    recent_start = as_of - timedelta(days=WINDOW_DAYS - 1)
    previous_end = recent_start - timedelta(days=1)
    previous = _window(history, previous_end - timedelta(days=WINDOW_DAYS - 1), previous_end)
    recent = _window(history, recent_start, as_of)
    if previous.logged_days < MIN_LOGGED_DAYS or recent.logged_days < MIN_LOGGED_DAYS:
        return None
    p_side, r_side = _episode_side(previous), _episode_side(recent)
    cmp = compare_rates(
        p_side["episode_days"],
        previous.logged_days,
        r_side["episode_days"],
        recent.logged_days,
        "greater",
    )
    worse = cmp.p_value < ALPHA and cmp.ratio >= WORSENING_MIN_RATIO
    return worse, {
        "as_of": _iso(as_of),
        "previous": p_side,
        "recent": r_side,
        "rate_ratio": _num(cmp.ratio),
        "p_value": _p(cmp.p_value),
    }


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
    evidence = dict(
        evidence,
        test="exact conditional binomial test of two Poisson rates, one-sided (greater)",
        measure="episode-days per logged day",
        alpha=ALPHA,
        rule=f"rate ratio >= {WORSENING_MIN_RATIO}, p < {ALPHA}, also as of {_iso(before_day)}",
        confirmation=None
        if before is None
        else {k: before[1][k] for k in ("rate_ratio", "p_value")},
    )
    return WorseningCheck(worse, evidence)
