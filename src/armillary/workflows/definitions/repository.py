from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.ids import parse_uuid

from .models import Workflow, WorkflowVersion


async def workflow(
    session: AsyncSession, project_id: uuid.UUID, ref: str, *, for_update: bool = False
) -> Workflow | None:
    """A live workflow of the project, by name or id. Never one of another project."""
    stmt = select(Workflow).where(Workflow.project_id == project_id, Workflow.deleted_at.is_(None))
    workflow_id = parse_uuid(ref)
    stmt = (
        stmt.where(Workflow.id == workflow_id) if workflow_id else stmt.where(Workflow.name == ref)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def workflows_page(
    session: AsyncSession, project_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[Workflow], int]:
    stmt = select(Workflow).where(Workflow.project_id == project_id, Workflow.deleted_at.is_(None))
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(stmt.order_by(Workflow.name).limit(limit).offset(offset))
    return list(rows), total


async def version(
    session: AsyncSession, workflow_id: uuid.UUID, number: int
) -> WorkflowVersion | None:
    return await session.scalar(
        select(WorkflowVersion).where(
            WorkflowVersion.workflow_id == workflow_id, WorkflowVersion.number == number
        )
    )


async def versions_page(
    session: AsyncSession, workflow_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[WorkflowVersion], int]:
    stmt = select(WorkflowVersion).where(WorkflowVersion.workflow_id == workflow_id)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(
        stmt.order_by(WorkflowVersion.number.desc()).limit(limit).offset(offset)
    )
    return list(rows), total
