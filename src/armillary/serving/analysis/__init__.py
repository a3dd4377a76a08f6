"""A/B analysis of deployment variants: pure statistics and the analysis report."""

from armillary.serving.analysis.report import (
    Problem,
    VariantSample,
    build_report,
    should_roll_back,
)
from armillary.serving.analysis.stats import (
    Estimate,
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

__all__ = [
    "Estimate",
    "Problem",
    "Test",
    "VariantSample",
    "binomial_test_above",
    "build_report",
    "mean_estimate",
    "percentiles",
    "proportion_estimate",
    "rmse_estimate",
    "sample_size_two_means",
    "sample_size_two_proportions",
    "should_roll_back",
    "two_proportion_z_test",
    "welch_t_test",
    "wilson_interval",
]
