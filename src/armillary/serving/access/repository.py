from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import ApiKey, Grant


async def keys_page(
    session: AsyncSession, deployment_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[ApiKey], int]:
    stmt = select(ApiKey).where(ApiKey.deployment_id == deployment_id)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(
        stmt.order_by(ApiKey.created_at.desc(), ApiKey.id).limit(limit).offset(offset)
    )
    return list(rows), total


async def key(session: AsyncSession, deployment_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
    return await session.scalar(
        select(ApiKey).where(ApiKey.deployment_id == deployment_id, ApiKey.id == key_id)
    )


async def grant(
    session: AsyncSession, deployment_id: uuid.UUID, user_id: uuid.UUID
) -> Grant | None:
    return await session.scalar(
        select(Grant).where(Grant.deployment_id == deployment_id, Grant.user_id == user_id)
    )


async def grants_page(
    session: AsyncSession, deployment_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[Grant], int]:
    stmt = select(Grant).where(Grant.deployment_id == deployment_id)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(stmt.order_by(Grant.at, Grant.id).limit(limit).offset(offset))
    return list(rows), total
