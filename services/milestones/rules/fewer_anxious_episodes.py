"""fewer_anxious_episodes: a partner's anxious moments per logged day fell, reliably, lastingly and enough.

A change-point scan (:mod:`.statistics`): at each daily look, every 7-day
block boundary counted back from the look is a candidate change day;
everything before it is compared with everything after it, episodes per
logged day, days missing beyond the partner's usual logging counted as usual
days, the likelihood ratio divided by the over-dispersion of the partner's
weeks (a negative binomial's, shrunk toward the population's). A split is
admissible with at least 21 logged days before, two blocks and 14 logged
days after (a change that has lasted weeks), and a rate ratio at most 0.7.
The evidence is measured against a ratio of 0.8 rather than 1 (a fall that
small is not worth a celebration, and the noise of people's weeks makes
falls of that size common). Level 1 holds when the strongest admissible
split reaches the threshold as of the look and as of 3 days earlier; levels
2 and 3 the same, with splits of ratio at most 0.5 and 0.3.

The threshold rises with the look day (``base + 0.75 ln((day + 1) / 91)``
from day 91): the chance of a false alarm is then spread over the stretches
of looking instead of charged once for the longest history, so two years
of daily looks stay within the bound and short histories are not held to
the longest one's threshold. ``base`` is calibrated on the simulator's null
cohorts, over their usual histories and over two years (``make calibrate``:
``thresholds.json``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from .aggregates import PARTNER, Detection, History, HistoryLike, _check_as_of
from .registry import FEWER_ANXIOUS_EPISODES, FEWER_EPISODES_LEVELS
from .statistics import ScanSettings, Splits, best, prefix, scan
from .wording import _about, _months, _num

__all__ = [
    "SCAN",
    "PERSISTENCE_DAYS",
    "FIRST_LOOK",
    "TARGET",
    "THRESHOLDS",
    "rise",
    "base",
    "threshold",
    "fewer_anxious_episodes",
]

SCAN = ScanSettings(
    min_before_logged=21,
    min_after_logged=14,
    min_after_blocks=2,
    max_ratio=0.7,
    null_ratio=0.8,
    population_dispersion=0.4,
    prior_blocks=8.0,
)
PERSISTENCE_DAYS = 3  # the look 3 days earlier must hold the level too
FIRST_LOOK = 20  # no split is admissible before day 20 (21 logged days before, two weeks after)
RISE_PER_LOG = 0.75
RISE_FROM_DAY = 91
TARGET = "0.01"  # the share of null partners with any false alarm over their history that the base is set for
THRESHOLDS = Path(__file__).with_name("thresholds.json")


def rise(look: np.ndarray) -> np.ndarray:
    """How much the threshold has risen by the look day (day 0 the first logged day; 0 until day 90)."""
    return RISE_PER_LOG * np.log(
        np.maximum(1.0, (np.asarray(look, dtype=float) + 1) / RISE_FROM_DAY)
    )


_BASES: dict[str, float] = {}  # the committed file, read once


def base(target: str = TARGET) -> float:
    """The calibrated base of the threshold for a lifetime false rate ``target``."""
    if not _BASES:
        _BASES.update(json.loads(THRESHOLDS.read_text())["base"])
    return float(_BASES[target])


def threshold(look: np.ndarray, target: str = TARGET) -> np.ndarray:
    return base(target) + rise(look)


def _period(first: date, lo: int, hi: int) -> dict:
    return {
        "start": (first + timedelta(days=lo)).isoformat(),
        "end": (first + timedelta(days=hi)).isoformat(),
    }


def _evidence(first: date, look: int, splits: Splits, col: int, z: float, h: float) -> dict:
    start = int(splits.start[0, col])
    r1, r2 = float(splits.r1[0, col]), float(splits.r2[0, col])
    return {
        "before": {
            **_period(first, 0, start - 1),
            "logged_days": int(splits.logged_before[0, col]),
            "episodes_per_week": _num(r1 * 7, 2),
        },
        "after": {
            **_period(first, start, look),
            "logged_days": int(splits.logged_after[0, col]),
            "episodes_per_week": _num(r2 * 7, 2),
        },
        "rate_ratio": _num(float(splits.ratio[0, col])),
        "statistic": _num(z),
        "threshold": _num(h),
        "dispersion": _num(float(splits.phi[0, col])),
    }


def fewer_anxious_episodes(
    history: HistoryLike, as_of: date, target: str = TARGET
) -> list[Detection]:
    """The levels of ``fewer_anxious_episodes`` that hold as of ``as_of`` (days after it are ignored).

    Each level needs the strongest admissible split of its rate ratio (0.7,
    0.5, 0.3) to reach the threshold as of ``as_of`` and as of 3 days earlier.
    The same aggregates give the same detections in any order.
    """
    _check_as_of(as_of)
    h = History.of(history)
    first = h.first_logged_day(as_of)
    if first is None or (as_of - first).days - PERSISTENCE_DAYS < FIRST_LOOK:
        return []
    p = prefix(*h.episode_counts(first, as_of))
    look = (as_of - first).days
    looks = np.array([look - PERSISTENCE_DAYS, look])
    limits = threshold(looks, target)
    out = []
    for level, most in FEWER_EPISODES_LEVELS:
        splits = scan(p, looks, replace(SCAN, max_ratio=most))
        z, col = best(splits)
        if not (z >= limits).all():
            break  # a level needs every lower one's rule, and holds on fewer splits
        now = Splits(**{k: v[1:] for k, v in splits.__dict__.items()})
        evidence = _evidence(first, look, now, int(col[1]), float(z[1]), float(limits[1]))
        earlier = Splits(**{k: v[:1] for k, v in splits.__dict__.items()})
        evidence.update(
            {
                "as_of": as_of.isoformat(),
                "level": level,
                "level_rule": f"rate ratio <= {most}, statistic >= threshold",
                "confirmed_as_of": (as_of - timedelta(days=PERSISTENCE_DAYS)).isoformat(),
                "confirmation": _evidence(
                    first,
                    look - PERSISTENCE_DAYS,
                    earlier,
                    int(col[0]),
                    float(z[0]),
                    float(limits[0]),
                ),
                "test": "change-point scan of episodes per logged day, likelihood ratio against a ratio of "
                f"{SCAN.null_ratio}, divided by the weeks' over-dispersion (negative binomial, shrunk toward "
                f"the population's {SCAN.population_dispersion})",
            }
        )
        a, b = (_about(evidence[side]["episodes_per_week"] or 0.0) for side in ("before", "after"))
        headline = (
            f"Anxious moments: from about {a} a week in "
            f"{_months(first, first + timedelta(days=int(now.start[0, int(col[1])]) - 1))} "
            + ("to none lately." if b == "none" else f"to about {b} a week now.")
        )
        out.append(Detection(FEWER_ANXIOUS_EPISODES, level, PARTNER, evidence, headline))
    return out
