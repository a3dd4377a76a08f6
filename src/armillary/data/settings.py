"""Data service settings (prefix ``ARMILLARY_DATA_``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class DataSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARMILLARY_DATA_", extra="ignore")

    max_upload_bytes: int = 5 * 1024**3
    # Files up to this size are profiled before the upload is answered; larger ones in the
    # background (the version shows ``profile_status``).
    profile_inline_max_bytes: int = 64 * 1024**2
    # Text files up to this size are parsed into the profiler's memory once; larger ones are
    # staged as Parquet beside the spool file so that any size profiles in bounded memory.
    profile_in_memory_max_bytes: int = 1024**3
    profile_timeout_seconds: float = 3600.0
    profile_threads: int = 2
    spool_dir: str | None = None
    download_link_ttl_seconds: int = 900
    # S3 buckets outside the platform's own whose objects may be ingested (presigned GETs for
    # tasks). ``ARMILLARY_DATA_INGEST_ALLOWED_BUCKETS`` is a JSON list or comma-separated;
    # empty allows none.
    ingest_allowed_buckets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ingest_presign_ttl_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)

    @field_validator("ingest_allowed_buckets", mode="before")
    @classmethod
    def _bucket_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [name.strip() for name in text.split(",") if name.strip()]
