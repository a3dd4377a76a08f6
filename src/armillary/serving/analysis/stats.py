"""Pure statistics for comparing deployment variants: intervals, tests and sample sizes.

Conventions:
- Intervals are two-sided at ``confidence``; an estimate with too little data has ``None``
  bounds (and ``None`` value when there is no data at all), never NaN.
- Tests are two-sided unless named otherwise. ``two_proportion_z_test(s1, n1, s2, n2)`` and
  ``welch_t_test(a, b)`` give a positive statistic when the first sample's proportion or mean
  is the larger one.
- RMSE interval: a t-interval for the mean squared error (the mean of the per-prediction
  squared errors), its bounds mapped through the square root. The square root is monotone, so
  the mapped interval keeps the MSE interval's coverage; unlike the delta method it is
  deterministic, asymmetric and never negative, and unlike a bootstrap it needs no seed.
- Sample sizes use the usual normal approximation, per group, for a two-sided test at
  ``alpha`` with the given power.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from armillary.kit.lazy_import import lazy

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")


@functools.cache
def _scipy() -> Any:
    # SciPy's statistics take about a second to import: only the analysis needs them, so
    # processes that never analyse (workers, the CLI) never pay it.
    from scipy import stats

    return stats


DEFAULT_PERCENTILES: tuple[int, ...] = (50, 95, 99)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with its confidence interval over ``n`` observations."""

    value: float | None
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


@dataclass(frozen=True, slots=True)
class Test:
    """The result of a hypothesis test."""

    __test__ = False  # named by the interface; tells pytest this is not a test class

    statistic: float
    p_value: float


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be strictly between 0 and 1")


def _check_counts(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"invalid counts: {successes} successes out of {n}")


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (``(0, 1)`` when ``n`` is 0)."""
    _check_confidence(confidence)
    _check_counts(successes, n)
    if n == 0:
        return (0.0, 1.0)
    ci = (
        _scipy().binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    )
    return (float(ci.low), float(ci.high))


def proportion_estimate(successes: int, n: int, *, confidence: float = 0.95) -> Estimate:
    """``successes / n`` with its Wilson interval; value and bounds ``None`` when ``n`` is 0."""
    _check_counts(successes, n)
    if n == 0:
        return Estimate(value=None, low=None, high=None, n=0)
    low, high = wilson_interval(successes, n, confidence=confidence)
    return Estimate(value=successes / n, low=low, high=high, n=n)


def _as_array(values: Iterable[float]) -> np.ndarray:
    array = np.asarray(list(values), dtype=np.float64)
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        raise ValueError("values must be a flat sequence of finite numbers")
    return array


def _mean_interval(array: np.ndarray, confidence: float) -> tuple[float, float, float]:
    mean = float(array.mean())
    sem = float(array.std(ddof=1)) / math.sqrt(array.size)
    if sem == 0.0:
        # Every value equal: scipy refuses a zero scale; the interval is the point.
        return mean, mean, mean
    low, high = _scipy().t.interval(confidence, array.size - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def mean_estimate(values: Sequence[float], *, confidence: float = 0.95) -> Estimate:
    """Sample mean with a Student-t interval (bounds ``None`` below two values)."""
    _check_confidence(confidence)
    array = _as_array(values)
    if array.size == 0:
        return Estimate(value=None, low=None, high=None, n=0)
    if array.size == 1:
        return Estimate(value=float(array[0]), low=None, high=None, n=1)
    mean, low, high = _mean_interval(array, confidence)
    return Estimate(value=mean, low=low, high=high, n=int(array.size))


def rmse_estimate(squared_errors: Sequence[float], *, confidence: float = 0.95) -> Estimate:
    """Root mean squared error with the square root of the MSE's t-interval (module docs)."""
    _check_confidence(confidence)
    array = _as_array(squared_errors)
    if np.any(array < 0):
        raise ValueError("squared errors cannot be negative")
    if array.size == 0:
        return Estimate(value=None, low=None, high=None, n=0)
    if array.size == 1:
        return Estimate(value=math.sqrt(float(array[0])), low=None, high=None, n=1)
    mse, low, high = _mean_interval(array, confidence)
    return Estimate(
        value=math.sqrt(mse),
        low=math.sqrt(max(low, 0.0)),
        high=math.sqrt(max(high, 0.0)),
        n=int(array.size),
    )


