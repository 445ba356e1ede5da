"""stronger_bond: the couple's shared check-ins rose, reliably, lastingly and enough.

A weekly-mean change-point scan (:mod:`.couple_scan`, :mod:`.weekly_means`)
of every connection and understanding rating of the check-ins each partner
shared: at each daily look, every 7-day block boundary of the last 26 weeks
is a candidate change day; the couple's weekly means after it are compared
with those before it, Student's t with the weeks' variance shrunk toward a
typical couple's. A split is admissible with at least 4 weeks with a
check-in before and 2 after, 3 ratings of each partner on each side, a rise
of the couple's mean of at least 0.5 points, neither partner's own mean
lower, and a common-language effect of at least 0.7. One level, held when
the threshold is reached as of the look and as of 3 days earlier.
"""
from __future__ import annotations

from datetime import date

from .aggregates import DayAggregate, Detection, HistoryLike
from .registry import STRONGER_BOND
from .couple_scan import TARGET, CoupleScan
from .weekly_means import WeeklySettings

__all__ = ["SETTINGS", "RULE", "stronger_bond"]

# the variance of a typical couple's weekly means about their side's mean (the calibration cohorts' median)
SETTINGS = WeeklySettings(prior_variance=0.5, null_rise=0.2)


def _check_in_ratings(d: DayAggregate) -> tuple[float, ...]:
    """Every connection and understanding rating of the day's check-ins."""
    return tuple(float(v) for v in d.connection + d.understanding)


RULE = CoupleScan(
    STRONGER_BOND, SETTINGS, _check_in_ratings,
    test="change-point scan of the couple's weekly mean check-in ratings, Student's t with the weeks' variance "
         "shrunk toward a typical couple's",
    measure="connection and understanding ratings of check-ins (1-5), both partners' shared check-ins",
    headline=lambda before, now, months: (f"Feeling closer: your check-ins say about {now} out of 5 now, "
                                          f"from about {before} in {months}."),
)


def stronger_bond(a: HistoryLike, b: HistoryLike, as_of: date, target: str = TARGET) -> list[Detection]:
    """Level 1 of ``stronger_bond`` if it holds as of ``as_of`` (``a``, ``b``: each partner's shared days)."""
    return RULE.detect(a, b, as_of, target)
