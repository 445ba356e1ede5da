"""The statistics of the couple rules: a change-point scan of weekly mean ratings, vectorised over daily looks.

A couple's history is, for each partner, the count of each rating value on
each day (day 0 the first day of the arrays): a day's communication rating,
or each connection and understanding rating of a check-in. :func:`prefix`
sums them once; :func:`scan` then gives, for any number of looks at once,
every split of the last ``max_weeks`` weeks at a 7-day block boundary
counted back from the look, and :func:`split_at` the same statistic for a
split day given by the caller (the oracle, told the change day). The rules
and the calibration use these same functions, so what is calibrated is what
the rules compute.

The statistic of a split: the two sides are cut into 7-day blocks (after:
counted back from the look; before: from the day before the split, the
oldest partial). A block's value is the mean of its ratings, each less its
partner's mean over the whole look, so a week only one partner rated is not
moved by that partner's own level (partners see the same talks
differently), and every rating weighs the same. Weekly means, not days: two
partners rate the same days, and good and bad days cluster in
weeks. The statistic is Student's t of the after weeks' mean less the
before weeks' and less ``null_rise`` (a rise too small to celebrate costs
evidence), with the pooled variance of the weeks shrunk toward a
typical value (``prior_variance`` with ``prior_weeks`` pseudo-weeks): with
few weeks the spread of weekly means is often badly underestimated, and a
variance shrunk toward what couples typically show makes the statistic's
null about the same for every couple.

A split is admissible when it has enough weeks on each side (a change that
has lasted weeks), enough ratings of each partner on each side, a rise of
the couple's mean (the mean of the partners' means) of at least
``min_rise``, neither partner's own mean lower, and a common-language
effect (the chance that a rating after exceeds one before, ties half, both
partners pooled) of at least ``min_effect``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .statistics import best

__all__ = ["BLOCK_DAYS", "WeeklySettings", "Prefix", "prefix", "Splits", "scan", "split_at", "best"]

BLOCK_DAYS = 7


@dataclass(frozen=True)
class WeeklySettings:
    """Which splits a scan may take, and the variance the weeks' spread is shrunk toward."""

    prior_variance: float  # a typical couple's variance of weekly means about their side's mean
    prior_weeks: float = 8.0  # the weight of that typical value, in weeks
    max_weeks: int = 26  # a look reads the last 26 weeks
    min_before_weeks: int = 4  # weeks with ratings before the split
    min_after_weeks: int = 2  # and after it: weeks, not a good few days
    min_values: int = 3  # each partner's ratings on each side
    min_rise: float = 0.5  # the couple's mean, after less before, in rating points
    min_effect: float = 0.7  # common-language effect, after over before
    null_rise: float = 0.0  # the rise the evidence is measured against
    max_after_weeks: Optional[int] = None  # only changes in the recent past (None: any in the window)


@dataclass(frozen=True)
class Prefix:
    """Running sums of a couple's ratings: index i holds the sum over days 0..i-1."""

    values: np.ndarray  # (V,) the rating values, ascending
    hist: np.ndarray  # (n + 1, V) ratings of each value, both partners
    total: np.ndarray  # (2, n + 1) each partner's sum of ratings
    count: np.ndarray  # (2, n + 1) each partner's number of ratings

    @property
    def days(self) -> int:
        return self.hist.shape[0] - 1


def prefix(values: np.ndarray, counts_a: np.ndarray, counts_b: np.ndarray) -> Prefix:
    """The running sums of a couple: ``counts_x[d, v]`` is how many of partner x's ratings on day d were
    ``values[v]``."""
    values = np.asarray(values, dtype=float)
    per = np.stack([np.asarray(counts_a, dtype=float), np.asarray(counts_b, dtype=float)])  # (2, n, V)
    zero = np.zeros((2, 1, len(values)))
    cum = np.concatenate([zero, np.cumsum(per, axis=1)], axis=1)  # (2, n + 1, V)
    return Prefix(values, cum.sum(axis=0), cum @ values, cum.sum(axis=2))


