"""The analysis report: comparisons, plain-words recommendations and the rollback policy."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from armillary.serving.analysis import Problem, VariantSample, build_report, should_roll_back

POLICY = {"enabled": True, "min_labelled": 200, "alpha": 0.01, "max_error_rate": None}


def _classifier(
    name: str,
    correct: int,
    labelled: int,
    *,
    requests: int = 1000,
    errors: int = 0,
    shadow: bool = False,
) -> VariantSample:
    latencies = [2.0 + (i % 10) / 10 for i in range(requests)]
    return VariantSample(
        name=name,
        model_version=1,
        shadow=shadow,
        requests=requests,
        errors=errors,
        latencies_ms=latencies,
        correct=correct,
        labelled=labelled,
        squared_errors=[],
    )


def _regressor(name: str, sd: float, n: int, seed: int) -> VariantSample:
    errors = np.random.default_rng(seed).normal(0.0, sd, n)
    return VariantSample(
        name=name,
        model_version=2,
        shadow=False,
        requests=n,
        errors=0,
        latencies_ms=[1.0] * n,
        correct=None,
        labelled=n,
        squared_errors=list(errors**2),
    )


def _only_comparison(report: dict[str, Any]) -> dict[str, Any]:
    (comparison,) = report["comparisons"]
    return comparison


def _report(
    *variants: VariantSample, alpha: float = 0.05, problem: Problem = "classification"
) -> dict[str, Any]:
    report = build_report(list(variants), baseline="champion", alpha=alpha, problem=problem)
    json.dumps(report, allow_nan=False)
    return report


def test_a_clearly_worse_challenger_is_reported_and_rolled_back() -> None:
    report = _report(_classifier("champion", 475, 500), _classifier("challenger", 300, 500))
    comparison = _only_comparison(report)
    assert comparison["test"] == "two-proportion z-test"
    assert comparison["significant"] is True
    assert comparison["direction"] == "worse"
    assert comparison["statistic"] < 0
    assert comparison["p_value"] < 0.001
    assert comparison["action"] == "roll_back"
    assert comparison["recommendation"] == (
        "challenger is significantly worse than champion (accuracy 0.6 vs 0.95, p < 0.001): "
        "roll it back"
    )
    decision, reason = should_roll_back(comparison, POLICY)
    assert decision is True
    assert "significantly worse" in reason
    assert "0.6 vs 0.95" in reason


def test_equal_variants_are_not_significant_and_need_more_data() -> None:
    report = _report(_classifier("champion", 450, 500), _classifier("challenger", 450, 500))
    comparison = _only_comparison(report)
    assert comparison["significant"] is False
    assert comparison["direction"] == "no difference"
    assert comparison["p_value"] == pytest.approx(1.0)
    assert comparison["action"] == "keep_collecting"
    # 0.9 vs 0.89 (the 1-point floor) needs 14,751 per variant at alpha 0.05 and 80% power.
    assert comparison["recommendation"] == (
        "not enough labelled data yet (accuracy 0.9 vs 0.9, p = 1.000): about 14,251 more "
        "labelled predictions per variant would detect a difference of 0.01 in accuracy at "
        "alpha=0.05 with 80% power"
    )
    assert should_roll_back(comparison, POLICY)[0] is False


def test_a_small_observed_difference_sets_the_needed_sample_size() -> None:
    # 0.95 vs 0.90 observed on 100 each: the z-test cannot tell yet; 0.05 is the target.
    report = _report(_classifier("champion", 95, 100), _classifier("challenger", 90, 100))
    comparison = _only_comparison(report)
    assert comparison["action"] == "keep_collecting"
    assert "difference of 0.05 in accuracy" in comparison["recommendation"]
    assert "about 335 more labelled predictions" in comparison["recommendation"]


def test_enough_data_and_no_difference_says_so() -> None:
    report = _report(_classifier("champion", 18000, 20000), _classifier("challenger", 18000, 20000))
    comparison = _only_comparison(report)
    assert comparison["action"] == "no_difference"
    assert comparison["recommendation"].startswith(
        "no significant difference between challenger and champion"
    )
    assert (
        "a difference of 0.01 in accuracy would have been detected"
        in (comparison["recommendation"])
    )


def test_a_clearly_better_challenger_is_promoted() -> None:
    report = _report(_classifier("champion", 900, 1000), _classifier("challenger", 970, 1000))
    comparison = _only_comparison(report)
    assert (comparison["significant"], comparison["direction"]) == (True, "better")
    assert comparison["action"] == "promote"
    assert comparison["recommendation"].endswith("promote it, raising its weight step by step")
    decision, reason = should_roll_back(comparison, POLICY)
    assert decision is False
    assert "not significantly worse" in reason


def test_a_better_shadow_is_never_promoted_automatically() -> None:
    report = _report(
        _classifier("champion", 900, 1000),
        _classifier("candidate", 970, 1000, shadow=True),
    )
    comparison = _only_comparison(report)
    assert comparison["shadow"] is True
    assert comparison["direction"] == "better"
    assert comparison["action"] == "review"
    assert "never promoted automatically" in comparison["recommendation"]
    assert "promote it" not in comparison["recommendation"]
    assert any("never recommended for promotion" in note for note in report["notes"])
    assert [v["shadow"] for v in report["variants"]] == [False, True]


def test_a_worse_shadow_is_never_rolled_back_automatically() -> None:
    report = _report(
        _classifier("champion", 475, 500), _classifier("candidate", 300, 500, shadow=True)
    )
    comparison = _only_comparison(report)
    assert comparison["action"] == "review"
    decision, reason = should_roll_back(comparison, POLICY)
    assert decision is False
    assert "shadow" in reason


def test_too_few_labels_means_no_rollback_with_a_reason() -> None:
    report = _report(_classifier("champion", 95, 100), _classifier("challenger", 50, 100))
    comparison = _only_comparison(report)
    assert comparison["significant"] is True  # the report already sees it...
    decision, reason = should_roll_back(comparison, POLICY)
    assert decision is False  # ...but the policy waits for its minimum of labels
    assert reason == (
        "too few labelled predictions to judge quality: 100 for challenger and 100 for "
        "champion, the policy needs 200 each"
    )


def test_the_policy_uses_its_own_alpha() -> None:
    # p is about 0.02: significant at the report's 0.05, not at the policy's 0.01.
    report = _report(_classifier("champion", 950, 1000), _classifier("challenger", 925, 1000))
    comparison = _only_comparison(report)
    assert comparison["significant"] is True
    assert 0.01 < comparison["p_value"] < 0.05
    assert should_roll_back(comparison, POLICY)[0] is False
    assert should_roll_back(comparison, {**POLICY, "alpha": 0.05})[0] is True


def test_an_error_rate_above_the_threshold_triggers_rollback() -> None:
    report = _report(
        _classifier("champion", 0, 0, requests=500, errors=1),
        _classifier("challenger", 0, 0, requests=500, errors=100),
    )
    comparison = _only_comparison(report)
    policy = {**POLICY, "max_error_rate": 0.05}
    decision, reason = should_roll_back(comparison, policy)
    assert decision is True
    assert reason.startswith(
        "challenger's error rate 20.0% (100 of 500 requests) is significantly above the "
        "policy's maximum of 5.0%"
    )
    # Without a threshold, no labels: nothing to judge yet.
    assert should_roll_back(comparison, POLICY)[0] is False
    # The report itself sees the error-rate difference and says to roll back.
    assert comparison["error_rate"]["direction"] == "worse"
    assert comparison["action"] == "roll_back"
    assert "fails significantly more often" in comparison["recommendation"]


def test_one_early_failure_does_not_trigger_rollback() -> None:
    report = _report(
        _classifier("champion", 0, 0, requests=500),
        _classifier("challenger", 0, 0, requests=1, errors=1),
    )
    decision, reason = should_roll_back(
        _only_comparison(report), {**POLICY, "max_error_rate": 0.05}
    )
    assert decision is False
    assert "not significantly yet" in reason


def test_a_disabled_policy_never_rolls_back() -> None:
    report = _report(_classifier("champion", 475, 500), _classifier("challenger", 300, 500))
    assert should_roll_back(_only_comparison(report), {**POLICY, "enabled": False}) == (
        False,
        "auto-rollback is disabled",
    )


def test_no_labels_yet_asks_for_feedback() -> None:
    report = _report(_classifier("champion", 0, 0), _classifier("challenger", 0, 0))
    comparison = _only_comparison(report)
    assert comparison["p_value"] is None
    assert comparison["significant"] is False
    assert comparison["action"] == "keep_collecting"
    assert "feedback endpoint" in comparison["recommendation"]
    quality = report["variants"][0]["quality"]
    assert quality == {"metric": "accuracy", "value": None, "low": None, "high": None, "n": 0}


def test_variant_summaries() -> None:
    champion = _classifier("champion", 475, 500, requests=1000, errors=10)
    report = _report(champion, _classifier("challenger", 300, 500))
    summary = report["variants"][0]
    assert summary["requests"] == 1000
    assert summary["errors"] == 10
    assert summary["error_rate"]["value"] == 0.01
    assert summary["error_rate"]["low"] < 0.01 < summary["error_rate"]["high"]
    assert summary["latency_ms"] == pytest.approx(
        dict(
            zip(
                ["p50", "p95", "p99"],
                np.percentile(champion.latencies_ms, [50, 95, 99]),
                strict=True,
            )
        )
    )
    assert summary["quality"]["metric"] == "accuracy"
    assert summary["quality"]["value"] == 0.95
    assert summary["quality"]["low"] < 0.95 < summary["quality"]["high"]
    assert (report["baseline"], report["alpha"], report["confidence"]) == ("champion", 0.05, 0.95)


def test_regression_rmse_comparison_finds_the_worse_model() -> None:
    report = _report(
        _regressor("champion", 1.0, 300, seed=1),
        _regressor("challenger", 2.0, 300, seed=2),
        problem="regression",
    )
    rmse = {v["name"]: v["quality"] for v in report["variants"]}
    assert rmse["champion"]["metric"] == "rmse"
    assert rmse["champion"]["low"] < 1.0 < rmse["champion"]["high"]
    assert rmse["challenger"]["low"] < 2.0 < rmse["challenger"]["high"]
    comparison = _only_comparison(report)
    assert comparison["test"] == "Welch's t-test on squared errors"
    assert (comparison["significant"], comparison["direction"]) == (True, "worse")
    assert comparison["action"] == "roll_back"
    assert "RMSE" in comparison["recommendation"]
    assert should_roll_back(comparison, POLICY)[0] is True


def test_regression_equal_models_need_more_data() -> None:
    report = _report(
        _regressor("champion", 1.0, 300, seed=3),
        _regressor("challenger", 1.0, 300, seed=4),
        problem="regression",
    )
    comparison = _only_comparison(report)
    assert comparison["significant"] is False
    assert comparison["action"] == "keep_collecting"
    assert "in mean squared error" in comparison["recommendation"]
    assert should_roll_back(comparison, POLICY)[0] is False


def test_degenerate_values_stay_json_serialisable() -> None:
    # Constant, different squared errors: Welch's statistic is infinite, reported as null.
    champion = VariantSample("champion", 1, False, 3, 0, [], None, 3, [1.0, 1.0, 1.0])
    challenger = VariantSample("challenger", 2, False, 0, 0, [], None, 3, [4.0, 4.0, 4.0])
    report = _report(champion, challenger, problem="regression")
    comparison = _only_comparison(report)
    assert comparison["statistic"] is None
    assert comparison["p_value"] == 0.0
    assert comparison["direction"] == "worse"
    assert comparison["error_rate"]["p_value"] is None  # no requests on one side
    assert report["variants"][1]["latency_ms"] == {"p50": None, "p95": None, "p99": None}


@st.composite
def _samples(draw: st.DrawFn, problem: Problem) -> VariantSample:
    requests = draw(st.integers(0, 300))
    labelled = draw(st.integers(0, 60))
    return VariantSample(
        name=draw(st.text("abcdefghij", min_size=1, max_size=6)),
        model_version=draw(st.none() | st.integers(1, 9)),
        shadow=draw(st.booleans()),
        requests=requests,
        errors=draw(st.integers(0, requests)),
        latencies_ms=draw(st.lists(st.floats(0, 1e4), max_size=30)),
        correct=draw(st.integers(0, labelled)) if problem == "classification" else None,
        labelled=labelled,
        squared_errors=(
            draw(st.lists(st.floats(0, 1e6), min_size=labelled, max_size=labelled))
            if problem == "regression"
            else []
        ),
    )


@settings(max_examples=150, deadline=None)
@given(data=st.data(), problem=st.sampled_from(["classification", "regression"]))
def test_any_report_is_json_and_every_comparison_is_decidable(
    data: st.DataObject, problem: Problem
) -> None:
    variants = data.draw(
        st.lists(_samples(problem), min_size=1, max_size=4, unique_by=lambda v: v.name)
    )
    variants[0] = replace(variants[0], shadow=False)  # the baseline is never a shadow
    report = build_report(variants, baseline=variants[0].name, alpha=0.05, problem=problem)
    json.dumps(report, allow_nan=False)
    assert len(report["comparisons"]) == len(variants) - 1
    for comparison in report["comparisons"]:
        assert comparison["direction"] in {"better", "worse", "no difference"}
        assert comparison["action"] in {
            "roll_back",
            "promote",
            "keep_collecting",
            "no_difference",
            "review",
        }
        assert comparison["recommendation"]
        decision, reason = should_roll_back(comparison, {**POLICY, "max_error_rate": 0.1})
        assert isinstance(decision, bool)
        assert reason
        if comparison["shadow"]:
            assert comparison["action"] not in {"promote", "roll_back"}
            assert not decision


def test_bad_input_is_refused() -> None:
    champion = _classifier("champion", 1, 2)
    with pytest.raises(ValueError, match="not one of the variants"):
        build_report([champion], baseline="other", alpha=0.05, problem="classification")
    with pytest.raises(ValueError, match="unique"):
        build_report([champion, champion], baseline="champion", alpha=0.05, problem="regression")
    with pytest.raises(ValueError, match="shadow"):
        build_report(
            [_classifier("champion", 1, 2, shadow=True)],
            baseline="champion",
            alpha=0.05,
            problem="classification",
        )
    with pytest.raises(ValueError, match="one squared error per labelled row"):
        build_report([champion], baseline="champion", alpha=0.05, problem="regression")
    with pytest.raises(ValueError, match="errors must be between"):
        VariantSample("x", 1, False, requests=1, errors=2)
    with pytest.raises(ValueError, match="correct must be between"):
        VariantSample("x", 1, False, requests=1, errors=0, correct=3, labelled=2)
