"""What the rules read and what they give: a partner's day (:class:`DayAggregate`), their history, a detection.

Nothing here touches a database, a broker, a file or the clock.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
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
    "RatedDaysHistory",
    "HistoryLike",
    "Detection",
]

PARTNER = "partner"
COUPLE = "couple"
CHECK_IN_RITUAL_TAG = "weekly_check_in"
RATINGS = ("communication", "connection", "understanding")  # a day's ratings, 1-5 each


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

    @classmethod
    def ratings_only(
        cls,
        day: date,
        communication: tuple[int, ...] = (),
        connection: tuple[int, ...] = (),
        understanding: tuple[int, ...] = (),
    ) -> DayAggregate:
        """A logged day of which only its ratings are known (what the couple scans read of a day): the rest
        is left empty, as in :meth:`episodes_only`."""
        return cls.trusted(
            {
                **cls.episodes_only(day, 0).__dict__,
                "communication": communication,
                "connection": connection,
                "understanding": understanding,
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

    def ratings(
        self, first: date, last: date, names: Sequence[str], day_mean: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ratings ``names`` (fields of :data:`RATINGS`) of days first..last as two arrays, in no given
        order: the ordinal of the day of each rating and the rating; with ``day_mean``, one a day with any:
        the mean of the day's ratings."""
        days = self.between(first, last)
        if day_mean:
            rated = [
                (d.day.toordinal(), sum(values) / len(values))
                for d in days
                if (values := [v for name in names for v in getattr(d, name)])
            ]
        else:
            rated = [
                (d.day.toordinal(), float(v))
                for d in days
                for name in names
                for v in getattr(d, name)
            ]
        ordinals, values = zip(*rated) if rated else ((), ())
        return np.array(ordinals, dtype=np.int64), np.array(values, dtype=float)

    def ritual_count(self, as_of: date) -> int:
        """The rituals of the days up to ``as_of``."""
        return sum(len(d.rituals) for d in self.until(as_of))


class _PartDaysHistory(History):
    """A history of whole days (``days``) and of days of which only some fields are known, held as arrays
    without an object each (``_part_ordinals``: their ordinals, :meth:`date.toordinal`, ascending): what an
    evaluation reads of the days only some rules look at, hundreds on a long history. A subclass holds the
    fields known and makes a day of them (:meth:`_part_day`); every other field of such a day is empty.

    It is the history of the whole days and of those part days, and gives the same answers. A date given
    twice (in either part, or in both) is an error, as in :class:`History`.
    """

    def _set_parts(self, days: Iterable[DayAggregate], ordinals) -> np.ndarray:
        """Keeps the whole days and the part days' ordinals (sorted); the order that sorts ``ordinals``."""
        whole = History(tuple(days))
        ordinals = np.asarray(ordinals, dtype=np.int64)
        if ordinals.ndim != 1:
            raise ValueError("one ordinal for each day")
        order = np.argsort(ordinals, kind="stable")
        ordinals = ordinals[order]
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
            ("_part_ordinals", ordinals),
            ("_first_logged", min(firsts) if firsts else None),
            ("_all", None),
        ):
            object.__setattr__(self, name, value)
        return order

    def _part_day(self, i: int) -> DayAggregate:
        """The part day of index ``i`` (in date order), as a day of its own."""
        raise NotImplementedError

    def _parts(self, lo: int, hi: int) -> tuple[DayAggregate, ...]:
        return tuple(self._part_day(i) for i in range(lo, hi))

    def _part_range(self, start: date, end: date) -> tuple[int, int]:
        """The indices lo..hi (hi excluded) of the part days dated start..end."""
        lo = int(np.searchsorted(self._part_ordinals, start.toordinal(), side="left"))
        return lo, int(np.searchsorted(self._part_ordinals, end.toordinal(), side="right"))

    @property
    def days(self) -> tuple[DayAggregate, ...]:  # type: ignore[override]
        if self._all is None:
            merged = sorted(
                (*self._whole.days, *self._parts(0, len(self._part_ordinals))),
                key=_DAY,
            )
            object.__setattr__(self, "_all", tuple(merged))
        return self._all

    def between(self, start: date, end: date) -> tuple[DayAggregate, ...]:
        whole = self._whole.between(start, end)
        lo, hi = self._part_range(start, end)
        if lo == hi:  # a window of recent days: none is known in part
            return whole
        return tuple(sorted((*whole, *self._parts(lo, hi)), key=_DAY))

    def until(self, as_of: date) -> tuple[DayAggregate, ...]:
        return self.between(date.min, as_of)


