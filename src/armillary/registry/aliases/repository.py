from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Alias, AliasMove


async def alias(session: AsyncSession, model_id: uuid.UUID, name: str) -> Alias | None:
    return await session.scalar(select(Alias).where(Alias.model_id == model_id, Alias.name == name))


async def aliases(session: AsyncSession, model_id: uuid.UUID) -> list[Alias]:
    rows = await session.scalars(
        select(Alias).where(Alias.model_id == model_id).order_by(Alias.name)
    )
    return list(rows)


async def moves(session: AsyncSession, model_id: uuid.UUID, name: str) -> list[AliasMove]:
    rows = await session.scalars(
        select(AliasMove)
        .where(AliasMove.model_id == model_id, AliasMove.alias == name)
        .order_by(AliasMove.seq)
    )
    return list(rows)


async def move_at(
    session: AsyncSession, model_id: uuid.UUID, name: str, at: datetime
) -> AliasMove | None:
    """The last move of the alias made at or before ``at``."""
    return await session.scalar(
        select(AliasMove)
        .where(AliasMove.model_id == model_id, AliasMove.alias == name, AliasMove.at <= at)
        .order_by(AliasMove.at.desc(), AliasMove.seq.desc())
        .limit(1)
    )


async def moves_page(
    session: AsyncSession, model_id: uuid.UUID, name: str, *, limit: int, offset: int
) -> tuple[list[AliasMove], int]:
    stmt = select(AliasMove).where(AliasMove.model_id == model_id, AliasMove.alias == name)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(stmt.order_by(AliasMove.seq.desc()).limit(limit).offset(offset))
    return list(rows), total
