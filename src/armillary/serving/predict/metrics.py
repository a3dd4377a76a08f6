"""Prometheus metrics of predictions, registered once per process."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "armillary_predictions_total",
    "Prediction requests answered, by deployment ({project}.{name}), variant and outcome",
    ["deployment", "variant", "outcome"],
)
LATENCY = Histogram(
    "armillary_prediction_duration_seconds",
    "Time to compute a prediction (decode, model, encode)",
    ["deployment", "variant"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_ROWS = Histogram(
    "armillary_prediction_batch_rows",
    "Rows per model call after micro-batching",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
SHADOW_REQUESTS = Counter(
    "armillary_shadow_predictions_total",
    "Copies of requests sent to a shadow variant, by outcome (ok, error, skipped)",
    ["deployment", "outcome"],
)
LOG_ROWS_DROPPED = Counter(
    "armillary_prediction_log_dropped_total",
    "Prediction log rows dropped because the writer's queue was full or a write failed",
)
SAMPLES_WRITTEN = Counter(
    "armillary_prediction_samples_total", "Requests sampled to the object store", ["outcome"]
)
ROLLBACKS = Counter(
    "armillary_auto_rollbacks_total", "Variants removed by the auto-rollback policy"
)
