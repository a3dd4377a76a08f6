"""The A/B analysis report of a deployment and the auto-rollback decision.

``build_report`` summarises each variant (requests, error rate, latency percentiles, accuracy
or RMSE with intervals at ``1 - alpha``) and compares every other variant with the baseline:
quality by a pooled two-proportion z-test on accuracy (classification) or Welch's t-test on
per-prediction squared errors (regression), error rates by a two-proportion z-test, latency by
Welch's t-test (informational). Each comparison ends in a plain-words recommendation.

Shadow variants are summarised and compared like the others but are never recommended for
promotion (or rollback): their answers reach no client, so a person decides whether to give
one traffic.

The report is JSON-ready: plain dicts, lists, strings, ints, finite floats and ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from armillary.kit.lazy_import import lazy
from armillary.serving.analysis.stats import (
    Test,
    binomial_test_above,
    percentiles,
    proportion_estimate,
    rmse_estimate,
    sample_size_two_means,
    sample_size_two_proportions,
    two_proportion_z_test,
    welch_t_test,
)

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")

Problem = Literal["classification", "regression"]

POWER = 0.8
# Floors on the difference a "keep collecting" sample size targets, so that two variants that
# look identical still get a finite, meaningful answer.
MIN_ACCURACY_DIFFERENCE = 0.01
MIN_RELATIVE_MSE_DIFFERENCE = 0.02

Z_TEST = "two-proportion z-test"
WELCH_SQUARED_ERRORS = "Welch's t-test on squared errors"
WELCH_LATENCY = "Welch's t-test on latencies"

SHADOW_NOTE = (
    "Shadow variants are reported and compared, but never recommended for promotion "
    "automatically: their answers reach no client."
)


@dataclass(frozen=True)
class VariantSample:
    """What the service observed for one variant over the analysis window."""

    name: str
    model_version: int | None
    shadow: bool
    requests: int
    errors: int
    latencies_ms: Sequence[float] = field(default_factory=list)
    correct: int | None = None  # classification: labelled predictions that were right
    labelled: int = 0
    squared_errors: Sequence[float] = field(default_factory=list)  # regression, one per label

    def __post_init__(self) -> None:
        if self.requests < 0 or not 0 <= self.errors <= self.requests:
            raise ValueError(f"variant {self.name!r}: errors must be between 0 and requests")
        if self.labelled < 0:
            raise ValueError(f"variant {self.name!r}: labelled cannot be negative")
        if self.correct is not None and not 0 <= self.correct <= self.labelled:
            raise ValueError(f"variant {self.name!r}: correct must be between 0 and labelled")


def _finite(value: Any) -> Any:
    """NaN and infinities become ``None`` so ``json.dumps(..., allow_nan=False)`` works."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _p_text(p_value: float) -> str:
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"


