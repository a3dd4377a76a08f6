"""Serving service settings (prefix ``ARMILLARY_SERVING_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARMILLARY_SERVING_", extra="ignore")

    # Where model files are copied from the object store (default: ARMILLARY_HOME/serving).
    cache_dir: str | None = None
    # A resolved deployment is re-read after this long even without an event (events reach
    # one process; other serving processes catch up within this bound).
    directory_ttl_seconds: float = Field(default=30.0, gt=0)
    # last_used_at of an API key is written at most this often.
    key_touch_interval_seconds: float = Field(default=60.0, ge=0)
    # Predict request bodies above this size are refused (413).
    max_request_bytes: int = Field(default=8 * 1024**2, ge=1024)
    # Micro-batching of concurrent requests to one model.
    max_batch_rows: int = Field(default=256, ge=1)
    max_batch_wait_ms: float = Field(default=2.0, ge=0)
    # Loaded models kept per process.
    max_models: int = Field(default=32, ge=1)
    # Share of requests whose inputs and outputs are written to the object store (0..1).
    sample_rate: float = Field(default=0.0, ge=0, le=1)
