from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import AuditRecord


async def page(
    session: AsyncSession,
    *,
    actor_id: UUID | None,
    action: str | None,
    resource_type: str | None,
    resource_id: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[AuditRecord], int]:
    stmt = select(AuditRecord)
    if actor_id is not None:
        stmt = stmt.where(AuditRecord.actor_id == actor_id)
    if action is not None:
        stmt = stmt.where(AuditRecord.action == action)
    if resource_type is not None:
        stmt = stmt.where(AuditRecord.resource_type == resource_type)
    if resource_id is not None:
        stmt = stmt.where(AuditRecord.resource_id == resource_id)
    if since is not None:
        stmt = stmt.where(AuditRecord.occurred_at >= since)
    if until is not None:
        stmt = stmt.where(AuditRecord.occurred_at < until)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(stmt.order_by(AuditRecord.seq.desc()).limit(limit).offset(offset))
    return list(rows), total
