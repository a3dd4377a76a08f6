from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.ids import parse_uuid

from ..aliases.models import Alias
from ..versions.models import ModelVersion
from .models import RegisteredModel


async def model(
    session: AsyncSession, project_id: uuid.UUID, ref: str, *, for_update: bool = False
) -> RegisteredModel | None:
    """A live model of the project, by name or id. Never one of another project."""
    stmt = select(RegisteredModel).where(
        RegisteredModel.project_id == project_id, RegisteredModel.deleted_at.is_(None)
    )
    model_id = parse_uuid(ref)
    stmt = (
        stmt.where(RegisteredModel.id == model_id)
        if model_id
        else stmt.where(RegisteredModel.name == ref)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def models_page(
    session: AsyncSession,
    project_id: uuid.UUID,
    *,
    prefix: str | None,
    tag: tuple[str, str | None] | None,
    limit: int,
    offset: int,
) -> tuple[list[RegisteredModel], int]:
    stmt = select(RegisteredModel).where(
        RegisteredModel.project_id == project_id, RegisteredModel.deleted_at.is_(None)
    )
    if prefix:
        stmt = stmt.where(RegisteredModel.name.startswith(prefix, autoescape=True))
    if tag is not None:
        key, value = tag
        found = RegisteredModel.tags[key].as_string()
        stmt = stmt.where(found.is_not(None) if value is None else found == value)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(stmt.order_by(RegisteredModel.name).limit(limit).offset(offset))
    return list(rows), total


async def latest_numbers(session: AsyncSession, model_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not model_ids:
        return {}
    rows = await session.execute(
        select(ModelVersion.model_id, func.max(ModelVersion.number))
        .where(ModelVersion.model_id.in_(model_ids))
        .group_by(ModelVersion.model_id)
    )
    return {model_id: number for model_id, number in rows.all()}


async def alias_numbers(
    session: AsyncSession, model_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    found: dict[uuid.UUID, dict[str, int]] = {m: {} for m in model_ids}
    if not model_ids:
        return found
    rows = await session.execute(
        select(Alias.model_id, Alias.name, ModelVersion.number)
        .join(ModelVersion, ModelVersion.id == Alias.model_version_id)
        .where(Alias.model_id.in_(model_ids))
        .order_by(Alias.name)
    )
    for model_id, name, number in rows.all():
        found[model_id][name] = number
    return found
