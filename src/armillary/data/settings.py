"""Data service settings (prefix ``ARMILLARY_DATA_``)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


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
