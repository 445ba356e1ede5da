"""What the rules read and what they give: a partner's day (:class:`DayAggregate`), their history, a detection.

Nothing here touches a database, a broker, a file or the clock.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from itertools import repeat
from operator import attrgetter
from typing import Any

import numpy as np

__all__ = [
    "PARTNER",
    "COUPLE",
    "CHECK_IN_RITUAL_TAG",
    "DayAggregate",
    "History",
    "EpisodeDaysHistory",
    "HistoryLike",
    "Detection",
]

PARTNER = "partner"
COUPLE = "couple"
CHECK_IN_RITUAL_TAG = "weekly_check_in"


def _check_date(value: Any, name: str) -> None:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise TypeError(
            f"{name} must be a datetime.date (a local date), not {type(value).__name__}"
        )


def _check_count(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")


def _check_ratings(values: tuple, name: str, lo: int, hi: int) -> None:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{name} ratings must be whole numbers {lo}-{hi}, not {v!r}")


@dataclass(frozen=True)
class DayAggregate:
    """One partner's journal for one local date, reduced to what the rules use.

    ``logged``: the partner recorded anything at all that day (any entry kind,
    a mood-only reflection included). A day with any entry below must be
    logged; a day that is not logged may simply be absent.
    ``episodes``: anxious episodes that day; ``intensities``: their intensities
    (0-10), one per episode, so ``len(intensities) == episodes``.
    ``communication``: the day's ``daily_reflection`` communication ratings (1-5).
    ``connection``, ``understanding``: the day's ``check_in`` ratings (1-5).
    ``rituals``: the tags of the day's ``ritual`` entries, one per entry.
    ``activities``: ``independence_activity`` entries that day.
    ``conflicts``: conflicts that occurred that day; ``conflicts_repaired_24h``:
    how many of them have ``repaired_at`` within 24 hours of ``occurred_at``.
    ``weekly_check_ins``: ``check_in`` entries that day (a ``ritual`` tagged
    ``weekly_check_in`` counts as a check-in too, in :func:`check_in_rhythm`).

    Sequences are stored as tuples; lists are accepted and converted.
    """

    day: date
    logged: bool = True
    episodes: int = 0
    intensities: tuple[int, ...] = ()
    communication: tuple[int, ...] = ()
    connection: tuple[int, ...] = ()
    understanding: tuple[int, ...] = ()
    rituals: tuple[str, ...] = ()
    activities: int = 0
    conflicts: int = 0
    conflicts_repaired_24h: int = 0
    weekly_check_ins: int = 0

    def __post_init__(self) -> None:
        _check_date(self.day, "day")
        if not isinstance(self.logged, bool):
            raise TypeError("logged must be a bool")
        for name in ("intensities", "communication", "connection", "understanding", "rituals"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in (
            "episodes",
            "activities",
            "conflicts",
            "conflicts_repaired_24h",
            "weekly_check_ins",
        ):
            _check_count(getattr(self, name), name)
        if len(self.intensities) != self.episodes:
            raise ValueError(
                f"{self.day}: {self.episodes} episodes but {len(self.intensities)} intensities"
            )
        _check_ratings(self.intensities, "intensity", 0, 10)
        _check_ratings(self.communication, "communication", 1, 5)
        _check_ratings(self.connection, "connection", 1, 5)
        _check_ratings(self.understanding, "understanding", 1, 5)
        if not all(isinstance(r, str) and r for r in self.rituals):
            raise ValueError("rituals must be non-empty tags")
        if self.conflicts_repaired_24h > self.conflicts:
            raise ValueError(f"{self.day}: more conflicts repaired than conflicts")
        if not self.logged and self.has_entries:
            raise ValueError(f"{self.day}: a day with entries is a logged day")

    @classmethod
    def trusted(cls, fields: dict[str, Any]) -> DayAggregate:
        """An aggregate from the projection's own rows, which were checked when
        written: built without the checks from a new dict of every field
        (tuples expected), which it keeps as its own, as evaluation reads a few
        hundred at a time (a fifth of the time of setting each field)."""
        day = object.__new__(cls)
        object.__setattr__(day, "__dict__", fields)
        return day

    @classmethod
    def episodes_only(cls, day: date, episodes: int) -> DayAggregate:
        """A logged day of which only its anxious episodes are known (what the change-point scan reads of a
        day): nothing else of the day is given, so the rest is left empty (trusted: the episodes' intensities
        are not known either)."""
        return cls.trusted(
            {
                "day": day,
                "logged": True,
                "episodes": episodes,
                "intensities": (),
                "communication": (),
                "connection": (),
                "understanding": (),
                "rituals": (),
                "activities": 0,
                "conflicts": 0,
                "conflicts_repaired_24h": 0,
                "weekly_check_ins": 0,
            }
        )

    @property
    def has_entries(self) -> bool:
        return bool(
            self.episodes
            or self.communication
            or self.connection
            or self.understanding
            or self.rituals
            or self.activities
            or self.conflicts
            or self.weekly_check_ins
        )

    @property
    def episode_day(self) -> bool:
        """An episode-day: a logged day with at least one anxious episode."""
        return self.episodes > 0

    @property
    def has_check_in(self) -> bool:
        return self.weekly_check_ins > 0 or CHECK_IN_RITUAL_TAG in self.rituals


_DAY = attrgetter("day")


@dataclass(frozen=True)
class History:
    """One partner's daily aggregates, in date order, at most one per date.

    Give the days in any order (a late or reversed sync); they are sorted here.
    Two aggregates for the same date are an error: merge them first.
    """

    days: tuple[DayAggregate, ...] = ()

    def __post_init__(self) -> None:
        # Built in C where it can be (map, sorted, set): an evaluation builds histories of hundreds of days.
        days = tuple(self.days)
        if not all(map(isinstance, days, repeat(DayAggregate, len(days)))):
            wrong = next(d for d in days if not isinstance(d, DayAggregate))
            raise TypeError(f"a History holds DayAggregate, not {type(wrong).__name__}")
        ordered = tuple(sorted(days, key=_DAY))
        ordinals = tuple(map(date.toordinal, map(_DAY, ordered)))
        if len(set(ordinals)) < len(ordinals):
            again = next(a for a, b in zip(ordered, ordered[1:]) if a.day == b.day)
            raise ValueError(f"two aggregates for {again.day}")
        object.__setattr__(self, "days", ordered)
        object.__setattr__(self, "_ordinals", ordinals)
        first = next((d.day for d in ordered if d.logged), None)
        object.__setattr__(self, "_first_logged", first)

    @classmethod
    def of(cls, days: History | Iterable[DayAggregate]) -> History:
        return days if isinstance(days, History) else cls(tuple(days))

    def between(self, start: date, end: date) -> tuple[DayAggregate, ...]:
        """The aggregates dated start..end, both included."""
        lo = bisect_left(self._ordinals, start.toordinal())
        hi = bisect_right(self._ordinals, end.toordinal())
        return self.days[lo:hi]

    def until(self, as_of: date) -> tuple[DayAggregate, ...]:
        return self.days[: bisect_right(self._ordinals, as_of.toordinal())]

    def first_logged_day(self, as_of: date) -> date | None:
        """The first logged day, if it is on or before ``as_of``."""
        first = self._first_logged
        return first if first is not None and first <= as_of else None

    def episode_counts(self, first: date, last: date) -> tuple[np.ndarray, np.ndarray]:
        """Days first..last as two arrays (index 0 is ``first``): each day's episodes (0 where not logged)
        and whether it was logged."""
        n = (last - first).days + 1
        episodes, logged = np.zeros(n), np.zeros(n, dtype=bool)
        origin = first.toordinal()
        for d in self.between(first, last):
            if d.logged:
                i = d.day.toordinal() - origin
                episodes[i], logged[i] = d.episodes, True
        return episodes, logged


class EpisodeDaysHistory(History):
    """A history of which some logged days are known only by their anxious episodes (``episode_days``:
    their ordinals, :meth:`date.toordinal`, and episodes, two integer arrays in any order), beside whole
    days (``days``): what an evaluation reads of the days only the change-point scan looks at, hundreds on
    a long history, without an object each.

    It is the history of the whole days and of :meth:`DayAggregate.episodes_only` of each other day, and
    gives the same answers; :meth:`episode_counts` reads the arrays as they are. A date given twice (in
    either part, or in both) is an error, as in :class:`History`.
    """

    def __init__(self, days: Iterable[DayAggregate], ordinals, episodes) -> None:
        whole = History(tuple(days))
        ordinals, episodes = (
            np.asarray(ordinals, dtype=np.int64),
            np.asarray(episodes, dtype=np.int64),
        )
        if ordinals.shape != episodes.shape or ordinals.ndim != 1:
            raise ValueError("one count of episodes for each day")
        if (episodes < 0).any():
            raise ValueError("episodes must be whole numbers >= 0")
        order = np.argsort(ordinals, kind="stable")
        ordinals, episodes = ordinals[order], episodes[order]
        dup = np.flatnonzero(np.diff(ordinals) == 0)
        both = np.intersect1d(ordinals, whole._ordinals)
        if len(dup) or len(both):
            again = int(ordinals[dup[0]]) if len(dup) else int(both[0])
            raise ValueError(f"two aggregates for {date.fromordinal(again)}")
        firsts = [
            d
            for d in (
                whole._first_logged,
                date.fromordinal(int(ordinals[0])) if len(ordinals) else None,
            )
            if d is not None
        ]
        for name, value in (
            ("_whole", whole),
            ("_episode_ordinals", ordinals),
            ("_episodes", episodes),
            ("_first_logged", min(firsts) if firsts else None),
            ("_all", None),
        ):
            object.__setattr__(self, name, value)

    def _episodes_only(self, lo: int, hi: int) -> tuple[DayAggregate, ...]:
        return tuple(
            DayAggregate.episodes_only(date.fromordinal(int(o)), int(e))
            for o, e in zip(self._episode_ordinals[lo:hi], self._episodes[lo:hi])
        )

    @property
    def days(self) -> tuple[DayAggregate, ...]:  # type: ignore[override]
        if self._all is None:
            merged = sorted(
                (*self._whole.days, *self._episodes_only(0, len(self._episodes))),
                key=lambda d: d.day,
            )
            object.__setattr__(self, "_all", tuple(merged))
        return self._all

    def between(self, start: date, end: date) -> tuple[DayAggregate, ...]:
        whole = self._whole.between(start, end)
        lo = int(np.searchsorted(self._episode_ordinals, start.toordinal(), side="left"))
        hi = int(np.searchsorted(self._episode_ordinals, end.toordinal(), side="right"))
        if lo == hi:  # a window of recent days: none is known by its episodes alone
            return whole
        return tuple(sorted((*whole, *self._episodes_only(lo, hi)), key=lambda d: d.day))

    def until(self, as_of: date) -> tuple[DayAggregate, ...]:
        return self.between(date.min, as_of)

    def episode_counts(self, first: date, last: date) -> tuple[np.ndarray, np.ndarray]:
        episodes, logged = self._whole.episode_counts(first, last)
        origin, end = first.toordinal(), last.toordinal()
        inside = (self._episode_ordinals >= origin) & (self._episode_ordinals <= end)
        at = self._episode_ordinals[inside] - origin
        episodes[at], logged[at] = self._episodes[inside], True
        return episodes, logged


HistoryLike = History | Iterable[DayAggregate]


# --- outputs ---


@dataclass(frozen=True)
class Detection:
    """A milestone level whose rule holds as of the evaluation date.

    ``scope`` is ``"partner"`` (a partner's own milestone: the caller sets the
    partner id) or ``"couple"`` (partner id null). ``evidence`` is
    JSON-serialisable (dates as ISO strings, no NaN or infinity).
    ``headline`` is warm, informational, in the person's own numbers.
    """

    type: str
    level: int
    scope: str
    evidence: dict
    headline: str


def _check_as_of(as_of: date) -> None:
    _check_date(as_of, "as_of")
