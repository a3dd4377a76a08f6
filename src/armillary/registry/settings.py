"""Registry service settings (prefix ``ARMILLARY_REGISTRY_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARMILLARY_REGISTRY_", extra="ignore")

    # A model file uploaded by a user.
    max_upload_bytes: int = Field(default=1024**3, ge=1)
    # Each artifact copied from a job into a model version.
    max_artifact_bytes: int = Field(default=2 * 1024**3, ge=1)
    # Small JSON artifacts (signature, environment) read by the server itself.
    max_json_artifact_bytes: int = Field(default=1024**2, ge=1)
    # Where uploads and copied artifacts are staged while they are checked.
    spool_dir: str | None = None
