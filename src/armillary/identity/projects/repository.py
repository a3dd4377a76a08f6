from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from armillary.kit.ids import parse_uuid

from ..users.models import User
from .models import Membership, Project


async def by_slug_or_id(session: AsyncSession, ref: str) -> Project | None:
    project_id = parse_uuid(ref)
    if project_id is not None:
        return await session.get(Project, project_id)
    return await session.scalar(select(Project).where(Project.slug == ref))


async def project_fields(
    connection: AsyncConnection, project_id: uuid.UUID
) -> dict[str, Any] | None:
    """The project's columns by id, read with a Core query (the hot path of project pages)."""
    result = await connection.execute(
        select(*Project.__table__.columns).where(Project.id == project_id)
    )
    row = result.mappings().first()
    return dict(row) if row is not None else None


async def membership(
    session: AsyncSession, project_id: uuid.UUID, user_id: uuid.UUID
) -> Membership | None:
    return await session.get(Membership, (project_id, user_id))


def _visible(user_id: uuid.UUID | None, only: uuid.UUID | None = None) -> Select[Project]:
    stmt = select(Project)
    if only is not None:
        stmt = stmt.where(Project.id == only)
    if user_id is not None:
        stmt = stmt.join(Membership, Membership.project_id == Project.id).where(
            Membership.user_id == user_id
        )
    return stmt


async def page_visible(
    session: AsyncSession,
    user_id: uuid.UUID | None,
    *,
    limit: int,
    offset: int,
    only: uuid.UUID | None = None,
) -> tuple[list[Project], int]:
    """Projects the user is a member of (all of them when ``user_id`` is None: admins),
    restricted to project ``only`` when given (a job token's project)."""
    stmt = _visible(user_id, only)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(stmt.order_by(Project.slug).limit(limit).offset(offset))
    return list(rows), total


async def members(session: AsyncSession, project_id: uuid.UUID) -> list[tuple[Membership, User]]:
    rows = await session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.project_id == project_id)
        .order_by(User.email)
    )
    return [(m, u) for m, u in rows.all()]


async def count_owners(session: AsyncSession, project_id: uuid.UUID) -> int:
    return (
        await session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.project_id == project_id, Membership.role == "owner")
        )
        or 0
    )


async def member_ids(session: AsyncSession, project_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        await session.scalars(select(Membership.user_id).where(Membership.project_id == project_id))
    )
