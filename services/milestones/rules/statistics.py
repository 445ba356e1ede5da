"""The statistics of the rules: a change-point scan of a rate per logged day, vectorised over daily looks.

A partner's history is two arrays over days 0..n-1 (day 0 the first logged
day): the episodes of each day (0 on a day not logged) and whether it was
logged. :func:`prefix` sums them once; :func:`scan` then gives, for any
number of looks at once, the strongest admissible split of everything up to
the look into *before* and *after*, and :func:`split_at` the same statistic
for a split given by the caller (the oracle of the study, told the change
day). The rule and the calibration use these same functions, so what is
calibrated is what the rule computes.

The statistic of a split: the likelihood ratio of one Poisson rate per
logged day against two (before, after), divided by the over-dispersion
``phi`` and signed into ``z = sqrt(2 LLR / phi)``. Bad days cluster in bad
weeks, so a 7-day block's count varies as a negative binomial's, its
expected count μ plus c² μ²; c² is the partner's own (moments of the blocks
about their side's rate) shrunk toward a population value, because a few
weeks often show a drifting partner as steady, and a split chosen where
each side looks even underestimates it most (``phi`` from the blocks alone
was about 1 at nearly every false alarm). Days missing after the split
beyond the before side's share of logged days are counted as usual days
(the before side's rate), never as calm ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BLOCK_DAYS",
    "ScanSettings",
    "Blocks",
    "Prefix",
    "prefix",
    "Splits",
    "scan",
    "split_at",
    "best",
]

BLOCK_DAYS = 7


@dataclass(frozen=True)
class ScanSettings:
    """Which splits a scan may take (lasting change, enough history, a change that matters)."""

    min_before_logged: int = 21  # logged days before the split
    min_after_logged: int = 14  # logged days after it: weeks, not a good few days
    min_after_blocks: int = 2
    max_after_blocks: int | None = None  # only changes in the recent past (None: any)
    max_ratio: float = 0.7  # the after side's rate at most this share of the before side's
    null_ratio: float = 1.0  # the ratio the evidence is measured against (1: no change)
    # the extra-Poisson variance of a block, as a share of its expected count squared (a negative binomial's
    # 1/shape): the partner's own, shrunk toward this population value with the weight of this many blocks
    population_dispersion: float = 0.4
    prior_blocks: float = 8.0
    fill: str = "rate"  # a missing day counts as: "rate", the before side's per logged day; "bad", its per episode-day


@dataclass(frozen=True)
class Blocks:
    """Sums over 7-day blocks: of K_b², K_b T_b, T_b² (episodes K_b and logged days T_b of each block) and
    the number of blocks with a logged day. Added and subtracted as one."""

    kk: np.ndarray
    kt: np.ndarray
    tt: np.ndarray
    g: np.ndarray

    def __add__(self, other: Blocks) -> Blocks:
        return Blocks(self.kk + other.kk, self.kt + other.kt, self.tt + other.tt, self.g + other.g)

    def __sub__(self, other: Blocks) -> Blocks:
        return Blocks(self.kk - other.kk, self.kt - other.kt, self.tt - other.tt, self.g - other.g)

    def __getitem__(self, index) -> Blocks:
        return Blocks(self.kk[index], self.kt[index], self.tt[index], self.g[index])

    def where(self, mask: np.ndarray) -> Blocks:
        return Blocks(*(np.where(mask, v, 0.0) for v in (self.kk, self.kt, self.tt, self.g)))

    def cumsum(self) -> Blocks:
        """Running sums from the first block (index i: the first i blocks)."""
        return Blocks(
            *(np.concatenate(([0.0], np.cumsum(v))) for v in (self.kk, self.kt, self.tt, self.g))
        )


@dataclass(frozen=True)
class Prefix:
    """Running sums of one history: index i holds the sum over days 0..i-1 (``k``, ``t``, ``e``), or over
    the 7-day blocks ending on day i and every 7th day before it (``b``; the oldest block partial)."""

    k: np.ndarray  # episodes on logged days
    t: np.ndarray  # logged days
    b: Blocks
    e: np.ndarray  # episode-days (logged days with an episode)

    @property
    def days(self) -> int:
        return len(self.k) - 1


def _blocks(
    lo: np.ndarray, hi: np.ndarray, logged_prefix: np.ndarray, episode_prefix: np.ndarray
) -> Blocks:
    """The sums of each block of days lo..hi (arrays)."""
    kb = episode_prefix[hi + 1] - episode_prefix[lo]
    tb = logged_prefix[hi + 1] - logged_prefix[lo]
    return Blocks(kb * kb, kb * tb, tb * tb, (tb > 0).astype(float))


def prefix(episodes: np.ndarray, logged: np.ndarray) -> Prefix:
    """The running sums of a history (``episodes`` counted on logged days only)."""
    logged = np.asarray(logged, dtype=bool)
    k = np.where(logged, np.asarray(episodes, dtype=float), 0.0)
    n = len(k)
    kp = np.concatenate(([0.0], np.cumsum(k)))
    tp = np.concatenate(([0.0], np.cumsum(logged.astype(float))))
    ends = np.arange(n)
    b = _blocks(np.maximum(ends - BLOCK_DAYS + 1, 0), ends, tp, kp)
    # the blocks ending on day e, e-7, e-14, ... : a running sum with stride 7 (rows of 7 days, down the rows)
    rows = -(-n // BLOCK_DAYS)
    sums = np.zeros((4, rows * BLOCK_DAYS))
    sums[:, :n] = (b.kk, b.kt, b.tt, b.g)
    chained = np.cumsum(sums.reshape(4, rows, BLOCK_DAYS), axis=1).reshape(4, -1)[:, :n]
    ep = np.concatenate(([0.0], np.cumsum(k > 0)))
    return Prefix(kp, tp, Blocks(*chained), ep)


@dataclass(frozen=True)
class Splits:
    """The statistic of splits (arrays of one shape): ``z`` is -inf where the split is not admissible."""

    z: np.ndarray
    start: np.ndarray  # the after side's first day
    r1: np.ndarray  # episodes per logged day before
    r2: np.ndarray  # after, missing days counted as usual ones
    ratio: np.ndarray
    phi: np.ndarray
    logged_before: np.ndarray
    logged_after: np.ndarray


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * np.log(np.where(y > 0, y, 1.0)), 0.0)


def _extra_variance(
    b: Blocks, rate: np.ndarray, logged: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sum over one side's blocks of (K_b - μ_b)² - μ_b, and of μ_b², with μ_b = rate T_b."""
    num = np.where(rate > 0, b.kk - 2 * rate * b.kt + rate * rate * b.tt - rate * logged, 0.0)
    return num, rate * rate * b.tt


