"""Holds as the API shows them."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel

from ..datasets.schemas import VersionDetail


class HoldOut(BaseModel):
    """A registered model version trained or evaluated on the dataset version."""

    model: str
    version: int
    model_version_id: UUID


class HeldVersionDetail(VersionDetail):
    holds: list[HoldOut]
