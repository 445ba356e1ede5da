"""The registry of milestones: for each, its type, whose it is, its levels, the least data it needs, the days
an evaluation must read back for it, and what its celebration's chart shows.

The service takes everything it knows about a milestone from here: the levels
a partner can still reach (``LEVELS``), the days an evaluation reads of each
table (``READS``: the partner's own rules' of their days, the couple's of
their shared days; ``SINCE_FIRST``) and the picture a celebration carries
(:func:`picture`). The rules themselves
live one a module beside this one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from .aggregates import COUPLE, PARTNER, Detection
from .couple_scan import PERSISTENCE_DAYS
from .weekly_means import BLOCK_DAYS, WeeklySettings
from .windows import (
    BASELINE_MAX_DAYS,
    CALMER_CONFIRM_DAYS,
    INDEPENDENCE_CONFIRM_DAYS,
    RHYTHM_WEEKS,
    WINDOW_DAYS,
)
from .wording import _num

__all__ = [
    "FEWER_ANXIOUS_EPISODES",
    "CALMER_EPISODES",
    "MORE_INDEPENDENCE",
    "BETTER_COMMUNICATION",
    "STRONGER_BOND",
    "RITUALS_KEPT",
    "CHECK_IN_RHYTHM",
    "FEWER_EPISODES_LEVELS",
    "RITUAL_LEVELS",
    "Reads",
    "Chart",
    "Milestone",
    "MILESTONES",
    "MILESTONE_TYPES",
    "LEVELS",
    "READS",
    "SINCE_FIRST",
    "picture",
]

FEWER_ANXIOUS_EPISODES = "fewer_anxious_episodes"
CALMER_EPISODES = "calmer_episodes"
MORE_INDEPENDENCE = "more_independence"
BETTER_COMMUNICATION = "better_communication"
STRONGER_BOND = "stronger_bond"
RITUALS_KEPT = "rituals_kept"
CHECK_IN_RHYTHM = "check_in_rhythm"

FEWER_EPISODES_LEVELS = ((1, 0.7), (2, 0.5), (3, 0.3))  # (level, rate ratio at most)
RITUAL_LEVELS = ((1, 10), (2, 25), (3, 50), (4, 100))  # (level, rituals at least)


@dataclass(frozen=True)
class Reads:
    """The days an evaluation as of a date must read for a rule (every other day may be left unread).

    ``head``: days from the first logged day (the first logged day itself is
    always read: the couple scans count their threshold's rise from it);
    ``recent``: days back from the date (confirming looks included);
    ``ratings``: days back from the date, but only their ratings (the
    couple scans read nothing else of a day);
    ``since_first``: every logged day from the first, but only its episodes
    (the change-point scan reads nothing else of a day).
    """

    head: int = 0
    recent: int = 0
    ratings: int = 0
    since_first: bool = False


@dataclass(frozen=True)
class Chart:
    """What a celebration's chart shows: two periods of the evidence, a figure in each.

    ``periods``: the evidence's keys of the earlier and the later period;
    ``value``: the key of the figure in each; ``unit``: the words for it
    (the partner's own units); ``scale``: a rating's maximum (None for a
    rate a week); ``better``: "lower" or "higher".
    """

    periods: tuple[str, str]
    value: str
    unit: str
    better: str
    scale: int | None = None


@dataclass(frozen=True)
class Milestone:
    type: str
    scope: str  # PARTNER (a partner's own) or COUPLE
    levels: tuple[int, ...]
    minimum: str  # the least data before the rule can hold, in words
    reads: Reads
    chart: Chart | None  # None: the celebration has no chart


_PARTNER_WINDOWS = Reads(head=BASELINE_MAX_DAYS, recent=WINDOW_DAYS + max(CALMER_CONFIRM_DAYS))
# A couple scan's look reads the last 26 weeks, and its confirming look 3 days earlier its own (couple_scan).
_COUPLE_SCAN = Reads(ratings=BLOCK_DAYS * WeeklySettings.max_weeks + PERSISTENCE_DAYS - 1)

MILESTONES: tuple[Milestone, ...] = (
    Milestone(
        FEWER_ANXIOUS_EPISODES,
        PARTNER,
        tuple(level for level, _ in FEWER_EPISODES_LEVELS),
        "21 logged days before a change and 14 (two weeks) after it",
        # the scan reads every logged day's episodes since the first (its confirming look among them)
        Reads(since_first=True),
        Chart(("before", "after"), "episodes_per_week", "anxious moments a week", "lower"),
    ),
    Milestone(
        CALMER_EPISODES,
        PARTNER,
        (1,),
        "14 logged days and 8 episodes in each of two 28-day windows",
        _PARTNER_WINDOWS,
        Chart(
            ("baseline", "recent"),
            "mean_intensity",
            "intensity of anxious moments, out of 10",
            "lower",
            scale=10,
        ),
    ),
    Milestone(
        MORE_INDEPENDENCE,
        PARTNER,
        (1,),
        "14 logged days in each of two 28-day windows",
        Reads(head=BASELINE_MAX_DAYS, recent=WINDOW_DAYS + max(INDEPENDENCE_CONFIRM_DAYS)),
        Chart(
            ("baseline", "recent"), "activities_per_week", "activities of your own a week", "higher"
        ),
    ),
    Milestone(
        BETTER_COMMUNICATION,
        COUPLE,
        (1,),
        "4 rated weeks before a change and 2 after it, 3 shared ratings of each partner on each side",
        _COUPLE_SCAN,
        Chart(("before", "after"), "mean", "communication rating, out of 5", "higher", scale=5),
    ),
    Milestone(
        STRONGER_BOND,
        COUPLE,
        (1,),
        "4 weeks with a check-in before a change and 2 after it, 3 shared ratings of each partner on each side",
        _COUPLE_SCAN,
        Chart(("before", "after"), "mean", "check-in rating, out of 5", "higher", scale=5),
    ),
    Milestone(
        RITUALS_KEPT,
        COUPLE,
        tuple(level for level, _ in RITUAL_LEVELS),
        "10 rituals",
        Reads(),
        None,
    ),  # a count of every ritual ever, read apart (see the evaluation)
    Milestone(
        CHECK_IN_RHYTHM,
        COUPLE,
        (1,),
        "check-ins in 4 of the last 5 weeks",
        Reads(recent=7 * RHYTHM_WEEKS),
        None,
    ),
)
REGISTRY = {m.type: m for m in MILESTONES}
MILESTONE_TYPES = tuple(REGISTRY)
# Every level of each type (a type whose every level is held has nothing left to find).
LEVELS = {m.type: m.levels for m in MILESTONES}

# What an evaluation reads back of each table, the most any rule of its scope needs (the partner's own rules
# read the partner's days, the couple's their shared days), so that evaluating costs about the same with two
# months or two years of history.
READS = {
    scope: Reads(
        head=max(m.reads.head for m in MILESTONES if m.scope == scope),
        recent=max(m.reads.recent for m in MILESTONES if m.scope == scope),
        ratings=max(m.reads.ratings for m in MILESTONES if m.scope == scope),
        since_first=any(m.reads.since_first for m in MILESTONES if m.scope == scope),
    )
    for scope in (PARTNER, COUPLE)
}
SINCE_FIRST = tuple(m.type for m in MILESTONES if m.reads.since_first)


def _figure(value) -> float | None:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
    return _num(value, 2) if ok else None


def _day(value) -> date | None:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def picture(det: Detection) -> dict | None:
    """What the celebration of ``det`` shows, typed: the words for the unit, whether lower or higher is
    better, the scale of a rating, and the two periods compared with the figure of each (in the partner's
    own units). None for a milestone without a chart, or evidence without both periods whole."""
    chart = REGISTRY[det.type].chart if det.type in REGISTRY else None
    if chart is None:
        return None
    periods = []
    for key in chart.periods:
        side = det.evidence.get(key)
        if not isinstance(side, dict):
            return None
        period = {
            "start": _day(side.get("start")),
            "end": _day(side.get("end")),
            "value": _figure(side.get(chart.value)),
        }
        if None in period.values():
            return None
        periods.append(period)
    out = {"unit": chart.unit, "better": chart.better, "periods": periods}
    if chart.scale is not None:
        out["scale"] = chart.scale
    return out
