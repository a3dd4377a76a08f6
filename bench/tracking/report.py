"""The tracking benchmark's arithmetic and report: pure standard library, so both sides import
it (MLflow's peer environment runs bench/tracking/client.py, Armillary's runs the rest)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# Issue 20's targets.
BATCH_RATIO_TARGET = 3.0  # Armillary's batched points/s >= 3x mlflow server's
SDK_CALL_TARGET_US = 20.0  # armillary.tracking.log_metrics: median cost of one call


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``."""
    if not values:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is not in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(len(ordered) * q / 100)
    return float(ordered[rank - 1])


def call_costs_us(timings_ns: Sequence[int]) -> dict[str, float]:
    """Per-call cost, in microseconds, from each call's duration in nanoseconds."""
    return {
        "calls": len(timings_ns),
        "median_us": percentile(timings_ns, 50) / 1000,
        "p99_us": percentile(timings_ns, 99) / 1000,
        "mean_us": sum(timings_ns) / len(timings_ns) / 1000,
    }


def throughput(points: int, seconds: float) -> dict[str, float]:
    if points <= 0 or seconds <= 0:
        raise ValueError(f"cannot rate {points} points in {seconds} s")
    return {"points": points, "seconds": seconds, "points_per_s": points / seconds}


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios and verdicts from the raw results: ``results[side][mode]`` with ``points_per_s``
    for side in (armillary, mlflow) and mode in (batch, point); ``results["sdk"]`` with
    ``median_us``; MLflow's per-call cost in ``results[side]["point"]["per_call"]``."""
    ours, theirs = results["armillary"], results["mlflow"]
    batch_ratio = ours["batch"]["points_per_s"] / theirs["batch"]["points_per_s"]
    point_ratio = ours["point"]["points_per_s"] / theirs["point"]["points_per_s"]
    sdk_us = results["sdk"]["median_us"]
    return {
        "batch_ratio": batch_ratio,
        "point_ratio": point_ratio,
        "batch_target_met": batch_ratio >= BATCH_RATIO_TARGET,
        "sdk_median_us": sdk_us,
        "sdk_target_met": sdk_us <= SDK_CALL_TARGET_US,
        "mlflow_log_metric_median_us": theirs["point"]["per_call"]["median_us"],
    }


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def markdown(results: dict[str, Any], summary: dict[str, Any], title: str) -> str:
    """The results as a Markdown section (tables and the two targets)."""
    ours, theirs, sdk = results["armillary"], results["mlflow"], results["sdk"]
    met = {True: "met", False: "not met"}
    lines = [
        f"### {title}",
        "",
        "| logging through MLflow's client | points | Armillary points/s | "
        "mlflow server points/s | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode, label, ratio in (
        ("batch", f"`log_batch`, {ours['batch']['batch_size']:,} a call", "batch_ratio"),
        ("point", "`mlflow.log_metric`, one point a call", "point_ratio"),
    ):
        lines.append(
            f"| {label} | {ours[mode]['points']:,} | {_rate(ours[mode]['points_per_s'])} "
            f"| {_rate(theirs[mode]['points_per_s'])} | {summary[ratio]:.2f}x |"
        )
    lines += [
        "",
        "| one call in a training loop | median µs | p99 µs | mean µs | calls |",
        "|---|---:|---:|---:|---:|",
        f"| `armillary.tracking.log_metrics` (queues; sender running) | {sdk['median_us']:.2f} "
        f"| {sdk['p99_us']:.2f} | {sdk['mean_us']:.2f} | {sdk['calls']:,} |",
    ]
    for side, name in ((theirs, "mlflow server"), (ours, "Armillary")):
        cost = side["point"]["per_call"]
        lines.append(
            f"| `mlflow.log_metric` into {name} (synchronous) | {cost['median_us']:.0f} "
            f"| {cost['p99_us']:.0f} | {cost['mean_us']:.0f} | {cost['calls']:,} |"
        )
    lines += [
        "",
        f"The SDK's points reached the server: {sdk['read_back']:,} of {sdk['logged']:,} read "
        f"back; {sdk['sent_during_loop']:,} were taken by the sender while the loop ran, the rest when the run "
        f"ended ({sdk['drain_s']:.2f} s).",
        "",
        f"- Batched logging ≥ {BATCH_RATIO_TARGET:g}x mlflow server: "
        f"**{summary['batch_ratio']:.2f}x, {met[summary['batch_target_met']]}**.",
        f"- SDK per-call overhead ≤ {SDK_CALL_TARGET_US:g} µs (median): "
        f"**{summary['sdk_median_us']:.2f} µs, {met[summary['sdk_target_met']]}** "
        f"(MLflow's `log_metric`: {summary['mlflow_log_metric_median_us']:.0f} µs).",
        "",
    ]
    return "\n".join(lines)
