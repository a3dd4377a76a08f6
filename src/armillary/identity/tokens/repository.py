from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import PersonalAccessToken


async def add(session: AsyncSession, token: PersonalAccessToken) -> PersonalAccessToken:
    session.add(token)
    await session.flush()
    return token


async def by_id(session: AsyncSession, token_id: uuid.UUID) -> PersonalAccessToken | None:
    return await session.get(PersonalAccessToken, token_id)


async def is_live(session: AsyncSession, jti_hash: str, user_id: uuid.UUID, now: datetime) -> bool:
    """Whether the token of this ``jti`` hash is the user's, unrevoked and unexpired."""
    found = await session.scalar(
        select(PersonalAccessToken.id).where(
            PersonalAccessToken.jti_hash == jti_hash,
            PersonalAccessToken.user_id == user_id,
            PersonalAccessToken.revoked_at.is_(None),
            PersonalAccessToken.expires_at > now,
        )
    )
    return found is not None


async def page_of_user(
    session: AsyncSession, user_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[PersonalAccessToken], int]:
    mine = PersonalAccessToken.user_id == user_id
    total = await session.scalar(select(func.count()).where(mine)) or 0
    rows = await session.scalars(
        select(PersonalAccessToken)
        .where(mine)
        .order_by(PersonalAccessToken.created_at.desc(), PersonalAccessToken.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total
