"""Tracking service settings (prefix ``ARMILLARY_TRACKING_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrackingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARMILLARY_TRACKING_", extra="ignore")

    # MLflow's own limits for a search page (SearchRuns / SearchExperiments).
    default_search_results: int = Field(default=1000, ge=1)
    max_search_results: int = Field(default=50_000, ge=1)
    # Points per page of metrics/get-history when the client asks for no page size: MLflow's
    # client asks for the whole history at once, so this only bounds one response.
    max_history_results: int = Field(default=250_000, ge=1)
