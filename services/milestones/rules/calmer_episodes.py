"""calmer_episodes: a partner's anxious moments reliably less intense, recent weeks against the baseline.

Mann-Whitney U on the episodes' intensities, and Welch's t-test on the weekly
mean intensities too (episodes of one bad week are not independent), in the
windows of :mod:`.windows`.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from statistics import fmean

from .aggregates import PARTNER, Detection, History, HistoryLike, _check_as_of
from .registry import CALMER_EPISODES
from .tests_of_change import _common_language, _welch_lower
from .windows import CALMER_CONFIRM_DAYS, _confirmed, _Look, _rate_windows, _summary, _weeks
from .wording import _distinct, _mean_text, _months, _num, _p

CALMER_MIN_EPISODES = 8  # per window
CALMER_MIN_EFFECT = 0.7  # common-language effect


def _calmer_look(history: History, as_of: date) -> _Look | None:
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
        base_weeks = [
            fmean(i for d in b for i in d.intensities)
            for b in _weeks(baseline, False)
            if any(d.intensities for d in b)
        ]
        rec_weeks = [
            fmean(i for d in b for i in d.intensities)
            for b in _weeks(recent, True)
            if any(d.intensities for d in b)
        ]
        _, p_weeks = _welch_lower(
            base_weeks,
            rec_weeks,
            len(base_weeks) / (12 * len(base)),
            len(rec_weeks) / (12 * len(rec)),
        )
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
        headline = (
            f"Anxious moments feel gentler: average intensity from {a} out of 10 in "
            f"{_months(baseline.start, baseline.end)} to {c} now."
        )
        evidence = {
            "test": "Mann-Whitney U, one-sided (recent intensities lower); and Welch's t-test on weekly mean "
            "intensities, one-sided",
            "measure": "intensity (0-10) of each anxious episode",
            "baseline": dict(
                baseline.describe(), episodes=len(base), mean_intensity=_num(base_mean, 2)
            ),
            "recent": dict(recent.describe(), episodes=len(rec), mean_intensity=_num(rec_mean, 2)),
            "common_language_effect": _num(effect),
            "p_value": _p(p),
            "weekly": {
                "baseline_weekly_means": [_num(x, 2) for x in base_weeks],
                "recent_weekly_means": [_num(x, 2) for x in rec_weeks],
                "p_value": _p(p_weeks),
            },
            **windows.describe(),
        }
        return (
            evidence,
            headline,
            _summary(
                windows,
                common_language_effect=_num(effect),
                p_value=_p(p),
                weekly_p_value=_p(p_weeks),
            ),
        )

    return _Look((1,) if holds else (), explain)


def calmer_episodes(history: HistoryLike, as_of: date) -> list[Detection]:
    """A partner's episodes reliably less intense, recent vs baseline.

    Mann-Whitney U one-sided on the episodes' intensities and, because
    episodes of one week are not independent (bad weeks), Welch's t-test
    one-sided on the weekly mean intensities (7-day blocks), both p < the
    look's alpha (:func:`look_alpha`); common-language effect (the chance
    that a baseline episode was more intense than a recent one) >= 0.7; at
    least 8 episodes in each window; the recent mean lower; the windows and
    the logging guard of :mod:`.windows`; also as of 7 days
    earlier. One level.
    """
    _check_as_of(as_of)
    h = History.of(history)
    rules = {1: f"common-language effect >= {CALMER_MIN_EFFECT}, both tests p < the look's alpha"}
    return _confirmed(
        CALMER_EPISODES, PARTNER, as_of, lambda d: _calmer_look(h, d), rules, CALMER_CONFIRM_DAYS
    )
