"""Queries over jobs and their task runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from ..definitions.models import Workflow
from .models import Job, TaskAttempt, TaskRun, TaskState


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


async def task_run_ref(
    session: AsyncSession, job_id: uuid.UUID, task: str
) -> tuple[uuid.UUID, uuid.UUID | None] | None:
    """The job's project id and the id of its run of ``task`` (None when it has no such
    task); None when there is no such job."""
    row = (
        await session.execute(
            select(Job.project_id, TaskRun.id)
            .outerjoin(TaskRun, and_(TaskRun.job_id == Job.id, TaskRun.name == task))
            .where(Job.id == job_id)
        )
    ).first()
    return None if row is None else (row[0], row[1])


@dataclass(frozen=True)
class AttemptFence:
    """Whether an attempt is its task's current running one, and when it last reported."""

    current: bool
    progress_at: datetime | None


def _is_current(run_id: uuid.UUID) -> Any:
    # The run is running under this attempt's fencing token: a re-queue moves the token on.
    running_token = (
        select(TaskRun.fencing_token)
        .where(TaskRun.id == run_id, TaskRun.status == TaskState.RUNNING)
        .scalar_subquery()
    )
    return and_(
        TaskAttempt.task_run_id == run_id,
        TaskAttempt.outcome.is_(None),
        TaskAttempt.fencing_token == running_token,
    )


async def attempt_fence(
    session: AsyncSession, run_id: uuid.UUID, attempt_id: uuid.UUID
) -> AttemptFence | None:
    """The attempt of run ``run_id`` and whether it is current; None if the run has no such
    attempt."""
    row = (
        await session.execute(
            select(_is_current(run_id), TaskAttempt.progress_at).where(
                TaskAttempt.id == attempt_id, TaskAttempt.task_run_id == run_id
            )
        )
    ).first()
    return None if row is None else AttemptFence(bool(row[0]), row[1])


async def write_progress(
    session: AsyncSession,
    run_id: uuid.UUID,
    attempt_id: uuid.UUID,
    progress: dict[str, Any],
    now: datetime,
    not_after: datetime,
) -> bool:
    """Store ``progress`` on the attempt if it is still current and last reported no later
    than ``not_after``: one statement, so a superseded attempt cannot slip a write in. Only
    the attempt row changes (never the run's ``row_version``). Returns whether it wrote."""
    result = await session.execute(
        update(TaskAttempt)
        .where(
            TaskAttempt.id == attempt_id,
            _is_current(run_id),
            or_(TaskAttempt.progress_at.is_(None), TaskAttempt.progress_at <= not_after),
        )
        .values(progress=progress, progress_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))