def _metric_text(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric == "error rate":
        return f"{value:.1%}"
    return f"{value:.3g}" if metric == "accuracy" else f"{value:.4g}"


def _test_block(
    name: str, test: Test | None, *, higher_is_better: bool, alpha: float
) -> dict[str, Any]:
    if test is None or not math.isfinite(test.p_value):
        return {
            "test": name,
            "statistic": None,
            "p_value": None,
            "significant": False,
            "direction": "no difference",
        }
    significant = test.p_value < alpha and test.statistic != 0.0
    direction = "no difference"
    if significant:
        direction = "better" if (test.statistic > 0) == higher_is_better else "worse"
    return {
        "test": name,
        "statistic": test.statistic,
        "p_value": test.p_value,
        "significant": significant,
        "direction": direction,
    }


def _summary(sample: VariantSample, problem: Problem, confidence: float) -> dict[str, Any]:
    if problem == "classification":
        quality = {
            "metric": "accuracy",
            **proportion_estimate(
                sample.correct or 0, sample.labelled, confidence=confidence
            ).as_dict(),
        }
    else:
        quality = {
            "metric": "rmse",
            **rmse_estimate(sample.squared_errors, confidence=confidence).as_dict(),
        }
    return {
        "name": sample.name,
        "model_version": sample.model_version,
        "shadow": sample.shadow,
        "requests": sample.requests,
        "errors": sample.errors,
        "error_rate": proportion_estimate(
            sample.errors, sample.requests, confidence=confidence
        ).as_dict(),
        "latency_ms": percentiles(sample.latencies_ms),
        "labelled": sample.labelled,
        "quality": quality,
    }


def _quality_test(variant: VariantSample, baseline: VariantSample, problem: Problem) -> Test | None:
    if problem == "classification":
        if variant.labelled == 0 or baseline.labelled == 0:
            return None
        return two_proportion_z_test(
            variant.correct or 0, variant.labelled, baseline.correct or 0, baseline.labelled
        )
    if len(variant.squared_errors) < 2 or len(baseline.squared_errors) < 2:
        return None
    return welch_t_test(variant.squared_errors, baseline.squared_errors)


def _accuracy_sample_size(
    variant: VariantSample, baseline: VariantSample, alpha: float
) -> tuple[int, str]:
    """Per-variant labels needed to detect the observed accuracy difference (floored)."""
    p_base = (baseline.correct or 0) / baseline.labelled
    observed = (variant.correct or 0) / variant.labelled - p_base
    effect = max(abs(observed), MIN_ACCURACY_DIFFERENCE)
    sign = math.copysign(1.0, observed) if observed != 0 else (-1.0 if p_base > 0.5 else 1.0)
    target = p_base + sign * effect
    if not 0.0 <= target <= 1.0:
        target = p_base - sign * effect
    target = min(max(target, 0.0), 1.0)
    needed = sample_size_two_proportions(p_base, target, alpha=alpha, power=POWER)
    return needed, f"{effect:.3g} in accuracy"


def _mse_sample_size(
    variant: VariantSample, baseline: VariantSample, alpha: float
) -> tuple[int, str] | None:
    """Per-variant labels needed to detect the observed MSE difference (floored)."""
    base = np.asarray(baseline.squared_errors, dtype=np.float64)
    other = np.asarray(variant.squared_errors, dtype=np.float64)
    mse_base = float(base.mean())
    effect = max(abs(float(other.mean()) - mse_base), MIN_RELATIVE_MSE_DIFFERENCE * mse_base)
    if effect == 0.0:
        return None  # both variants fit every labelled value exactly
    sd_base, sd_other = float(base.std(ddof=1)), float(other.std(ddof=1))
    needed = sample_size_two_means(sd_other, sd_base, effect, alpha=alpha, power=POWER)
    return needed, f"{effect:.4g} in mean squared error"


def _recommend(
    variant: VariantSample,
    baseline: VariantSample,
    comparison: dict[str, Any],
    problem: Problem,
    alpha: float,
) -> tuple[str, str]:
    """(action, recommendation) for one comparison; see the module docs for shadows."""
    who = f"shadow {variant.name}" if variant.shadow else variant.name
    metric = comparison["metric"]
    values = (
        f"{'accuracy' if metric == 'accuracy' else 'RMSE'} "
        f"{_metric_text(metric, comparison['variant_value'])} vs "
        f"{_metric_text(metric, comparison['baseline_value'])}"
    )
    errors = comparison["error_rate"]
    error_values = (
        f"error rate {_metric_text('error rate', errors['variant_value'])} vs "
        f"{_metric_text('error rate', errors['baseline_value'])}"
    )
    worse = None
    if comparison["direction"] == "worse":
        worse = f"{who} is significantly worse than {baseline.name} ({values}, "
        worse += f"{_p_text(comparison['p_value'])})"
    elif errors["direction"] == "worse":
        worse = f"{who} fails significantly more often than {baseline.name} ({error_values}, "
        worse += f"{_p_text(errors['p_value'])})"
    if worse is not None:
        if variant.shadow:
            return "review", worse + ": it answers no client, so remove it when you are done"
        return "roll_back", worse + ": roll it back"
    if comparison["direction"] == "better":
        better = f"{who} is significantly better than {baseline.name} ({values}, "
        better += f"{_p_text(comparison['p_value'])})"
        if variant.shadow:
            return "review", better + (
                ": shadows are never promoted automatically; give it a traffic weight "
                "(a canary) to confirm"
            )
        return "promote", better + ": promote it, raising its weight step by step"

    if comparison["p_value"] is None:
        missing = [s.name for s in (variant, baseline) if s.labelled < 2] or [variant.name]
        return "keep_collecting", (
            f"not enough labelled data yet for {' and '.join(missing)}: send ground truth to "
            f"the feedback endpoint to compare {'accuracy' if metric == 'accuracy' else 'RMSE'}"
        )
    sized = (
        _accuracy_sample_size(variant, baseline, alpha)
        if problem == "classification"
        else _mse_sample_size(variant, baseline, alpha)
    )
    have = min(variant.labelled, baseline.labelled)
    observed = f"{values}, {_p_text(comparison['p_value'])}"
    if sized is None or sized[0] <= have:
        detectable = (
            f"; a difference of {sized[1]} would have been detected with {POWER:.0%} power"
            if sized
            else ""
        )
        return "no_difference", (
            f"no significant difference between {who} and {baseline.name} ({observed}) with "
            f"{have:,} labelled predictions per variant{detectable}"
        )
    needed, difference = sized
    return "keep_collecting", (
        f"not enough labelled data yet ({observed}): about {needed - have:,} more labelled "
        f"predictions per variant would detect a difference of {difference} at alpha={alpha:g} "
        f"with {POWER:.0%} power"
    )


def _compare(
    variant: VariantSample, baseline: VariantSample, problem: Problem, alpha: float
) -> dict[str, Any]:
    confidence = 1.0 - alpha
    if problem == "classification":
        metric, test_name, higher_is_better = "accuracy", Z_TEST, True
        variant_value = proportion_estimate(variant.correct or 0, variant.labelled).value
        baseline_value = proportion_estimate(baseline.correct or 0, baseline.labelled).value
    else:
        metric, test_name, higher_is_better = "rmse", WELCH_SQUARED_ERRORS, False
        variant_value = rmse_estimate(variant.squared_errors, confidence=confidence).value
        baseline_value = rmse_estimate(baseline.squared_errors, confidence=confidence).value

    error_test = None
    if variant.requests > 0 and baseline.requests > 0:
        error_test = two_proportion_z_test(
            variant.errors, variant.requests, baseline.errors, baseline.requests
        )
    latency_test = None
    if len(variant.latencies_ms) >= 2 and len(baseline.latencies_ms) >= 2:
        latency_test = welch_t_test(variant.latencies_ms, baseline.latencies_ms)

    comparison: dict[str, Any] = {
        "variant": variant.name,
        "baseline": baseline.name,
        "shadow": variant.shadow,
        "metric": metric,
        "variant_value": variant_value,
        "baseline_value": baseline_value,
        "variant_labelled": variant.labelled,
        "baseline_labelled": baseline.labelled,
        **_test_block(
            test_name,
            _quality_test(variant, baseline, problem),
            higher_is_better=higher_is_better,
            alpha=alpha,
        ),
        "error_rate": {
            "variant_value": proportion_estimate(variant.errors, variant.requests).value,
            "baseline_value": proportion_estimate(baseline.errors, baseline.requests).value,
            "variant_errors": variant.errors,
            "variant_requests": variant.requests,
            "baseline_errors": baseline.errors,
            "baseline_requests": baseline.requests,
            **_test_block(Z_TEST, error_test, higher_is_better=False, alpha=alpha),
        },
        "latency": _test_block(WELCH_LATENCY, latency_test, higher_is_better=False, alpha=alpha),
    }
    comparison["action"], comparison["recommendation"] = _recommend(
        variant, baseline, comparison, problem, alpha
    )
    return comparison


def build_report(
    variants: Sequence[VariantSample], *, baseline: str, alpha: float, problem: Problem
) -> dict[str, Any]:
    """The analysis report: per-variant summaries and every other variant against ``baseline``.

    ``baseline`` names the non-shadow variant with the largest weight. Each comparison has the
    quality ``test``, ``statistic``, ``p_value``, ``significant``, ``direction`` ("better",
    "worse" or "no difference", from the compared variant's side), the same for ``error_rate``
    and ``latency``, an ``action`` ("roll_back", "promote", "keep_collecting",
    "no_difference", or "review" for shadows) and a plain-words ``recommendation``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be strictly between 0 and 1")
    if problem not in ("classification", "regression"):
        raise ValueError(f"unknown problem {problem!r}")
    by_name = {sample.name: sample for sample in variants}
    if len(by_name) != len(variants):
        raise ValueError("variant names must be unique")
    if baseline not in by_name:
        raise ValueError(f"baseline {baseline!r} is not one of the variants")
    if by_name[baseline].shadow:
        raise ValueError("the baseline cannot be a shadow variant")
    for sample in variants:
        if problem == "classification" and sample.labelled > 0 and sample.correct is None:
            raise ValueError(f"variant {sample.name!r}: classification needs 'correct'")
        if problem == "regression" and len(sample.squared_errors) != sample.labelled:
            raise ValueError(f"variant {sample.name!r}: one squared error per labelled row")

    confidence = 1.0 - alpha
    report = {
        "problem": problem,
        "alpha": alpha,
        "confidence": confidence,
        "power": POWER,
        "baseline": baseline,
        "variants": [_summary(sample, problem, confidence) for sample in variants],
        "comparisons": [
            _compare(sample, by_name[baseline], problem, alpha)
            for sample in variants
            if sample.name != baseline
        ],
        "notes": [SHADOW_NOTE],
    }
    result: dict[str, Any] = _finite(report)
    return result


def should_roll_back(comparison: Mapping[str, Any], policy: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the auto-rollback policy removes the compared variant, and why in plain words.

    ``comparison`` is one entry of ``build_report(...)["comparisons"]``; ``policy`` is the
    deployment's ``auto_rollback`` settings {enabled?, min_labelled, alpha, max_error_rate}.
    Rolls back when the error rate is significantly above ``max_error_rate`` (exact one-sided
    binomial test at ``alpha``: one early failure is not enough), or, once both sides have
    ``min_labelled`` labels, when quality is significantly worse at ``alpha``. Shadow variants
    are never rolled back automatically.
    """
    if policy.get("enabled") is False:
        return False, "auto-rollback is disabled"
    alpha = float(policy.get("alpha", 0.01))
    min_labelled = int(policy.get("min_labelled", 200))
    max_error_rate = policy.get("max_error_rate")
    if not 0.0 < alpha < 1.0 or min_labelled < 0:
        raise ValueError("policy needs 0 < alpha < 1 and min_labelled >= 0")
    name, baseline = comparison["variant"], comparison["baseline"]
    if comparison["shadow"]:
        return False, f"{name} is a shadow variant: it answers no client and is never rolled back"

    errors = comparison["error_rate"]
    error_note = ""
    if max_error_rate is not None and errors["variant_requests"] > 0:
        above = binomial_test_above(
            errors["variant_errors"], errors["variant_requests"], float(max_error_rate)
        )
        observed = (
            f"error rate {above.statistic:.1%} ({errors['variant_errors']} of "
            f"{errors['variant_requests']} requests)"
        )
        if above.p_value < alpha:
            return True, (
                f"{name}'s {observed} is significantly above the policy's maximum of "
                f"{max_error_rate:.1%} ({_p_text(above.p_value)}, alpha {alpha:g})"
            )
        if above.statistic > max_error_rate:
            error_note = (
                f"; its {observed} is above the maximum of {max_error_rate:.1%}, but not "
                f"significantly yet ({_p_text(above.p_value)})"
            )

    labelled = (comparison["variant_labelled"], comparison["baseline_labelled"])
    if min(labelled) < min_labelled:
        return False, (
            f"too few labelled predictions to judge quality: {labelled[0]} for {name} and "
            f"{labelled[1]} for {baseline}, the policy needs {min_labelled} each" + error_note
        )
    p_value, statistic = comparison["p_value"], comparison["statistic"]
    metric = comparison["metric"]
    values = (
        f"{'accuracy' if metric == 'accuracy' else 'RMSE'} "
        f"{_metric_text(metric, comparison['variant_value'])} vs "
        f"{_metric_text(metric, comparison['baseline_value'])}"
    )
    if p_value is None or statistic is None:
        return False, f"quality of {name} and {baseline} could not be compared" + error_note
    # Accuracy: a lower proportion is worse; RMSE: larger squared errors are worse.
    worse = statistic < 0 if metric == "accuracy" else statistic > 0
    if worse and p_value < alpha:
        return True, (
            f"{name} is significantly worse than {baseline} ({values}, {_p_text(p_value)}, "
            f"alpha {alpha:g})"
        )
    return False, (
        f"{name} is not significantly worse than {baseline} ({values}, {_p_text(p_value)}, "
        f"alpha {alpha:g})" + error_note
    )
