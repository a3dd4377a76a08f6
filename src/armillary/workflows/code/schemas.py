from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict

from .zipcheck import MIB, Limits

#: Bundle names: lowercase, safe as a path segment and as a Python identifier-ish handle.
NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"


class BundleKind(StrEnum):
    PY = "py"
    ZIP = "zip"


class CodeSettings(BaseSettings):
    """Limits on code bundles (prefix ``ARMILLARY_WORKFLOWS_CODE_``)."""

    model_config = SettingsConfigDict(env_prefix="ARMILLARY_WORKFLOWS_CODE_", extra="ignore")

    max_bundle_bytes: int = 20 * MIB
    max_uncompressed_bytes: int = 200 * MIB
    max_entries: int = 10_000
    max_ratio: float = 100.0

    def limits(self) -> Limits:
        return Limits(
            max_entries=self.max_entries,
            max_uncompressed_bytes=self.max_uncompressed_bytes,
            max_ratio=self.max_ratio,
        )


class BundleOut(BaseModel):
    id: UUID
    name: str
    version: int
    kind: BundleKind
    sha256: str
    size_bytes: int
    entries: int
    created_by: UUID
    created_at: datetime
