from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..catalog.models import RegisteredModel
from .models import ModelVersion, VersionDataset


async def version(session: AsyncSession, model_id: uuid.UUID, number: int) -> ModelVersion | None:
    return await session.scalar(
        select(ModelVersion).where(ModelVersion.model_id == model_id, ModelVersion.number == number)
    )


async def latest(session: AsyncSession, model_id: uuid.UUID) -> ModelVersion | None:
    return await session.scalar(
        select(ModelVersion)
        .where(ModelVersion.model_id == model_id)
        .order_by(ModelVersion.number.desc())
        .limit(1)
    )


async def by_numbers(
    session: AsyncSession, model_id: uuid.UUID, numbers: list[int]
) -> dict[int, ModelVersion]:
    rows = await session.scalars(
        select(ModelVersion).where(
            ModelVersion.model_id == model_id, ModelVersion.number.in_(numbers)
        )
    )
    return {row.number: row for row in rows}


async def versions_page(
    session: AsyncSession,
    model_id: uuid.UUID,
    *,
    order: list[Any],
    tag: tuple[str, str | None] | None,
    limit: int,
    offset: int,
) -> tuple[list[ModelVersion], int]:
    stmt = select(ModelVersion).where(ModelVersion.model_id == model_id)
    if tag is not None:
        key, value = tag
        found = ModelVersion.tags[key].as_string()
        stmt = stmt.where(found.is_not(None) if value is None else found == value)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(stmt.order_by(*order).limit(limit).offset(offset))
    return list(rows), total


async def datasets_of(
    session: AsyncSession, version_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[VersionDataset]]:
    found: dict[uuid.UUID, list[VersionDataset]] = defaultdict(list)
    if not version_ids:
        return found
    rows = await session.scalars(
        select(VersionDataset)
        .where(VersionDataset.model_version_id.in_(version_ids))
        .order_by(VersionDataset.dataset_name, VersionDataset.dataset_version)
    )
    for row in rows:
        found[row.model_version_id].append(row)
    return found


async def trained_on_page(
    session: AsyncSession,
    project_id: uuid.UUID,
    *,
    dataset_id: uuid.UUID | None,
    dataset_name: str | None,
    dataset_version: int,
    limit: int,
    offset: int,
) -> tuple[list[tuple[VersionDataset, ModelVersion, RegisteredModel]], int]:
    """Live models' versions that used a dataset version (by id, or by name if unknown)."""
    stmt = (
        select(VersionDataset, ModelVersion, RegisteredModel)
        .join(ModelVersion, ModelVersion.id == VersionDataset.model_version_id)
        .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
        .where(
            VersionDataset.project_id == project_id,
            VersionDataset.dataset_version == dataset_version,
            RegisteredModel.deleted_at.is_(None),
        )
    )
    if dataset_id is not None:
        stmt = stmt.where(VersionDataset.dataset_id == dataset_id)
    else:
        stmt = stmt.where(VersionDataset.dataset_name == dataset_name)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.execute(
        stmt.order_by(ModelVersion.created_at.desc(), VersionDataset.role)
        .limit(limit)
        .offset(offset)
    )
    return [(d, v, m) for d, v, m in rows.all()], total
