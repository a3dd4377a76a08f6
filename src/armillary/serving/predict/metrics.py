"""Prometheus metrics of predictions, registered once per process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
FEEDBACK = Counter(
    "armillary_serving_feedback_total",
    "Ground-truth rows scored against a variant's logged prediction",
    ["deployment", "variant"],
)
VARIANT_QUALITY = Gauge(
    "armillary_serving_variant_quality",
    "A variant's quality over its latest feedback (a sliding window of rows): `accuracy` "
    "for classifiers, `mae` (mean absolute error) for regressors",
    ["deployment", "variant", "metric"],
)
DRIFT_PSI = Gauge(
    "armillary_serving_drift_psi",
    "Population stability index of a feature: a variant's latest sampled requests against "
    "the training reference stored at registration",
    ["deployment", "variant", "feature"],
)
DRIFT_PSI_MAX = Gauge(
    "armillary_serving_drift_psi_max",
    "The largest feature PSI of a variant's latest sampled requests",
    ["deployment", "variant"],
)
