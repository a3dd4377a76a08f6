"""The tracking benchmark's arithmetic and report (bench/tracking/report.py): percentiles,
per-call costs, points/s, the ratios against mlflow server and the two targets' verdicts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPORT_PATH = Path(__file__).resolve().parents[3] / "bench" / "tracking" / "report.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tracking_report", REPORT_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tracking_report"] = module
    spec.loader.exec_module(module)
    return module


report = _load()


def results(*, ours_batch: float, theirs_batch: float, sdk_median_us: float) -> dict[str, Any]:
    def side(batch_rate: float, point_rate: float, median_us: float) -> dict[str, Any]:
        per_call = {"calls": 5000, "median_us": median_us, "p99_us": 2 * median_us}
        per_call["mean_us"] = 1.5 * median_us
        return {
            "batch": {"points": 100_000, "points_per_s": batch_rate, "batch_size": 1000},
            "point": {"points": 5000, "points_per_s": point_rate, "per_call": per_call},
        }

    sdk = {
        "calls": 100_000,
        "median_us": sdk_median_us,
        "p99_us": 30.0,
        "mean_us": 3.0,
        "logged": 101_000,
        "read_back": 101_000,
        "sent_during_loop": 80_000,
        "drain_s": 0.5,
    }
    return {
        "armillary": side(ours_batch, 800.0, 1200.0),
        "mlflow": side(theirs_batch, 400.0, 2500.0),
        "sdk": sdk,
    }


def test_percentile_is_nearest_rank() -> None:
    values = [5, 1, 4, 2, 3]
    assert report.percentile(values, 50) == 3
    assert report.percentile(values, 100) == 5
    assert report.percentile(values, 1) == 1
    assert report.percentile(list(range(1, 101)), 99) == 99
    with pytest.raises(ValueError):
        report.percentile([], 50)
    with pytest.raises(ValueError):
        report.percentile(values, 0)


def test_call_costs_are_in_microseconds() -> None:
    costs = report.call_costs_us([1000, 2000, 3000, 4000, 100_000])
    assert costs == {"calls": 5, "median_us": 3.0, "p99_us": 100.0, "mean_us": 22.0}


def test_throughput_refuses_an_empty_or_instant_run() -> None:
    assert report.throughput(1000, 0.5)["points_per_s"] == 2000
    with pytest.raises(ValueError):
        report.throughput(0, 1.0)
    with pytest.raises(ValueError):
        report.throughput(1000, 0.0)


def test_both_targets_met() -> None:
    summary = report.summarise(
        results(ours_batch=30_000.0, theirs_batch=10_000.0, sdk_median_us=20.0)
    )
    assert summary["batch_ratio"] == pytest.approx(3.0)
    assert summary["point_ratio"] == pytest.approx(2.0)
    assert summary["batch_target_met"] is True
    assert summary["sdk_target_met"] is True
    assert summary["mlflow_log_metric_median_us"] == 2500.0


@pytest.mark.parametrize(
    ("ours_batch", "sdk_us", "batch_met", "sdk_met"),
    [(29_999.0, 1.0, False, True), (90_000.0, 20.01, True, False)],
)
def test_each_target_can_be_missed(
    ours_batch: float, sdk_us: float, batch_met: bool, sdk_met: bool
) -> None:
    summary = report.summarise(
        results(ours_batch=ours_batch, theirs_batch=10_000.0, sdk_median_us=sdk_us)
    )
    assert summary["batch_target_met"] is batch_met
    assert summary["sdk_target_met"] is sdk_met


def test_the_markdown_shows_the_figures_and_verdicts() -> None:
    raw = results(ours_batch=25_000.0, theirs_batch=10_000.0, sdk_median_us=0.8)
    text = report.markdown(raw, report.summarise(raw), "Smoke")
    assert text.startswith("### Smoke\n")
    assert "| `log_batch`, 1,000 a call | 100,000 | 25,000 | 10,000 | 2.50x |" in text
    assert "| `mlflow.log_metric`, one point a call | 5,000 | 800 | 400 | 2.00x |" in text
    assert "**2.50x, not met**" in text
    assert "**0.80 µs, met**" in text
    assert "101,000 of 101,000 read back; 80,000 were taken by the sender" in text
