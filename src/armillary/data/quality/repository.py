from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import QualityReport

_NEWEST_FIRST = (QualityReport.created_at.desc(), QualityReport.id.desc())


async def latest(session: AsyncSession, version_id: uuid.UUID) -> QualityReport | None:
    return await session.scalar(
        select(QualityReport)
        .where(QualityReport.version_id == version_id)
        .order_by(*_NEWEST_FIRST)
        .limit(1)
    )


async def page(
    session: AsyncSession, version_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[QualityReport], int]:
    stmt = select(QualityReport).where(QualityReport.version_id == version_id)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(stmt.order_by(*_NEWEST_FIRST).limit(limit).offset(offset))
    return list(rows), total