def _dispersion(
    s: ScanSettings,
    before: Blocks,
    after: Blocks,
    r1: np.ndarray,
    r2_seen: np.ndarray,
    t1: np.ndarray,
    t2: np.ndarray,
    expected1: np.ndarray,
    expected2: np.ndarray,
) -> np.ndarray:
    """How much the evidence of a split is inflated by over-dispersion, at least 1.

    A block's variance is its expected count μ plus c² μ² (a negative binomial's: bad days cluster in bad
    weeks), c² the partner's own (moments of the blocks about their side's rate) shrunk toward the
    population's. Each side's variance is then 1 + c² × its expected count per block, combined as the
    variances of the two sides' totals are in the ratio of their rates.
    """
    n1, d1 = _extra_variance(before, r1, t1)
    n2, d2 = _extra_variance(after, r2_seen, t2)
    blocks = before.g + after.g
    own = np.where(d1 + d2 > 0, (n1 + n2) / np.where(d1 + d2 > 0, d1 + d2, 1.0), 0.0)
    c2 = np.maximum(
        0.0, (s.prior_blocks * s.population_dispersion + blocks * own) / (s.prior_blocks + blocks)
    )
    f1 = 1 + c2 * expected1 / np.maximum(before.g, 1)
    f2 = 1 + c2 * expected2 / np.maximum(after.g, 1)
    both = (expected1 > 0) & (expected2 > 0)
    e1, e2 = np.where(both, expected1, 1.0), np.where(both, expected2, 1.0)
    return np.maximum(1.0, np.where(both, (f1 / e1 + f2 / e2) / (1 / e1 + 1 / e2), 1.0))


