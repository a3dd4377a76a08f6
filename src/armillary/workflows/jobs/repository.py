"""Queries over jobs and their task runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from ..definitions.models import Workflow
from .models import Job, TaskRun


@dataclass(frozen=True)
class JobFilters:
    """History filters; ``None`` means any. ``until`` is exclusive."""

    status: str | None = None
    workflow: str | None = None
    trigger: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def job_with_tasks(
    session: AsyncSession, job_id: uuid.UUID, *, for_update: bool = False
) -> tuple[Job, str] | None:
    """The job, its task runs loaded, and its workflow's name."""
    stmt = (
        select(Job, Workflow.name)
        .join(Workflow, Workflow.id == Job.workflow_id)
        .where(Job.id == job_id)
        .options(selectinload(Job.task_runs).selectinload(TaskRun.attempts))
    )
    if for_update:
        stmt = stmt.with_for_update(of=Job)
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1])


async def job_by_key(session: AsyncSession, workflow_id: uuid.UUID, key: str) -> Job | None:
    """The job an idempotency key started on this workflow, task runs loaded."""
    return await session.scalar(
        select(Job)
        .where(Job.workflow_id == workflow_id, Job.idempotency_key == key)
        .options(selectinload(Job.task_runs).selectinload(TaskRun.attempts))
    )


async def jobs_page(
    session: AsyncSession,
    project_id: uuid.UUID,
    filters: JobFilters,
    *,
    limit: int,
    offset: int,
) -> tuple[list[tuple[Job, str]], int]:
    """A project's jobs, newest first, with their workflow's name."""
    stmt = (
        select(Job, Workflow.name)
        .join(Workflow, Workflow.id == Job.workflow_id)
        .where(Job.project_id == project_id)
    )
    if filters.status is not None:
        stmt = stmt.where(Job.status == filters.status)
    if filters.workflow is not None:
        stmt = stmt.where(Workflow.name == filters.workflow)
    if filters.trigger is not None:
        stmt = stmt.where(Job.trigger == filters.trigger)
    if filters.since is not None:
        stmt = stmt.where(Job.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(Job.created_at < filters.until)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.execute(
        stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset)
    )
    return [(job, name) for job, name in rows.all()], total


async def upstream_outputs(
    session: AsyncSession, runs: Iterable[TaskRun]
) -> dict[tuple[uuid.UUID, str], dict[str, Any]]:
    """The outputs of the tasks ``runs`` need, by (job id, task name), in one query."""
    wanted = {(run.job_id, need) for run in runs for need in run.needs or []}
    if not wanted:
        return {}
    rows = await session.execute(
        select(TaskRun.job_id, TaskRun.name, TaskRun.outputs).where(
            TaskRun.job_id.in_({job_id for job_id, _ in wanted}),
            TaskRun.name.in_({name for _, name in wanted}),
        )
    )
    return {
        (job_id, name): outputs or {} for job_id, name, outputs in rows if (job_id, name) in wanted
    }
