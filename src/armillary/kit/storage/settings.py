"""Object-store settings from the environment (prefix ``ARMILLARY_STORAGE_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from armillary.kit.secret_sources import SecretSourcedSettings

MIB = 1024 * 1024
# S3 rejects multipart parts smaller than this (except the last one).
S3_MIN_PART_SIZE = 5 * MIB


def default_local_root(home: Path) -> Path:
    """Where the local backend keeps objects when ``local_root`` is not set: ``<home>/objects``."""
    return home / "objects"


class StorageSettings(SecretSourcedSettings):
    """Which object store to use and how; passed explicitly to the storage factory and admin.
    The S3 keys may come from AWS Secrets Manager or a file (``kit.secret_sources``)."""

    model_config = SettingsConfigDict(env_prefix="ARMILLARY_STORAGE_", extra="ignore")
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"s3_access_key_id", "s3_secret_access_key"}
    )

    backend: Literal["local", "s3"] = "local"
    local_root: Path | None = None

    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    # Unset credentials fall back to the standard AWS chain (env, profile, instance role).
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_allow_http: bool = False
    # A private CA the S3 endpoint's certificate is signed by (added to the system's roots).
    s3_ca_file: Path | None = None

    multipart_threshold_bytes: int = Field(default=64 * MIB, ge=S3_MIN_PART_SIZE)
    part_size: int = Field(default=16 * MIB, ge=S3_MIN_PART_SIZE)
    # Parts in flight per upload: memory per upload is about part_size * upload_concurrency.
    upload_concurrency: int = Field(default=4, ge=1, le=64)
    presign_ttl_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    kms_key_id: str | None = None

    # The object_store default is a 30 s limit on the whole request, which kills large
    # streaming downloads; bound the connect phase and idle reads instead.
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    read_timeout_seconds: float = Field(default=60.0, gt=0)
    request_timeout_seconds: float = Field(default=3600.0, gt=0)

    # S3 refuses a STANDARD_IA transition earlier than 30 days after creation.
    processed_to_ia_days: int = Field(default=30, ge=30)
    noncurrent_expire_days: int = Field(default=90, ge=1)
    abort_multipart_days: int = Field(default=7, ge=1)

    def presigned_origins(self) -> frozenset[str] | None:
        """The ``scheme://host:port`` the store's presigned URLs point at, when the operator
        configured an endpoint (a MinIO or other store, often on a private network, which a
        sandbox's proxies may then reach); None: AWS itself, or the API (local backend)."""
        if self.backend != "s3" or not self.s3_endpoint_url:
            return None
        parts = urlsplit(self.s3_endpoint_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return frozenset(
            {f"{parts.scheme}://{parts.hostname}:{port}", f"{parts.scheme}://{parts.netloc}"}
        )

    @model_validator(mode="after")
    def _check_s3(self) -> StorageSettings:
        if self.backend != "s3":
            return self
        if not self.s3_bucket:
            raise ValueError("ARMILLARY_STORAGE_S3_BUCKET is required for the s3 backend")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError(
                "set both ARMILLARY_STORAGE_S3_ACCESS_KEY_ID and "
                "ARMILLARY_STORAGE_S3_SECRET_ACCESS_KEY, or neither"
            )
        if self.s3_endpoint_url is not None:
            scheme = urlsplit(self.s3_endpoint_url).scheme
            if scheme not in ("http", "https"):
                raise ValueError("ARMILLARY_STORAGE_S3_ENDPOINT_URL must be an http(s) URL")
            # Fail at start-up rather than on the first request with a transport error.
            if scheme == "http" and not self.s3_allow_http:
                raise ValueError(
                    "ARMILLARY_STORAGE_S3_ENDPOINT_URL is plain http; "
                    "set ARMILLARY_STORAGE_S3_ALLOW_HTTP=true to allow it"
                )
        return self

    def resolved_local_root(self, home: Path) -> Path:
        """The local backend's root directory, defaulting under the platform's home."""
        return self.local_root if self.local_root is not None else default_local_root(home)

    @property
    def bucket(self) -> str:
        """The configured bucket name; only meaningful for the s3 backend."""
        if not self.s3_bucket:
            raise ValueError("ARMILLARY_STORAGE_S3_BUCKET is not set")
        return self.s3_bucket
