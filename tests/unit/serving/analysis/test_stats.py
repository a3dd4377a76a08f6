"""Statistics of the A/B analysis: intervals cover, tests match scipy and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from armillary.serving.analysis import (
    Test,
    binomial_test_above,
    mean_estimate,
    percentiles,
    proportion_estimate,
    rmse_estimate,
    sample_size_two_means,
    sample_size_two_proportions,
    two_proportion_z_test,
    welch_t_test,
    wilson_interval,
)

SIMULATIONS = 500


def _wilson_by_hand(k: int, n: int, z: float) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_wilson_interval_matches_the_formula() -> None:
    z = scipy_stats.norm.ppf(0.975)
    assert wilson_interval(45, 50) == pytest.approx(_wilson_by_hand(45, 50, z), abs=1e-12)
    z99 = scipy_stats.norm.ppf(0.995)
    assert wilson_interval(3, 40, confidence=0.99) == pytest.approx(
        _wilson_by_hand(3, 40, z99), abs=1e-12
    )


def test_proportion_without_observations_has_no_value() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    empty = proportion_estimate(0, 0)
    assert (empty.value, empty.low, empty.high, empty.n) == (None, None, None, 0)


@pytest.mark.parametrize(("k", "n"), [(-1, 5), (6, 5), (0, -1)])
def test_impossible_counts_are_refused(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="invalid counts"):
        proportion_estimate(k, n)


@given(n=st.integers(1, 5000), data=st.data())
def test_wilson_interval_is_inside_0_1_and_contains_the_estimate(
    n: int, data: st.DataObject
) -> None:
    k = data.draw(st.integers(0, n))
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n + 1e-12
    assert k / n - 1e-12 <= high <= 1.0


def test_wilson_interval_covers_the_true_proportion() -> None:
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(SIMULATIONS):
        k = int(rng.binomial(100, 0.3))
        low, high = wilson_interval(k, 100)
        covered += low <= 0.3 <= high
    assert covered / SIMULATIONS >= 0.9


def test_mean_interval_is_the_t_interval() -> None:
    estimate = mean_estimate([1.0, 2.0, 3.0, 4.0, 5.0])
    half = scipy_stats.t.ppf(0.975, 4) * math.sqrt(2.5) / math.sqrt(5)
    assert estimate.value == 3.0
    assert (estimate.low, estimate.high) == pytest.approx((3.0 - half, 3.0 + half))
    assert estimate.n == 5


def test_mean_interval_degenerate_samples() -> None:
    assert mean_estimate([]).value is None
    single = mean_estimate([4.0])
    assert (single.value, single.low, single.high) == (4.0, None, None)
    constant = mean_estimate([2.0, 2.0, 2.0])
    assert (constant.value, constant.low, constant.high) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="finite"):
        mean_estimate([1.0, math.nan])


def test_mean_interval_covers_the_true_mean_of_skewed_data() -> None:
    rng = np.random.default_rng(8)
    covered = 0
    for _ in range(SIMULATIONS):
        estimate = mean_estimate(list(rng.exponential(2.0, 40)))
        assert estimate.low is not None
        assert estimate.high is not None
        covered += estimate.low <= 2.0 <= estimate.high
    assert covered / SIMULATIONS >= 0.9


def test_rmse_interval_is_the_square_root_of_the_mse_interval() -> None:
    squared = [1.0, 4.0, 9.0, 16.0]
    mse = mean_estimate(squared)
    rmse = rmse_estimate(squared)
    assert rmse.value == pytest.approx(math.sqrt(7.5))
    assert mse.low is not None
    assert mse.high is not None
    assert rmse.low == pytest.approx(math.sqrt(max(mse.low, 0.0)))
    assert rmse.high == pytest.approx(math.sqrt(mse.high))
    assert rmse_estimate([9.0]).value == 3.0
    with pytest.raises(ValueError, match="negative"):
        rmse_estimate([1.0, -1.0])


def test_rmse_interval_covers_the_true_rmse() -> None:
    rng = np.random.default_rng(9)
    covered = 0
    for _ in range(SIMULATIONS):
        estimate = rmse_estimate(list(rng.normal(0.0, 2.0, 100) ** 2))
        assert estimate.low is not None
        assert estimate.high is not None
        assert 0.0 <= estimate.low <= estimate.high
        covered += estimate.low <= 2.0 <= estimate.high
    assert covered / SIMULATIONS >= 0.9


def test_percentiles_interpolate_linearly() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == pytest.approx({"p50": 50.5, "p95": 95.05, "p99": 99.01})
    assert percentiles([], (50, 99.9)) == {"p50": None, "p99.9": None}


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=200))
def test_percentiles_are_ordered_and_within_range(values: list[float]) -> None:
    found = percentiles(values)
    p50, p95, p99 = found["p50"], found["p95"], found["p99"]
    assert p50 is not None
    assert p95 is not None
    assert p99 is not None
    assert min(values) <= p50 <= p95 <= p99 <= max(values)


def test_z_test_matches_the_hand_computation() -> None:
    # pooled p = 0.8, se = sqrt(0.8 * 0.2 * (1/50 + 1/50)) = 0.08, z = (0.9 - 0.7) / 0.08
    result = two_proportion_z_test(45, 50, 35, 50)
    assert result.statistic == pytest.approx(2.5)
    assert result.p_value == pytest.approx(2 * scipy_stats.norm.sf(2.5))
    assert result.p_value == pytest.approx(0.012419, abs=1e-6)


@given(
    n1=st.integers(1, 2000),
    n2=st.integers(1, 2000),
    data=st.data(),
)
def test_z_test_agrees_with_the_chi_square_test(n1: int, n2: int, data: st.DataObject) -> None:
    s1, s2 = data.draw(st.integers(0, n1)), data.draw(st.integers(0, n2))
    result = two_proportion_z_test(s1, n1, s2, n2)
    assert 0.0 <= result.p_value <= 1.0
    assert two_proportion_z_test(s2, n2, s1, n1).statistic == pytest.approx(-result.statistic)
    if 0 < s1 + s2 < n1 + n2:
        table = [[s1, n1 - s1], [s2, n2 - s2]]
        chi2, p_value, _, _ = scipy_stats.chi2_contingency(table, correction=False)
        assert result.statistic**2 == pytest.approx(chi2, rel=1e-6, abs=1e-9)
        assert result.p_value == pytest.approx(p_value, rel=1e-6, abs=1e-12)
    else:
        assert result == Test(0.0, 1.0)


def test_z_test_needs_observations_on_both_sides() -> None:
    with pytest.raises(ValueError, match="at least one"):
        two_proportion_z_test(0, 0, 3, 10)


def test_welch_matches_the_hand_computation() -> None:
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0, 10.0]
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 5
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)
    result = welch_t_test(a, b)
    assert result.statistic == pytest.approx(t)
    assert result.p_value == pytest.approx(2 * scipy_stats.t.sf(abs(t), df))


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, on near-ties
@settings(max_examples=200)
@given(st.lists(finite, min_size=2, max_size=50), st.lists(finite, min_size=2, max_size=50))
def test_welch_matches_scipy(a: list[float], b: list[float]) -> None:
    if np.std(a) < 1e-6 and np.std(b) < 1e-6:
        return  # constant samples: see test_welch_on_constant_samples
    expected = scipy_stats.ttest_ind(a, b, equal_var=False)
    result = welch_t_test(a, b)
    assert result.statistic == pytest.approx(float(expected.statistic), rel=1e-6, abs=1e-9)
    assert result.p_value == pytest.approx(float(expected.pvalue), rel=1e-6, abs=1e-12)


def test_welch_on_constant_samples() -> None:
    assert welch_t_test([1.0, 1.0], [1.0, 1.0, 1.0]) == Test(0.0, 1.0)
    assert welch_t_test([2.0, 2.0], [1.0, 1.0]) == Test(math.inf, 0.0)
    assert welch_t_test([1.0, 1.0], [2.0, 2.0]) == Test(-math.inf, 0.0)
    with pytest.raises(ValueError, match="two values"):
        welch_t_test([1.0], [1.0, 2.0])


def test_binomial_test_above_a_rate() -> None:
    # One failure out of one request: P(X >= 1 | p = 0.05) = 0.05, not below alpha 0.01.
    one_of_one = binomial_test_above(1, 1, 0.05)
    assert one_of_one.statistic == 1.0
    assert one_of_one.p_value == pytest.approx(0.05)
    assert binomial_test_above(2, 2, 0.05).p_value == pytest.approx(0.0025)
    expected = scipy_stats.binomtest(100, 500, 0.05, alternative="greater").pvalue
    assert binomial_test_above(100, 500, 0.05).p_value == pytest.approx(expected)
    assert binomial_test_above(0, 10, 0.0).p_value == 1.0
    assert binomial_test_above(1, 10, 0.0).p_value == 0.0


def test_sample_sizes_match_textbook_values() -> None:
    # Classic examples: 0.5 vs 0.6 needs 388 per group; a 0.5 SD difference needs 63.
    assert sample_size_two_proportions(0.5, 0.6, alpha=0.05) == 388
    assert sample_size_two_means(1.0, 1.0, 0.5, alpha=0.05) == 63
    with pytest.raises(ValueError):
        sample_size_two_proportions(0.5, 0.5, alpha=0.05)


def test_the_sample_size_gives_the_promised_power() -> None:
    n = sample_size_two_proportions(0.9, 0.85, alpha=0.05)
    rng = np.random.default_rng(10)
    detected = sum(
        two_proportion_z_test(int(rng.binomial(n, 0.9)), n, int(rng.binomial(n, 0.85)), n).p_value
        < 0.05
        for _ in range(SIMULATIONS)
    )
    assert 0.72 <= detected / SIMULATIONS <= 0.88
