"""What the two couple rules share: a weekly-mean change-point scan of the couple's shared ratings, looked at as
of a day (and, for a rule with a confirming look, as of 3 days earlier), against a threshold calibrated on the
simulator's null couples.

A couple rule (:class:`CoupleScan`) says which of a day's ratings it reads
and how it words the celebration; everything else is here: the days a look
reads (the last 26 weeks, the confirming look's too), the statistic
(:mod:`.weekly_means`), the threshold (a calibrated base, ``make
calibrate-couples``: ``couple_thresholds.json``, rising with the look day so
that a long watch stays within the bound), and the evidence. The evidence
holds the two periods compared, the couple's mean in each, the effect size
and the statistic: never a week, a ritual or a partner on their own, since
both partners read it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from .aggregates import COUPLE, Detection, History, HistoryLike, _check_as_of
from .statistics import best
from .weekly_means import BLOCK_DAYS, Prefix, WeeklySettings, prefix, scan
from .wording import _distinct, _mean_text, _months, _num

__all__ = ["THRESHOLDS", "TARGET", "PERSISTENCE_DAYS", "RISE_FROM_DAY", "rise", "CoupleScan"]

THRESHOLDS = Path(__file__).with_name("couple_thresholds.json")
TARGET = "0.01"  # the share of null couples with any false alarm over their history that the base is set for
PERSISTENCE_DAYS = (
    3  # the look 3 days earlier must hold too (a rule may do without: ``persistence_days``)
)
RISE_FROM_DAY = (
    91  # the threshold: base + c ln((day + 1) / 91) from day 91 (day 0 the first shared day)
)


@functools.cache
def _thresholds() -> dict:
    """The committed thresholds file, read once a process (every evaluation asks for a base and a rise)."""
    return json.loads(THRESHOLDS.read_text())


def rise(look: np.ndarray, per_log: float) -> np.ndarray:
    """``per_log`` ln((day + 1) / 91) from day 91, 0 before."""
    return per_log * np.log(np.maximum(1.0, (np.asarray(look, dtype=float) + 1) / RISE_FROM_DAY))


@dataclass(frozen=True)
class CoupleScan:
    """One couple rule: its type, its scan's settings, the ratings of a day it reads, its words."""

    type: str
    settings: WeeklySettings
    # the day's ratings the rule reads (fields of a DayAggregate), each one value, or with ``day_mean`` the
    # mean of the day's as one
    ratings: tuple[str, ...]
    test: str
    measure: str
    headline: Callable[
        [str, str, str], str
    ]  # (before, after, the before months) -> the celebration's words
    persistence_days: int = PERSISTENCE_DAYS  # the confirming look this many days earlier (0: none)
    day_mean: bool = False

    # --- the threshold ---

    def calibrated(self) -> dict:
        return _thresholds()[self.type]

    def base(self, target: str = TARGET) -> float:
        """The calibrated base of the threshold for a lifetime false rate ``target``."""
        return float(self.calibrated()["base"][target])

    def rise(self, look: np.ndarray) -> np.ndarray:
        """How much the threshold has risen by the look day (0 until day 91; the rise per log calibrated on
        two-year null couples)."""
        return rise(look, float(self.calibrated()["rise_per_log"]))

    def threshold(self, look: np.ndarray, target: str = TARGET) -> np.ndarray:
        return self.base(target) + self.rise(look)

    # --- the arrays ---

    def arrays(self, a: History, b: History, first: date, last: date) -> Prefix:
        """The running sums of both partners' ratings on days first..last (day 0 is ``first``)."""
        n = (last - first).days + 1
        sides = [h.ratings(first, last, self.ratings, self.day_mean) for h in (a, b)]
        values = np.unique(np.concatenate([v for _, v in sides]))
        if not len(values):
            values = np.zeros(1)  # no rating: one value, never counted
        counts = [
            np.bincount(
                (ordinals - first.toordinal()) * len(values) + np.searchsorted(values, v),
                minlength=n * len(values),
            )
            .reshape(n, len(values))
            .astype(float)
            for ordinals, v in sides
        ]
        return prefix(values, *counts)

    @staticmethod
    def first_day(a: History, b: History, as_of: date) -> date | None:
        """The couple's first shared day on or before ``as_of`` (day 0 of the threshold's rise)."""
        days = [d for d in (a.first_logged_day(as_of), b.first_logged_day(as_of)) if d is not None]
        return min(days) if days else None

    # --- the rule ---

    def detect(
        self, a: HistoryLike, b: HistoryLike, as_of: date, target: str = TARGET
    ) -> list[Detection]:
        """Level 1 if the strongest admissible split reaches the threshold as of ``as_of`` and as of
        ``persistence_days`` earlier (each look seeing only its own days; no confirming look if 0). Symmetric in
        ``a`` and ``b``, the same in any order."""
        _check_as_of(as_of)
        ha, hb = History.of(a), History.of(b)
        first = self.first_day(ha, hb, as_of)
        if first is None:
            return []
        confirm = self.persistence_days
        span = BLOCK_DAYS * self.settings.max_weeks + confirm
        start = max(first, as_of - timedelta(days=span - 1))
        p = self.arrays(ha, hb, start, as_of)
        end = (as_of - start).days
        looks = np.array([end - confirm, end] if confirm else [end])
        if looks[0] < 0:
            return []
        splits = scan(p, looks, self.settings)
        z, col = best(splits)
        limits = self.threshold(looks + (start - first).days, target)
        if not (z >= limits).all():
            return []
        now = splits.at((len(looks) - 1, int(col[-1])))
        evidence = self._evidence(ha, hb, start, as_of, now, float(limits[-1]))
        evidence.update({"as_of": as_of.isoformat(), "level": 1, "level_rule": self.level_rule})
        if confirm:
            earlier = splits.at((0, int(col[0])))
            evidence.update(
                {
                    "confirmed_as_of": (as_of - timedelta(days=confirm)).isoformat(),
                    "confirmation": {
                        "statistic": _num(earlier["z"]),
                        "threshold": _num(float(limits[0])),
                    },
                }
            )
        b_mean, a_mean = now["before_mean"], now["after_mean"]
        x, y = _distinct(_mean_text(b_mean), _mean_text(a_mean), b_mean, a_mean)
        months = _months(*(date.fromisoformat(evidence["before"][end]) for end in ("start", "end")))
        return [Detection(self.type, 1, COUPLE, evidence, self.headline(x, y, months))]

    @property
    def level_rule(self) -> str:
        s = self.settings
        compared = "" if s.ramp_weeks == (0,) else " (after: from where the rise is half done)"
        return (
            f"rise >= {s.min_rise} points, common-language effect >= {s.min_effect}, neither partner's mean "
            f"lower{compared}, statistic >= threshold"
        )

    def _evidence(
        self, a: History, b: History, start: date, as_of: date, split: dict, threshold: float
    ) -> dict:
        def rated(lo: date, hi: date) -> list[date]:
            days = np.concatenate([h.ratings(lo, hi, self.ratings, True)[0] for h in (a, b)])
            return [date.fromordinal(int(o)) for o in np.unique(days)]

        window = start + timedelta(days=int(split["window_start"]))
        cut = start + timedelta(days=int(split["start"]))
        top = start + timedelta(
            days=int(split["top"])
        )  # a step's: the cut; a rise's: where it is half done
        before, after = rated(window, cut - timedelta(days=1)), rated(top, as_of)

        def period(days: list[date], mean: float, ratings: float, weeks: float) -> dict:
            return {
                "start": min(days).isoformat(),
                "end": max(days).isoformat(),
                "mean": _num(mean, 2),
                "ratings": int(ratings),
                "weeks": int(weeks),
            }

        evidence = {
            "test": self.test,
            "measure": self.measure,
            "before": period(
                before, split["before_mean"], split["ratings_before"], split["weeks_before"]
            ),
            "after": period(
                after,
                split["after_mean"],
                split["ratings_after"],
                len({(as_of - d).days // BLOCK_DAYS for d in after}),
            ),
            "rise": _num(split["after_mean"] - split["before_mean"], 2),
            "common_language_effect": _num(split["effect"]),
            "statistic": _num(split["z"]),
            "threshold": _num(threshold),
        }
        if self.settings.ramp_weeks != (0,):
            evidence["rise_weeks"] = int(
                split["ramp_weeks"]
            )  # the length of the rise fitted (0: a step)
        return evidence
