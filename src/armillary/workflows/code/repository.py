from __future__ import annotations

import uuid

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import CodeBundle


async def latest_bundle(
    session: AsyncSession, project_id: uuid.UUID, name: str
) -> CodeBundle | None:
    """The newest version of the project's bundle ``name``; never one of another project."""
    return await session.scalar(
        select(CodeBundle)
        .where(CodeBundle.project_id == project_id, CodeBundle.name == name)
        .order_by(CodeBundle.version.desc())
        .limit(1)
    )


async def bundles_page(
    session: AsyncSession, project_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[CodeBundle], int]:
    """The latest version of each bundle of the project, by name."""
    latest = (
        select(CodeBundle.name, func.max(CodeBundle.version).label("version"))
        .where(CodeBundle.project_id == project_id)
        .group_by(CodeBundle.name)
        .subquery()
    )
    stmt = (
        select(CodeBundle)
        .join(
            latest,
            (CodeBundle.name == latest.c.name) & (CodeBundle.version == latest.c.version),
        )
        .where(CodeBundle.project_id == project_id)
    )
    total = await session.scalar(select(func.count()).select_from(latest)) or 0
    rows = await session.scalars(stmt.order_by(CodeBundle.name).limit(limit).offset(offset))
    return list(rows), total


async def all_versions(session: AsyncSession, project_id: uuid.UUID, name: str) -> list[CodeBundle]:
    rows = await session.scalars(
        select(CodeBundle)
        .where(CodeBundle.project_id == project_id, CodeBundle.name == name)
        .order_by(CodeBundle.version)
    )
    return list(rows)


async def delete_all_versions(session: AsyncSession, project_id: uuid.UUID, name: str) -> None:
    await session.execute(
        delete(CodeBundle).where(CodeBundle.project_id == project_id, CodeBundle.name == name)
    )
