"""check_in_rhythm: the couple's weekly check-in in at least 4 of the last 5 weeks (a flexible rhythm).

Its own milestone type, apart from ``rituals_kept``, because a (type, level)
pair is achieved once and the ritual counts already use levels 1 to 4.
"""

from __future__ import annotations

from datetime import date, timedelta

from .aggregates import COUPLE, Detection, History, HistoryLike, _check_as_of
from .registry import CHECK_IN_RHYTHM
from .windows import RHYTHM_WEEKS
from .wording import _iso

RHYTHM_MIN_WEEKS = 4


def check_in_rhythm(a: HistoryLike, b: HistoryLike, as_of: date) -> list[Detection]:
    """Weekly check-ins in at least 4 of the last 5 weeks (one level).

    Weeks are 7-day blocks counted back from ``as_of``; a week counts if
    either partner recorded a ``check_in`` or a ritual tagged
    ``weekly_check_in`` in it. A flexible rhythm, not a streak: any 4 of 5.
    """
    _check_as_of(as_of)
    oldest = as_of - timedelta(days=7 * RHYTHM_WEEKS - 1)
    with_check_in = {
        (as_of - d.day).days // 7
        for h in (History.of(a), History.of(b))
        for d in h.between(oldest, as_of)
        if d.has_check_in
    }
    kept = len(with_check_in)
    if kept < RHYTHM_MIN_WEEKS:
        return []
    # the span and its count, never which week had one (that would date a single entry)
    evidence = {
        "measure": "weeks with a weekly check-in (either partner)",
        "as_of": _iso(as_of),
        "start": _iso(oldest),
        "end": _iso(as_of),
        "weeks_with_check_in": kept,
        "of_weeks": RHYTHM_WEEKS,
        "level": 1,
        "level_rule": f"a check-in in at least {RHYTHM_MIN_WEEKS} of the last {RHYTHM_WEEKS} weeks",
    }
    when = (
        f"in each of the last {RHYTHM_WEEKS} weeks"
        if kept == RHYTHM_WEEKS
        else f"in {kept} of the last {RHYTHM_WEEKS} weeks"
    )
    return [
        Detection(
            CHECK_IN_RHYTHM,
            1,
            COUPLE,
            evidence,
            f"Your weekly check-in has found its rhythm: you met for it {when}.",
        )
    ]