def percentiles(
    values: Sequence[float], qs: Sequence[float] = DEFAULT_PERCENTILES
) -> dict[str, float | None]:
    """Percentiles (linear interpolation, numpy's default) keyed ``"p50"``, ``"p95"``...;
    every value ``None`` when there is no data."""
    array = _as_array(values)
    keys = [f"p{q:g}" for q in qs]
    if array.size == 0:
        return dict.fromkeys(keys)
    found = np.percentile(array, list(qs), method="linear")
    return {key: float(value) for key, value in zip(keys, found, strict=True)}


def two_proportion_z_test(s1: int, n1: int, s2: int, n2: int) -> Test:
    """Pooled two-proportion z-test of ``s1/n1`` against ``s2/n2``.

    Raises ``ValueError`` when either group is empty. When every observation is a success (or
    none is) the proportions are identical and the result is ``Test(0.0, 1.0)``.
    """
    _check_counts(s1, n1)
    _check_counts(s2, n2)
    if n1 == 0 or n2 == 0:
        raise ValueError("both groups need at least one observation")
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    if se == 0.0:
        return Test(statistic=0.0, p_value=1.0)
    z = (s1 / n1 - s2 / n2) / se
    return Test(statistic=z, p_value=float(2.0 * _scipy().norm.sf(abs(z))))


def binomial_test_above(successes: int, n: int, rate: float) -> Test:
    """Exact one-sided binomial test of "the true proportion is above ``rate``".

    ``statistic`` is the observed proportion. Exact rather than normal, because it is used on
    small counts too (the first few requests of a canary).
    """
    _check_counts(successes, n)
    if n == 0:
        raise ValueError("the test needs at least one observation")
    if not 0.0 <= rate <= 1.0:
        raise ValueError("rate must be between 0 and 1")
    result = _scipy().binomtest(successes, n, p=rate, alternative="greater")
    return Test(statistic=successes / n, p_value=float(result.pvalue))


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> Test:
    """Welch's unequal-variance t-test of ``mean(a)`` against ``mean(b)``.

    Raises ``ValueError`` below two values per sample. Two constant samples give ``Test(0, 1)``
    when their values are equal and an infinite statistic with ``p_value`` 0 otherwise.
    """
    first, second = _as_array(a), _as_array(b)
    if first.size < 2 or second.size < 2:
        raise ValueError("each sample needs at least two values")
    sd1, sd2 = float(first.std(ddof=1)), float(second.std(ddof=1))
    if sd1 == 0.0 and sd2 == 0.0:
        difference = float(first.mean() - second.mean())
        if difference == 0.0:
            return Test(statistic=0.0, p_value=1.0)
        return Test(statistic=math.copysign(math.inf, difference), p_value=0.0)
    # From summary statistics: same result as ttest_ind(equal_var=False), without its spurious
    # precision-loss warning when one sample is constant (e.g. identical latencies).
    result = _scipy().ttest_ind_from_stats(
        float(first.mean()),
        sd1,
        first.size,
        float(second.mean()),
        sd2,
        second.size,
        equal_var=False,
    )
    return Test(statistic=float(result.statistic), p_value=float(result.pvalue))


def _z_quantiles(alpha: float, power: float) -> tuple[float, float]:
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError("alpha and power must be strictly between 0 and 1")
    return float(_scipy().norm.ppf(1.0 - alpha / 2.0)), float(_scipy().norm.ppf(power))


def sample_size_two_proportions(p1: float, p2: float, *, alpha: float, power: float = 0.8) -> int:
    """Observations per group for a pooled two-proportion z-test to detect ``p1`` vs ``p2``."""
    if not (0.0 <= p1 <= 1.0 and 0.0 <= p2 <= 1.0) or p1 == p2:
        raise ValueError("p1 and p2 must be distinct proportions")
    z_alpha, z_power = _z_quantiles(alpha, power)
    mean = (p1 + p2) / 2.0
    spread = z_alpha * math.sqrt(2.0 * mean * (1.0 - mean)) + z_power * math.sqrt(
        p1 * (1.0 - p1) + p2 * (1.0 - p2)
    )
    return math.ceil(spread**2 / (p1 - p2) ** 2)


def sample_size_two_means(
    sd1: float, sd2: float, difference: float, *, alpha: float, power: float = 0.8
) -> int:
    """Observations per group for a two-sample test of means to detect ``difference``."""
    if difference == 0.0 or sd1 < 0.0 or sd2 < 0.0:
        raise ValueError("difference must be non-zero and standard deviations non-negative")
    z_alpha, z_power = _z_quantiles(alpha, power)
    return max(2, math.ceil((z_alpha + z_power) ** 2 * (sd1**2 + sd2**2) / difference**2))
