"""Console settings (prefix ``ARMILLARY_CONSOLE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARMILLARY_CONSOLE_", extra="ignore")

    # Where the console's handlers call the public API. Unset (the embedded shape): the
    # API app that serves the console, in process, through its whole middleware stack. The
    # distributed shape points it at the gateway, e.g. ``https://gateway:8443``.
    api_url: str | None = None
    api_timeout_seconds: float = Field(default=30.0, gt=0)
    # Page size of the console's lists.
    page_size: int = Field(default=25, ge=1, le=200)