class EpisodeDaysHistory(_PartDaysHistory):
    """A history of which some logged days are known only by their anxious episodes (``episode_days``:
    their ordinals, :meth:`date.toordinal`, and episodes, two integer arrays in any order), beside whole
    days (``days``): what an evaluation reads of the days only the change-point scan looks at.

    Each such day is :meth:`DayAggregate.episodes_only`; :meth:`episode_counts` reads the arrays as they
    are.
    """

    def __init__(self, days: Iterable[DayAggregate], ordinals, episodes) -> None:
        ordinals, episodes = (
            np.asarray(ordinals, dtype=np.int64),
            np.asarray(episodes, dtype=np.int64),
        )
        if ordinals.shape != episodes.shape or ordinals.ndim != 1:
            raise ValueError("one count of episodes for each day")
        if (episodes < 0).any():
            raise ValueError("episodes must be whole numbers >= 0")
        order = self._set_parts(days, ordinals)
        object.__setattr__(self, "_episodes", episodes[order])

    def _part_day(self, i: int) -> DayAggregate:
        return DayAggregate.episodes_only(
            date.fromordinal(int(self._part_ordinals[i])), int(self._episodes[i])
        )

    def episode_counts(self, first: date, last: date) -> tuple[np.ndarray, np.ndarray]:
        episodes, logged = self._whole.episode_counts(first, last)
        origin, end = first.toordinal(), last.toordinal()
        inside = (self._part_ordinals >= origin) & (self._part_ordinals <= end)
        at = self._part_ordinals[inside] - origin
        episodes[at], logged[at] = self._episodes[inside], True
        return episodes, logged


class RatedDaysHistory(_PartDaysHistory):
    """A history of which some logged days are known only by their ratings (``rated``: for each such day,
    in any order, its ordinal, :meth:`date.toordinal`, and its communication, connection and understanding
    ratings), beside whole days (``days``): what an evaluation reads of the days only the couple scans look
    at.

    Each such day is :meth:`DayAggregate.ratings_only`; :meth:`ratings` reads the ratings as arrays (a
    rating each, the day it is of), not a day at a time.
    """

    def __init__(
        self,
        days: Iterable[DayAggregate],
        rated: Iterable[tuple[int, Sequence[int], Sequence[int], Sequence[int]]],
    ) -> None:
        rated = list(rated)
        order = self._set_parts(days, [r[0] for r in rated])
        rated = [rated[i] for i in order]
        for k, name in enumerate(RATINGS, 1):
            values = np.array([v for r in rated for v in r[k]], dtype=np.int64)
            if ((values < 1) | (values > 5)).any():
                raise ValueError(f"{name} ratings must be whole numbers 1-5")
            at = np.array([i for i, r in enumerate(rated) for _ in r[k]], dtype=np.int64)
            object.__setattr__(self, f"_{name}", (at, values))

    def _part_day(self, i: int) -> DayAggregate:
        ratings = {}
        for name in RATINGS:
            at, values = getattr(self, f"_{name}")
            lo, hi = np.searchsorted(at, [i, i + 1])
            ratings[name] = tuple(int(v) for v in values[lo:hi])
        return DayAggregate.ratings_only(date.fromordinal(int(self._part_ordinals[i])), **ratings)

    def ratings(
        self, first: date, last: date, names: Sequence[str], day_mean: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        whole = self._whole.ratings(first, last, names, day_mean)
        lo, hi = self._part_range(first, last)
        if lo == hi:
            return whole
        parts = [getattr(self, f"_{name}") for name in names]
        at = np.concatenate([a for a, _ in parts])
        values = np.concatenate([v for _, v in parts]).astype(float)
        inside = (at >= lo) & (at < hi)
        at, values = at[inside], values[inside]
        if day_mean:
            count = np.bincount(at - lo, minlength=hi - lo)
            total = np.bincount(at - lo, weights=values, minlength=hi - lo)
            rated = count > 0
            at, values = np.flatnonzero(rated) + lo, total[rated] / count[rated]
        return (
            np.concatenate([whole[0], self._part_ordinals[at]]),
            np.concatenate([whole[1], values]),
        )

    def ritual_count(self, as_of: date) -> int:
        return self._whole.ritual_count(as_of)  # a day known by its ratings alone holds no ritual


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
