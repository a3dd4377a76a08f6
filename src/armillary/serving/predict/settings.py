"""Settings of the prediction log, shadows and analysis (prefix ``ARMILLARY_SERVING_PREDICT_``).

Body size, micro-batching, the model cache and the sample rate are the service's own
:class:`~armillary.serving.settings.ServingSettings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PredictSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARMILLARY_SERVING_PREDICT_", extra="ignore")

    # Prediction log: one multi-row INSERT per interval or per batch of rows.
    log_flush_ms: float = Field(default=200.0, gt=0, le=60_000)
    log_batch_rows: int = Field(default=500, ge=1, le=100_000)
    # Rows waiting to be written; past this, rows are dropped (and counted), never waited on.
    log_queue_rows: int = Field(default=50_000, ge=1)
    # Outputs kept per logged prediction (feedback on later rows cannot be scored).
    log_max_outputs: int = Field(default=1_000, ge=1, le=100_000)
    # Shadow calls running at once; past this a shadow copy is skipped (and counted).
    max_shadow_in_flight: int = Field(default=256, ge=1)
    # ONNX batches up to this many rows run on the event loop (a thread hop costs more than a
    # small ONNX call) while the model's batches that small are measured to take at most
    # `inline_onnx_max_ms` of CPU; 0 rows sends every batch to a thread.
    inline_onnx_max_rows: int = Field(default=16, ge=0, le=1024)
    inline_onnx_max_ms: float = Field(default=0.25, ge=0, le=10)
    # Auto-rollback is evaluated at most once per this many seconds per deployment.
    rollback_debounce_seconds: float = Field(default=30.0, ge=0)
    # Significance level of the analysis report (the policy brings its own for rollbacks).
    analysis_alpha: float = Field(default=0.05, gt=0, lt=1)
    # Latest predictions per variant whose latencies the analysis reads.
    analysis_max_latencies: int = Field(default=100_000, ge=100)
    # Per-variant quality gauges read this many of its latest feedback rows.
    quality_window_rows: int = Field(default=500, ge=1, le=100_000)
    # Drift: PSI of each variant's last `drift_window_rows` sampled rows against the training
    # reference, computed every `drift_interval_seconds` by each serving process (ADR 0032).
    drift_interval_seconds: float = Field(default=300.0, gt=0)
    drift_window_rows: int = Field(default=1_000, ge=10, le=100_000)
    # Fewer sampled rows than this and a variant's drift is not reported.
    drift_min_rows: int = Field(default=100, ge=1)
