from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.ids import parse_uuid

from .models import Dataset, DatasetVersion


async def dataset(
    session: AsyncSession, project_id: uuid.UUID, ref: str, *, for_update: bool = False
) -> Dataset | None:
    """A live dataset of the project, by name or id. Never one of another project."""
    stmt = select(Dataset).where(Dataset.project_id == project_id, Dataset.deleted_at.is_(None))
    dataset_id = parse_uuid(ref)
    stmt = stmt.where(Dataset.id == dataset_id) if dataset_id else stmt.where(Dataset.name == ref)
    if for_update:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def datasets_page(
    session: AsyncSession,
    project_id: uuid.UUID,
    *,
    limit: int,
    offset: int,
    names: frozenset[str] | None = None,
) -> tuple[list[Dataset], int]:
    """One page of the project's datasets; ``names``, when given, keeps only those."""
    stmt = select(Dataset).where(Dataset.project_id == project_id, Dataset.deleted_at.is_(None))
    if names is not None:
        stmt = stmt.where(Dataset.name.in_(sorted(names)))
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(stmt.order_by(Dataset.name).limit(limit).offset(offset))
    return list(rows), total


async def latest_numbers(
    session: AsyncSession, dataset_ids: list[uuid.UUID]
) -> dict[uuid.UUID, int]:
    if not dataset_ids:
        return {}
    rows = await session.execute(
        select(DatasetVersion.dataset_id, func.max(DatasetVersion.number))
        .where(DatasetVersion.dataset_id.in_(dataset_ids), DatasetVersion.deleted_at.is_(None))
        .group_by(DatasetVersion.dataset_id)
    )
    return {dataset_id: number for dataset_id, number in rows.all()}


async def version(
    session: AsyncSession, dataset_id: uuid.UUID, number: int, *, include_deleted: bool = False
) -> DatasetVersion | None:
    stmt = select(DatasetVersion).where(
        DatasetVersion.dataset_id == dataset_id, DatasetVersion.number == number
    )
    if not include_deleted:
        stmt = stmt.where(DatasetVersion.deleted_at.is_(None))
    return await session.scalar(stmt)


async def version_by_hash(
    session: AsyncSession, dataset_id: uuid.UUID, sha256: str
) -> DatasetVersion | None:
    return await session.scalar(
        select(DatasetVersion)
        .where(
            DatasetVersion.dataset_id == dataset_id,
            DatasetVersion.sha256 == sha256,
            DatasetVersion.deleted_at.is_(None),
        )
        .order_by(DatasetVersion.number)
        .limit(1)
    )


async def key_in_use(session: AsyncSession, object_key: str) -> bool:
    return (
        await session.scalar(
            select(func.count())
            .select_from(DatasetVersion)
            .where(DatasetVersion.object_key == object_key)
        )
        or 0
    ) > 0


async def versions_page(
    session: AsyncSession, dataset_id: uuid.UUID, *, include_deleted: bool, limit: int, offset: int
) -> tuple[list[DatasetVersion], int]:
    stmt = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id)
    if not include_deleted:
        stmt = stmt.where(DatasetVersion.deleted_at.is_(None))
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(
        stmt.order_by(DatasetVersion.number.desc()).limit(limit).offset(offset)
    )
    return list(rows), total


async def numbers_by_id(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not ids:
        return {}
    rows = await session.execute(
        select(DatasetVersion.id, DatasetVersion.number).where(DatasetVersion.id.in_(ids))
    )
    return {version_id: number for version_id, number in rows.all()}