def _statistic(
    p: Prefix,
    look: np.ndarray,
    start: np.ndarray,
    before: Blocks,
    after: Blocks,
    after_blocks: np.ndarray,
    s: ScanSettings,
) -> Splits:
    """The statistic of after = start..look against before = 0..start-1 (broadcast arrays)."""
    start = np.clip(start, 1, None)
    k1, t1, d1 = p.k[start], p.t[start], start.astype(float)
    k2, t2 = p.k[look + 1] - k1, p.t[look + 1] - t1
    d2 = (look + 1 - start).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r1 = np.where(t1 > 0, k1 / np.maximum(t1, 1), 0.0)
        deficit = np.maximum(0.0, t1 / d1 * d2 - t2)
        if s.fill == "bad":
            e1 = p.e[start]
            per_missing = np.where(e1 > 0, k1 / np.maximum(e1, 1), 0.0)
        else:
            per_missing = r1
        k2f, t2f = k2 + deficit * per_missing, t2 + deficit
        r2 = np.where(t2f > 0, k2f / np.maximum(t2f, 1e-12), 0.0)
        ratio = np.where(r1 > 0, r2 / np.where(r1 > 0, r1, 1.0), np.inf)
        kk = k1 + k2f
        r0 = kk / (
            t1 + s.null_ratio * t2f
        )  # the before side's rate if the after side's were null_ratio of it
        llr = _xlogy(k1, r1) + _xlogy(k2f, r2) - _xlogy(k1, r0) - _xlogy(k2f, s.null_ratio * r0)
        r2_seen = k2 / np.maximum(t2, 1)
        dof = before.g + after.g - 2
        phi = _dispersion(s, before, after, r1, r2_seen, t1, t2, r0 * t1, s.null_ratio * r0 * t2f)
        z = np.sqrt(np.maximum(2 * llr, 0.0) / phi)
    ok = (
        (t1 >= s.min_before_logged)
        & (t2 >= s.min_after_logged)
        & (after_blocks >= s.min_after_blocks)
        & (k1 > 0)
        & (ratio <= s.max_ratio)
        & (dof > 0)
    )
    if s.max_after_blocks is not None:
        ok &= after_blocks <= s.max_after_blocks
    return Splits(np.where(ok, z, -np.inf), start, r1, r2, ratio, phi, t1, t2)


def scan(p: Prefix, looks: np.ndarray, s: ScanSettings = ScanSettings()) -> Splits:
    """Every split at a 7-day block boundary counted back from each look (rows: looks, columns: the
    number of blocks after the split, from 1)."""
    looks = np.asarray(looks, dtype=int)
    blocks = np.arange(1, looks.max() // BLOCK_DAYS + 1 if len(looks) else 1)
    look = looks[:, None]
    start = look + 1 - BLOCK_DAYS * blocks[None, :]
    inside = start >= 1
    before = p.b[np.clip(start - 1, 0, None)]
    out = _statistic(
        p,
        look,
        start,
        before,
        p.b[np.broadcast_to(look, start.shape)] - before,
        np.broadcast_to(blocks[None, :], start.shape),
        s,
    )
    return Splits(**{**out.__dict__, "z": np.where(inside, out.z, -np.inf)})


def split_at(p: Prefix, looks: np.ndarray, start: int, s: ScanSettings = ScanSettings()) -> Splits:
    """The split at a given day for each look (before: blocks counted back from the day before it;
    after: blocks counted on from it, the last one partial)."""
    looks = np.asarray(looks, dtype=int)
    before = p.b[np.full(looks.shape, start - 1)]
    full = (looks - start + 1) // BLOCK_DAYS  # whole blocks after the split
    lo = np.arange(start, p.days, BLOCK_DAYS)
    whole = _blocks(lo, np.minimum(lo + BLOCK_DAYS - 1, p.days - 1), p.t, p.k).cumsum()
    partial = (looks - start + 1) % BLOCK_DAYS > 0
    last = _blocks(np.minimum(start + BLOCK_DAYS * full, looks), looks, p.t, p.k).where(partial)
    return _statistic(
        p, looks, np.full(looks.shape, start), before, whole[full] + last, full + partial, s
    )


def best(splits: Splits) -> tuple[np.ndarray, np.ndarray]:
    """The largest statistic of each row and its column (-inf and 0 where no split is admissible)."""
    col = np.argmax(splits.z, axis=-1)
    return np.take_along_axis(splits.z, col[..., None], axis=-1)[..., 0], col
