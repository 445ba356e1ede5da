"""The old rules' statistics: tests of a change between two windows (rates, ranks, weekly means, a trend).

Pure functions of counts and values; :mod:`.windows` chooses what they compare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import fmean

import numpy as np
from scipy import special

from .aggregates import _check_count

__all__ = ["ALPHA", "RATE_TESTS", "RateComparison", "compare_rates"]

ALPHA = 0.0125  # per milestone family; a result counts when p < ALPHA


@dataclass(frozen=True)
class RateComparison:
    """Two Poisson rates compared by a one-sided test (see :func:`compare_rates`).

    ``ratio`` is (k_recent / t_recent) / (k_base / t_base): ``math.inf`` when
    the baseline count is 0 and the recent one is not, 1.0 when both are 0.
    ``method`` is ``"binomial"`` (the exact conditional binomial test) or
    ``"e-test"`` (Krishnamoorthy and Thomson's E-test).
    """

    k_base: int
    t_base: int
    k_recent: int
    t_recent: int
    ratio: float
    p_value: float
    method: str = "binomial"


@lru_cache(maxsize=1 << 16)
def _binomial_p(k_recent: int, n: int, t_recent: int, t_base: int, alternative: str) -> float:
    if n == 0:
        return 1.0
    p0 = t_recent / (t_base + t_recent)
    # scipy.stats.binomtest's one-sided p-values, from the ufuncs it is built on (40 times faster)
    if alternative == "less":
        return float(special.bdtr(k_recent, n, p0))
    return 1.0 if k_recent <= 0 else float(special.bdtrc(k_recent - 1, n, p0))


@lru_cache(maxsize=1 << 16)
def _e_test_p(k_recent: int, t_recent: int, k_base: int, t_base: int, alternative: str) -> float:
    if k_recent + k_base == 0:
        return 1.0
    # Loaded here: scipy.stats is some 50 MiB a process, and no rule of the service asks for the E-test.
    from scipy import stats

    p = float(
        stats.poisson_means_test(k_recent, t_recent, k_base, t_base, alternative=alternative).pvalue
    )
    return min(1.0, max(0.0, p))


RATE_TESTS = ("binomial", "e-test")


def compare_rates(
    k_base: int,
    t_base: int,
    k_recent: int,
    t_recent: int,
    alternative: str,
    method: str = "binomial",
) -> RateComparison:
    """A one-sided test of two Poisson rates, recent against baseline.

    ``method="binomial"``: the exact conditional binomial test: given
    k_base + k_recent events, k_recent ~ Bin(n = k_base + k_recent,
    p0 = t_recent / (t_base + t_recent)) if the rates are equal.
    ``method="e-test"``: the E-test of Krishnamoorthy and Thomson (2004),
    ``scipy.stats.poisson_means_test``, which keeps the level more closely
    than the conditional test (less conservative, so more power) at the small
    counts of a month.
    ``alternative`` is ``"less"`` (the recent rate is lower) or ``"greater"``.
    t are exposures (logged days), k event counts.
    """
    for name, v in (("k_base", k_base), ("k_recent", k_recent)):
        _check_count(v, name)
    for name, v in (("t_base", t_base), ("t_recent", t_recent)):
        _check_count(v, name)
        if v == 0:
            raise ValueError(f"{name} must be > 0")
    if alternative not in ("less", "greater"):
        raise ValueError("alternative must be 'less' or 'greater'")
    if method not in RATE_TESTS:
        raise ValueError(f"method must be one of {RATE_TESTS}")
    if k_base == 0:
        ratio = 1.0 if k_recent == 0 else math.inf
    else:  # one division of exact integers, so a ratio of exactly 7/10 is the float 0.7
        ratio = (k_recent * t_base) / (t_recent * k_base)
    if method == "binomial":
        p = _binomial_p(k_recent, k_base + k_recent, t_recent, t_base, alternative)
    else:
        p = _e_test_p(k_recent, t_recent, k_base, t_base, alternative)
    return RateComparison(k_base, t_base, k_recent, t_recent, ratio, p, method)


def _common_language(higher: list[float], lower: list[float]) -> tuple[float, float]:
    """Mann-Whitney U, one-sided (``higher`` tends to be larger than ``lower``).

    Returns (common-language effect U / (n1 n2), i.e. the chance that a value
    from ``higher`` exceeds one from ``lower``, ties counted half; p-value).
    The normal approximation with tie correction: the samples are never tiny
    here (>= 8) and ratings tie a lot.
    """
    # What scipy.stats.mannwhitneyu(higher, lower, alternative="greater",
    # method="asymptotic") computes (continuity-corrected, average ranks for
    # ties), without its per-call overhead (half a millisecond a call).
    n1, n2 = len(higher), len(lower)
    values, where, counts = np.unique(
        np.concatenate([np.asarray(higher, float), np.asarray(lower, float)]),
        return_inverse=True,
        return_counts=True,
    )
    ranks = np.cumsum(counts) - (counts - 1) / 2.0
    u = float(ranks[where[:n1]].sum()) - n1 * (n1 + 1) / 2
    n = n1 + n2
    ties = float((counts**3 - counts).sum())
    spread = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    excess = u - n1 * n2 / 2 - 0.5
    if spread == 0:  # every value the same
        p = 1.0 if excess <= 0 else 0.0
    else:
        p = float(special.ndtr(-excess / spread))
    return u / (n1 * n2), min(1.0, max(0.0, p))


def _scaled_binomial_p(k_recent: float, n: float, p0: float, alternative: str) -> float:
    """The binomial tail of :func:`compare_rates` for counts that may be fractional.

    ``P(X <= k)`` ("less") or ``P(X >= k)`` ("greater") for X ~ Bin(n, p0),
    through the regularized incomplete beta function: for whole numbers it is
    exactly the binomial test's p-value.
    """
    if alternative == "less":
        return 1.0 if k_recent >= n else float(special.betainc(n - k_recent, k_recent + 1, 1 - p0))
    return 1.0 if k_recent <= 0 else float(special.betainc(k_recent, n - k_recent + 1, p0))


def _variance(xs: list[float]) -> float:
    """The sample variance in floats (``statistics.variance`` is exact, in fractions: 30 times the time)."""
    m = fmean(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def _welch_lower(
    base: list[float], recent: list[float], base_floor: float, recent_floor: float
) -> tuple[float, float]:
    """Welch's t-test, one-sided (the recent values lower): (t, p); p = 1 with fewer than 2 values a side.

    Each side's variance is at least its ``floor`` (for weekly means of
    whole-number ratings: the rounding variance 1/12 over the episodes in a
    week), so that a few identical weekly means do not make a certainty.
    """
    if len(base) < 2 or len(recent) < 2:
        return 0.0, 1.0
    vb = max(_variance(base), base_floor) / len(base)
    vr = max(_variance(recent), recent_floor) / len(recent)
    t = (fmean(base) - fmean(recent)) / math.sqrt(vb + vr)
    df = (vb + vr) ** 2 / (vb**2 / (len(base) - 1) + vr**2 / (len(recent) - 1))
    return t, float(special.stdtr(df, -t))  # stats.t.sf(t, df), without its overhead
