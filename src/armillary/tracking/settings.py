"""Tracking service settings (prefix ``ARMILLARY_TRACKING_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .wire import MAX_HISTORY_RESULTS, MAX_SEARCH_RESULTS


class TrackingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARMILLARY_TRACKING_", extra="ignore")

    # MLflow's own limits for a search page (SearchRuns / SearchExperiments).
    default_search_results: int = Field(default=1000, ge=1, le=MAX_SEARCH_RESULTS)
    max_search_results: int = Field(default=MAX_SEARCH_RESULTS, ge=1, le=MAX_SEARCH_RESULTS)
    # Points per page of metrics/get-history when the client asks for no page size (MLflow's
    # client asks for 25,000 a page and follows the pages).
    max_history_results: int = Field(default=MAX_HISTORY_RESULTS, ge=1, le=MAX_HISTORY_RESULTS)
    # The largest file one artifact upload may store (MLflow's client sends one file a PUT).
    max_artifact_bytes: int = Field(default=5 * 1024**3, ge=1)
