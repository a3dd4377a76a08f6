"""Queries over holds."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..datasets.models import Dataset, DatasetVersion
from .models import DatasetHold


async def lock_dataset(session: AsyncSession, dataset_id: uuid.UUID) -> Dataset | None:
    """The dataset (live or deleted), row-locked: holds are added and checked under the same
    lock as deletions, so a delete never misses a hold being recorded."""
    return await session.scalar(select(Dataset).where(Dataset.id == dataset_id).with_for_update())


async def version(
    session: AsyncSession, dataset_id: uuid.UUID, number: int
) -> DatasetVersion | None:
    """Version ``number`` of the dataset, deleted or not."""
    return await session.scalar(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset_id, DatasetVersion.number == number
        )
    )


async def exists(session: AsyncSession, version_id: uuid.UUID, model_version_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(DatasetHold.id).where(
            DatasetHold.version_id == version_id,
            DatasetHold.model_version_id == model_version_id,
        )
    )
    return found is not None


async def of_versions(
    session: AsyncSession, version_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[DatasetHold]]:
    """The holds on each of ``version_ids``, oldest first."""
    ids = set(version_ids)
    if not ids:
        return {}
    rows = await session.scalars(
        select(DatasetHold)
        .where(DatasetHold.version_id.in_(ids))
        .order_by(DatasetHold.created_at, DatasetHold.model, DatasetHold.model_version)
    )
    found: dict[uuid.UUID, list[DatasetHold]] = defaultdict(list)
    for hold in rows:
        found[hold.version_id].append(hold)
    return dict(found)


async def on_live_versions(
    session: AsyncSession, dataset_id: uuid.UUID
) -> list[tuple[DatasetHold, int]]:
    """The holds on the dataset's live versions, with each version's number."""
    rows = await session.execute(
        select(DatasetHold, DatasetVersion.number)
        .join(DatasetVersion, DatasetVersion.id == DatasetHold.version_id)
        .where(DatasetVersion.dataset_id == dataset_id, DatasetVersion.deleted_at.is_(None))
        .order_by(DatasetVersion.number, DatasetHold.model, DatasetHold.model_version)
    )
    return [(hold, number) for hold, number in rows.all()]
