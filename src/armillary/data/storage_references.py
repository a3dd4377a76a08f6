"""The objects the data service's rows own, for ``armillary doctor``: dataset versions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.storage.doctor import References

from .datasets.models import Dataset, DatasetVersion


async def storage_references(session: AsyncSession) -> References:
    """Every dataset version's object, soft-deleted ones too (their bytes stay for lineage)."""
    rows = await session.execute(
        select(Dataset.name, DatasetVersion.number, DatasetVersion.object_key).join(
            Dataset, Dataset.id == DatasetVersion.dataset_id
        )
    )
    return References(
        keys={key: f"dataset {name!r} version {number}" for name, number, key in rows}
    )
