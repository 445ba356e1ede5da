"""stronger_bond: the couple's shared check-ins rose, reliably, lastingly and enough.

A broken-stick (ramp) scan of weekly means (:mod:`.couple_scan`,
:mod:`.weekly_means`) of every connection and understanding rating of the
check-ins each partner shared: at each daily look, every 7-day block
boundary of the last 26 weeks is a candidate start of the rise, and each
rise may take 0 (a step), 4, 8 or 12 weeks, then stay; the couple's weekly
means are fitted with flat, rising over those weeks from the start, flat
again, and the rise is tested with Student's t, the weeks' residual
variance shrunk toward a typical couple's. A candidate is admissible with
at least 4 weeks with a check-in before the start and 2 after it, 3
ratings of each partner on each side, and, comparing the ratings before
the start with those from where the rise is half done (from the start, for
a step), a rise of the couple's mean of at least 0.5 points, neither
partner's own mean lower, and a common-language effect of at least 0.7.
One level. No confirming look a few days earlier: with one check-in a
week, the look 3 days earlier mostly lacks the newest check-in, so it
delayed a rise by about a week; the change has lasted when 2 weeks with
check-ins follow its start.
"""

from __future__ import annotations

from datetime import date

from .aggregates import Detection, HistoryLike
from .couple_scan import TARGET, CoupleScan
from .registry import STRONGER_BOND
from .weekly_means import WeeklySettings

__all__ = ["SETTINGS", "RULE", "stronger_bond"]

# the variance of a typical couple's weekly means about their side's mean (the calibration cohorts' median)
SETTINGS = WeeklySettings(prior_variance=0.5, null_rise=0.2, ramp_weeks=(0, 4, 8, 12))


RULE = CoupleScan(
    STRONGER_BOND,
    SETTINGS,
    (
        "connection",
        "understanding",
    ),  # every connection and understanding rating of the day's check-ins
    test="broken-stick scan of the couple's weekly mean check-in ratings (a rise over 0-12 weeks from any week), "
    "Student's t of the fitted rise with the weeks' variance shrunk toward a typical couple's",
    measure="connection and understanding ratings of check-ins (1-5), both partners' shared check-ins",
    headline=lambda before, now, months: (
        f"Feeling closer: your check-ins say about {now} out of 5 now, "
        f"from about {before} in {months}."
    ),
    persistence_days=0,
)


def stronger_bond(
    a: HistoryLike, b: HistoryLike, as_of: date, target: str = TARGET
) -> list[Detection]:
    """Level 1 of ``stronger_bond`` if it holds as of ``as_of`` (``a``, ``b``: each partner's shared days)."""
    return RULE.detect(a, b, as_of, target)
