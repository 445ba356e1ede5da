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

import numpy as np

from .statistics import best

__all__ = [
    "BLOCK_DAYS",
    "WeeklySettings",
    "Prefix",
    "prefix",
    "Splits",
    "scan",
    "split_at",
    "ramp_at",
    "best",
]

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
    max_after_weeks: int | None = None  # only changes in the recent past (None: any in the window)
    ramp_weeks: tuple[int, ...] = (
        0,
    )  # the lengths of the rise a split may take, in weeks (0: a step)


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
    per = np.stack(
        [np.asarray(counts_a, dtype=float), np.asarray(counts_b, dtype=float)]
    )  # (2, n, V)
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
    top: (
        np.ndarray
    )  # the first day of the after side's ratings the means and the effect compare (the rise
    # half done: the split's day for a step)
    ramp_weeks: np.ndarray  # the length of the rise, in weeks

    def at(self, index: tuple) -> dict:
        return {k: v[index].item() for k, v in self.__dict__.items()}


def _blocks(
    p: Prefix, lo: np.ndarray, hi: np.ndarray, ok: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
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
    return (p.total[:, look + 1] - p.total[:, ws]) / np.maximum(
        p.count[:, look + 1] - p.count[:, ws], 1
    )


def _weeks(
    sums: np.ndarray, counts: np.ndarray, level: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The weeks' values (the mean of the week's ratings, each less its partner's level) and whether anyone
    rated: every rating weighs the same, so a partner's single rating does not count as much as the other's
    five."""
    n = counts.sum(axis=0)
    return (sums - counts * level[:, :, None]).sum(axis=0) / np.maximum(n, 1), n > 0


def _finish(
    p: Prefix,
    look: np.ndarray,
    start: np.ndarray,
    ws: np.ndarray,
    before: tuple,
    after: tuple,
    s: WeeklySettings,
) -> Splits:
    """The statistic and the conditions of splits, given each side's weeks: (number, mean, sum of squares)."""
    (n1, m1, ss1), (n2, m2, ss2) = before, after
    variance = (ss1 + ss2 + s.prior_weeks * s.prior_variance) / (
        np.maximum(n1 + n2 - 2, 0) + s.prior_weeks
    )
    t = (m2 - m1 - s.null_rise) / np.sqrt(
        variance * (1 / np.maximum(n1, 1) + 1 / np.maximum(n2, 1))
    )
    return _admissible(p, look, start, start, ws, n1, n2, t, np.zeros(np.shape(t), dtype=int), s)


def _admissible(
    p: Prefix,
    look: np.ndarray,
    start: np.ndarray,
    top: np.ndarray,
    ws: np.ndarray,
    n1: np.ndarray,
    n2: np.ndarray,
    t: np.ndarray,
    ramp: np.ndarray,
    s: WeeklySettings,
) -> Splits:
    """The conditions of splits (before: ws..start - 1; after: start..look, its ratings compared from top)."""
    # each partner's own mean on each side, and the couple's (the mean of the partners')
    c1 = p.count[:, start] - p.count[:, ws]
    c2 = p.count[:, look + 1] - p.count[:, top]
    own1 = (p.total[:, start] - p.total[:, ws]) / np.maximum(c1, 1)
    own2 = (p.total[:, look + 1] - p.total[:, top]) / np.maximum(c2, 1)
    mean1, mean2 = own1.mean(axis=0), own2.mean(axis=0)

    # the common-language effect of the pooled ratings, from the counts of each value
    h1 = p.hist[start] - p.hist[ws]
    h2 = p.hist[look + 1] - p.hist[top]
    below = np.cumsum(h1, axis=-1) - h1
    r1, r2 = h1.sum(axis=-1), h2.sum(axis=-1)
    effect = (h2 * (below + 0.5 * h1)).sum(axis=-1) / np.maximum(r1 * r2, 1)

    ok = (
        (n1 >= s.min_before_weeks)
        & (n2 >= s.min_after_weeks)
        & (c1.min(axis=0) >= s.min_values)
        & (c2.min(axis=0) >= s.min_values)
        & (mean2 - mean1 >= s.min_rise)
        & (own2 >= own1).all(axis=0)
        & (effect >= s.min_effect)
    )
    return Splits(
        np.where(ok, t, -np.inf), start, ws, mean1, mean2, effect, n1, n2, r1, r2, top, ramp
    )


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
    after = _blocks(
        p,
        np.maximum(hi_after - BLOCK_DAYS + 1, start[:, None]),
        hi_after,
        hi_after >= start[:, None],
    )
    before = _blocks(
        p, np.maximum(hi_before - BLOCK_DAYS + 1, ws[:, None]), hi_before, hi_before >= ws[:, None]
    )
    level = _level(p, look, ws)
    return _finish(
        p, look, start, ws, _side(*_weeks(*before, level)), _side(*_weeks(*after, level)), s
    )


def _slope_t(
    n: np.ndarray,
    sr: np.ndarray,
    srr: np.ndarray,
    sx: np.ndarray,
    sxx: np.ndarray,
    srx: np.ndarray,
    s: WeeklySettings,
) -> np.ndarray:
    """Student's t of the rise ``b`` in the least-squares fit x = a + b r of the weeks (given the sums over the
    valid weeks of 1, r, r², x, x², r x), less ``null_rise``, the residual variance shrunk as a step's is."""
    m = np.maximum(n, 1)
    sxxr = srr - sr * sr / m
    safe = np.where(sxxr > 1e-12, sxxr, 1.0)
    b = (srx - sr * sx / m) / safe
    rss = np.maximum(sxx - sx * sx / m - b * b * safe, 0.0)
    variance = (rss + s.prior_weeks * s.prior_variance) / (np.maximum(n - 2, 0) + s.prior_weeks)
    return np.where(sxxr > 1e-12, (b - s.null_rise) / np.sqrt(variance / safe), -np.inf)


def _top(start: np.ndarray, weeks: np.ndarray, look: np.ndarray) -> np.ndarray:
    """The first day of a rise of ``weeks`` weeks from ``start`` at which it is half done (at most look + 1)."""
    return np.minimum(start + (BLOCK_DAYS * np.asarray(weeks)) // 2, look + 1)


def _ramp_matrix(weeks: int, s: WeeklySettings) -> np.ndarray:
    """(k - 1, j): the rise's share done in week j (0 the look's) when the split is k weeks back (from 1) and
    the rise takes ``weeks`` weeks (0: a step), the mean of its days: (m + 1/2) / weeks, m the weeks since the
    split, at most 1."""
    k = np.arange(1, s.max_weeks)[:, None]
    m = k - 1 - np.arange(s.max_weeks)[None, :]
    done = np.ones(m.shape) if weeks == 0 else np.minimum(1.0, (m + 0.5) / weeks)
    return np.where(m >= 0, done, 0.0)


def scan(p: Prefix, looks: np.ndarray, s: WeeklySettings) -> Splits:
    """Every split at a 7-day block boundary counted back from each look, within its window, for each length
    of the rise (rows: looks; columns: the number of blocks after the split, from 1, for each of
    ``ramp_weeks`` in turn).

    A step (length 0): the same statistic as :func:`split_at` at those days, from the look's weeks computed
    once (the after side of k blocks is the look's first k weeks, the before side the rest). A rise of L
    weeks (a broken stick: flat, rising linearly over L weeks from the split, flat again): Student's t of the
    rise fitted to the weeks (:func:`_slope_t`), the same statistic as :func:`ramp_at`; its means and effect
    compare the before side with the after side from where the rise is half done.
    """
    looks = np.asarray(looks, dtype=int)
    ws = _window_start(looks, s)
    hi = looks[:, None] - BLOCK_DAYS * np.arange(s.max_weeks)[None, :]
    x, valid = _weeks(
        *_blocks(p, np.maximum(hi - BLOCK_DAYS + 1, ws[:, None]), hi, hi >= ws[:, None]),
        _level(p, looks, ws),
    )
    x = np.where(valid, x, 0.0)
    zero = np.zeros((len(looks), 1))
    n = np.concatenate([zero, np.cumsum(valid, axis=1)], axis=1)[
        :, 1 : s.max_weeks
    ]  # weeks after, k = 1..
    sx = np.concatenate([zero, np.cumsum(x, axis=1)], axis=1)[:, 1 : s.max_weeks]
    sx2 = np.concatenate([zero, np.cumsum(x * x, axis=1)], axis=1)[:, 1 : s.max_weeks]
    n1, sx1, sx21 = (
        valid.sum(axis=1)[:, None] - n,
        x.sum(axis=1)[:, None] - sx,
        (x * x).sum(axis=1)[:, None] - sx2,
    )

    def side(count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> tuple:
        m = total / np.maximum(count, 1)
        return count.ravel(), m.ravel(), np.maximum(squares - m * total, 0.0).ravel()

    k = np.arange(1, s.max_weeks)
    start = looks[:, None] - BLOCK_DAYS * k[None, :] + 1
    inside = (start >= 1) & (k[None, :] <= (s.max_after_weeks or s.max_weeks))
    start = np.clip(start, ws[:, None], None)
    (b_n, b_m, b_ss), (a_n, a_m, a_ss) = side(n1, sx1, sx21), side(n, sx, sx2)
    shape = start.shape
    if s.ramp_weeks == (0,):  # a step alone: the two-sample t
        out = _finish(
            p,
            np.repeat(looks, shape[1]),
            start.ravel(),
            np.repeat(ws, shape[1]),
            (b_n, b_m, b_ss),
            (a_n, a_m, a_ss),
            s,
        )
    else:  # every length at once: columns (looks, length, k)
        v = valid.astype(float)
        r = np.concatenate(
            [_ramp_matrix(w, s).T for w in s.ramp_weeks], axis=1
        )  # (j, length and k)
        wide = (len(looks), len(s.ramp_weeks) * shape[1])
        t = _slope_t(
            np.broadcast_to(valid.sum(axis=1)[:, None], wide),
            v @ r,
            v @ (r * r),
            np.broadcast_to(x.sum(axis=1)[:, None], wide),
            np.broadcast_to((x * x).sum(axis=1)[:, None], wide),
            x @ r,
            s,
        )
        if 0 in s.ramp_weeks:  # a step's t as :func:`_finish` computes it
            variance = (b_ss + a_ss + s.prior_weeks * s.prior_variance) / (
                np.maximum(b_n + a_n - 2, 0) + s.prior_weeks
            )
            step = (a_m - b_m - s.null_rise) / np.sqrt(
                variance * (1 / np.maximum(b_n, 1) + 1 / np.maximum(a_n, 1))
            )
            i = s.ramp_weeks.index(0) * shape[1]
            t[:, i : i + shape[1]] = step.reshape(shape)
        weeks = np.repeat(np.asarray(s.ramp_weeks), shape[1])[None, :]
        starts = np.tile(start, len(s.ramp_weeks))
        looks_ = np.broadcast_to(looks[:, None], wide)
        out = _admissible(
            p,
            looks_.ravel(),
            starts.ravel(),
            _top(starts, weeks, looks_[:, :1]).ravel(),
            np.broadcast_to(ws[:, None], wide).ravel(),
            np.tile(n1, len(s.ramp_weeks)).ravel(),
            np.tile(n, len(s.ramp_weeks)).ravel(),
            t.ravel(),
            np.broadcast_to(weeks, wide).ravel(),
            s,
        )
        inside, shape = np.tile(inside, len(s.ramp_weeks)), wide
    return Splits(
        **{
            name: (np.where(inside.ravel(), v, -np.inf) if name == "z" else v).reshape(shape)
            for name, v in out.__dict__.items()
        }
    )


def split_at(p: Prefix, looks: np.ndarray, start: int, s: WeeklySettings) -> Splits:
    """The split at a given day for each look (after: blocks counted back from the look to the day, the
    oldest partial; before: blocks counted back from the day before it)."""
    looks = np.asarray(looks, dtype=int)
    return _pairs(p, looks, np.full(looks.shape, start), s)


def ramp_at(p: Prefix, looks: np.ndarray, start: int, weeks: float, s: WeeklySettings) -> Splits:
    """A rise of a given length (``weeks``; 0: a step, :func:`split_at`) from a given day, for each look:
    the weeks as :func:`split_at` cuts them, each after week's share of the rise the mean over its days of
    min(1, (day - start + 1/2) / (7 weeks)), Student's t of the rise fitted to them (:func:`_slope_t`)."""
    looks = np.asarray(looks, dtype=int)
    if weeks == 0:
        return split_at(p, looks, start, s)
    ws = _window_start(looks, s)
    first = np.clip(np.full(looks.shape, start), ws, looks)
    j = BLOCK_DAYS * np.arange(s.max_weeks)[None, :]
    hi_after, hi_before = looks[:, None] - j, first[:, None] - 1 - j
    lo_after = np.maximum(hi_after - BLOCK_DAYS + 1, first[:, None])
    ok_after, ok_before = hi_after >= first[:, None], hi_before >= ws[:, None]
    level = _level(p, looks, ws)
    xa, va = _weeks(*_blocks(p, lo_after, hi_after, ok_after), level)
    xb, vb = _weeks(
        *_blocks(p, np.maximum(hi_before - BLOCK_DAYS + 1, ws[:, None]), hi_before, ok_before),
        level,
    )
    va, vb = va & ok_after, vb & ok_before
    x = np.concatenate([np.where(va, xa, 0.0), np.where(vb, xb, 0.0)], axis=1)
    v = np.concatenate([va, vb], axis=1).astype(float)
    days = (
        hi_after - lo_after + 1
    )  # the mean of min(1, (d - start + 1/2) / L) over the block's days
    d = np.arange(BLOCK_DAYS)[None, None, :]
    share = np.minimum(1.0, (lo_after[..., None] + d - start + 0.5) / (BLOCK_DAYS * weeks))
    share = np.where(d < days[..., None], share, 0.0).sum(axis=-1) / np.maximum(days, 1)
    r = np.concatenate([np.where(va, share, 0.0), np.zeros(vb.shape)], axis=1)
    t = _slope_t(
        v.sum(axis=1),
        (v * r).sum(axis=1),
        (v * r * r).sum(axis=1),
        x.sum(axis=1),
        (x * x).sum(axis=1),
        (x * r).sum(axis=1),
        s,
    )
    top = _top(first, np.full(first.shape, int(weeks)), looks)
    return _admissible(
        p,
        looks,
        first,
        top,
        ws,
        vb.sum(axis=1),
        va.sum(axis=1),
        t,
        np.full(looks.shape, int(weeks)),
        s,
    )
