"""The objects the registry's rows own, for ``armillary doctor``: each model version's files."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.storage.doctor import References

from .catalog.models import RegisteredModel
from .versions.models import ModelVersion


async def storage_references(session: AsyncSession) -> References:
    """Every artifact key a model version records (soft-deleted models keep their files)."""
    found = References()
    rows = await session.execute(
        select(RegisteredModel.name, ModelVersion.number, ModelVersion.artifacts).join(
            RegisteredModel, RegisteredModel.id == ModelVersion.model_id
        )
    )
    for model, number, artifacts in rows:
        for name, artifact in (artifacts or {}).items():
            key = artifact.get("key") if isinstance(artifact, dict) else None
            if isinstance(key, str):
                found.keys[key] = f"model {model!r} version {number}: {name}"
    return found