@dataclass(frozen=True)
class Splits:
    """The statistic of splits (arrays of one shape): ``z`` is -inf where the split is not admissible."""

    z: np.ndarray
    start: np.ndarray  # the after side's first day
    window_start: np.ndarray  # the first day the look reads
    before_mean: np.ndarray  # the couple's mean rating before (the mean of the partners' means)
    after_mean: np.ndarray
    effect: np.ndarray  # common-language effect, after over before
    weeks_before: np.ndarray
    weeks_after: np.ndarray
    ratings_before: np.ndarray
    ratings_after: np.ndarray

    def at(self, index: tuple) -> dict:
        return {k: v[index].item() for k, v in self.__dict__.items()}


def _blocks(p: Prefix, lo: np.ndarray, hi: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each partner's sum and number of ratings on days lo..hi (0 where not ``ok``): (2, ...) each."""
    top, bottom = np.where(ok, hi + 1, 0), np.where(ok, lo, 0)
    return p.total[:, top] - p.total[:, bottom], p.count[:, top] - p.count[:, bottom]


def _side(x: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Number of valid weeks, their mean and their sum of squares about it (last axis)."""
    n = valid.sum(axis=-1)
    m = np.where(valid, x, 0.0).sum(axis=-1) / np.maximum(n, 1)
    ss = np.where(valid, (x - m[..., None]) ** 2, 0.0).sum(axis=-1)
    return n, m, ss


def _level(p: Prefix, look: np.ndarray, ws: np.ndarray) -> np.ndarray:
    """Each partner's mean over the look's window (2, looks): a week is measured from it, so one partner's
    own level does not move a week only they rated."""
    return (p.total[:, look + 1] - p.total[:, ws]) / np.maximum(p.count[:, look + 1] - p.count[:, ws], 1)


def _weeks(sums: np.ndarray, counts: np.ndarray, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weeks' values (the mean of the week's ratings, each less its partner's level) and whether anyone
    rated: every rating weighs the same, so a partner's single rating does not count as much as the other's
    five."""
    n = counts.sum(axis=0)
    return (sums - counts * level[:, :, None]).sum(axis=0) / np.maximum(n, 1), n > 0


def _finish(p: Prefix, look: np.ndarray, start: np.ndarray, ws: np.ndarray, before: tuple, after: tuple,
            s: WeeklySettings) -> Splits:
    """The statistic and the conditions of splits, given each side's weeks: (number, mean, sum of squares)."""
    (n1, m1, ss1), (n2, m2, ss2) = before, after
    variance = (ss1 + ss2 + s.prior_weeks * s.prior_variance) / (np.maximum(n1 + n2 - 2, 0) + s.prior_weeks)
    t = (m2 - m1 - s.null_rise) / np.sqrt(variance * (1 / np.maximum(n1, 1) + 1 / np.maximum(n2, 1)))

    # each partner's own mean on each side, and the couple's (the mean of the partners')
    c1 = p.count[:, start] - p.count[:, ws]
    c2 = p.count[:, look + 1] - p.count[:, start]
    own1 = (p.total[:, start] - p.total[:, ws]) / np.maximum(c1, 1)
    own2 = (p.total[:, look + 1] - p.total[:, start]) / np.maximum(c2, 1)
    mean1, mean2 = own1.mean(axis=0), own2.mean(axis=0)

    # the common-language effect of the pooled ratings, from the counts of each value
    h1 = p.hist[start] - p.hist[ws]
    h2 = p.hist[look + 1] - p.hist[start]
    below = np.cumsum(h1, axis=-1) - h1
    r1, r2 = h1.sum(axis=-1), h2.sum(axis=-1)
    effect = (h2 * (below + 0.5 * h1)).sum(axis=-1) / np.maximum(r1 * r2, 1)

    ok = ((n1 >= s.min_before_weeks) & (n2 >= s.min_after_weeks) & (c1.min(axis=0) >= s.min_values)
          & (c2.min(axis=0) >= s.min_values) & (mean2 - mean1 >= s.min_rise) & (own2 >= own1).all(axis=0)
          & (effect >= s.min_effect))
    return Splits(np.where(ok, t, -np.inf), start, ws, mean1, mean2, effect, n1, n2, r1, r2)


def _window_start(look: np.ndarray, s: WeeklySettings) -> np.ndarray:
    return np.maximum(0, look - BLOCK_DAYS * s.max_weeks + 1)


def _pairs(p: Prefix, look: np.ndarray, start: np.ndarray, s: WeeklySettings) -> Splits:
    """The statistic of after = start..look against before = the look's window up to start - 1 (1-D arrays)."""
    look, start = np.asarray(look, dtype=int), np.asarray(start, dtype=int)
    ws = _window_start(look, s)
    start = np.clip(start, ws, look)
    j = BLOCK_DAYS * np.arange(s.max_weeks)[None, :]
    hi_after = look[:, None] - j
    hi_before = start[:, None] - 1 - j
    after = _blocks(p, np.maximum(hi_after - BLOCK_DAYS + 1, start[:, None]), hi_after, hi_after >= start[:, None])
    before = _blocks(p, np.maximum(hi_before - BLOCK_DAYS + 1, ws[:, None]), hi_before, hi_before >= ws[:, None])
    level = _level(p, look, ws)
    return _finish(p, look, start, ws, _side(*_weeks(*before, level)), _side(*_weeks(*after, level)), s)


def scan(p: Prefix, looks: np.ndarray, s: WeeklySettings) -> Splits:
    """Every split at a 7-day block boundary counted back from each look, within its window (rows: looks,
    columns: the number of blocks after the split, from 1).

    The same statistic as :func:`split_at` at those days, from the look's weeks computed once (the after
    side of k blocks is the look's first k weeks, the before side the rest).
    """
    looks = np.asarray(looks, dtype=int)
    ws = _window_start(looks, s)
    hi = looks[:, None] - BLOCK_DAYS * np.arange(s.max_weeks)[None, :]
    x, valid = _weeks(*_blocks(p, np.maximum(hi - BLOCK_DAYS + 1, ws[:, None]), hi, hi >= ws[:, None]),
                      _level(p, looks, ws))
    x = np.where(valid, x, 0.0)
    zero = np.zeros((len(looks), 1))
    n = np.concatenate([zero, np.cumsum(valid, axis=1)], axis=1)[:, 1:s.max_weeks]  # weeks after, k = 1..
    sx = np.concatenate([zero, np.cumsum(x, axis=1)], axis=1)[:, 1:s.max_weeks]
    sx2 = np.concatenate([zero, np.cumsum(x * x, axis=1)], axis=1)[:, 1:s.max_weeks]
    n1, sx1, sx21 = valid.sum(axis=1)[:, None] - n, x.sum(axis=1)[:, None] - sx, (x * x).sum(axis=1)[:, None] - sx2

    def side(count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> tuple:
        m = total / np.maximum(count, 1)
        return count.ravel(), m.ravel(), np.maximum(squares - m * total, 0.0).ravel()

    k = np.arange(1, s.max_weeks)
    start = looks[:, None] - BLOCK_DAYS * k[None, :] + 1
    shape = start.shape
    wide = np.broadcast_to(looks[:, None], shape).ravel()
    out = _finish(p, wide, np.clip(start, np.broadcast_to(ws[:, None], shape), None).ravel(),
                  np.broadcast_to(ws[:, None], shape).ravel(), side(n1, sx1, sx21), side(n, sx, sx2), s)
    inside = ((start >= 1) & (k[None, :] <= (s.max_after_weeks or s.max_weeks))).ravel()
    return Splits(**{name: (np.where(inside, v, -np.inf) if name == "z" else v).reshape(shape)
                     for name, v in out.__dict__.items()})


def split_at(p: Prefix, looks: np.ndarray, start: int, s: WeeklySettings) -> Splits:
    """The split at a given day for each look (after: blocks counted back from the look to the day, the
    oldest partial; before: blocks counted back from the day before it)."""
    looks = np.asarray(looks, dtype=int)
    return _pairs(p, looks, np.full(looks.shape, start), s)

