"""better_communication: the couple's shared communication ratings rose, reliably, lastingly and enough.

A weekly-mean change-point scan (:mod:`.couple_scan`, :mod:`.weekly_means`)
of each partner's daily communication rating (a day's ratings averaged),
only from the reflections each partner shared: at each daily look, every
7-day block boundary of the last 26 weeks is a candidate change day; the
couple's weekly means after it are compared with those before it, Student's
t with the weeks' variance shrunk toward a typical couple's. A split is
admissible with at least 4 rated weeks before and 2 after, 3 ratings of
each partner on each side, a rise of the couple's mean of at least 0.5
points, neither partner's own mean lower, and a common-language effect of
at least 0.7. One level, held when the threshold is reached as of the look
and as of 3 days earlier.
"""

from __future__ import annotations

from datetime import date

from .aggregates import Detection, HistoryLike
from .couple_scan import TARGET, CoupleScan
from .registry import BETTER_COMMUNICATION
from .weekly_means import WeeklySettings

__all__ = ["SETTINGS", "RULE", "better_communication"]

# the variance of a typical couple's weekly means about their side's mean (the calibration cohorts' median)
SETTINGS = WeeklySettings(prior_variance=0.35, null_rise=0.2)


RULE = CoupleScan(
    BETTER_COMMUNICATION,
    SETTINGS,
    # the day's communication rating: one value, its ratings averaged (a day rated twice is one day)
    ("communication",),
    test="change-point scan of the couple's weekly mean communication ratings, Student's t with the weeks' "
    "variance shrunk toward a typical couple's",
    measure="daily communication rating (1-5; a day's ratings averaged), both partners' shared reflections",
    headline=lambda before, now, months: (
        f"Talking together: you rate your talks about {now} out of 5 now, "
        f"from about {before} in {months}."
    ),
    day_mean=True,
)


def better_communication(
    a: HistoryLike, b: HistoryLike, as_of: date, target: str = TARGET
) -> list[Detection]:
    """Level 1 of ``better_communication`` if it holds as of ``as_of`` (``a``, ``b``: each partner's shared days)."""
    return RULE.detect(a, b, as_of, target)
