"""Queries over alert channels, rules, deliveries, and the job history rules look at."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..definitions.models import Workflow
from ..jobs.models import Job, JobState, TaskRun, TaskState
from .models import AlertChannel, AlertDelivery, AlertRule, DeliveryStatus


async def channel(
    session: AsyncSession, project_id: uuid.UUID, channel_id: uuid.UUID
) -> AlertChannel | None:
    return await session.scalar(
        select(AlertChannel).where(
            AlertChannel.id == channel_id, AlertChannel.project_id == project_id
        )
    )


async def channels_page(
    session: AsyncSession, project_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[AlertChannel], int]:
    where = AlertChannel.project_id == project_id
    total = await session.scalar(select(func.count()).select_from(AlertChannel).where(where))
    rows = await session.scalars(
        select(AlertChannel).where(where).order_by(AlertChannel.name).limit(limit).offset(offset)
    )
    return list(rows), total or 0


async def channel_name_taken(
    session: AsyncSession, project_id: uuid.UUID, name: str, *, other_than: uuid.UUID | None
) -> bool:
    stmt = select(AlertChannel.id).where(
        AlertChannel.project_id == project_id, AlertChannel.name == name
    )
    if other_than is not None:
        stmt = stmt.where(AlertChannel.id != other_than)
    return (await session.scalar(stmt)) is not None


async def channels_by_id(
    session: AsyncSession, project_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, AlertChannel]:
    if not ids:
        return {}
    rows = await session.scalars(
        select(AlertChannel).where(
            AlertChannel.project_id == project_id, AlertChannel.id.in_(list(ids))
        )
    )
    return {c.id: c for c in rows}


async def rule(
    session: AsyncSession, project_id: uuid.UUID, rule_id: uuid.UUID
) -> AlertRule | None:
    return await session.scalar(
        select(AlertRule).where(AlertRule.id == rule_id, AlertRule.project_id == project_id)
    )


async def rules_page(
    session: AsyncSession, project_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[AlertRule], int]:
    where = AlertRule.project_id == project_id
    total = await session.scalar(select(func.count()).select_from(AlertRule).where(where))
    rows = await session.scalars(
        select(AlertRule)
        .where(where)
        .order_by(AlertRule.created_at, AlertRule.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total or 0


async def rules_naming_channel(
    session: AsyncSession, project_id: uuid.UUID, channel_id: uuid.UUID
) -> list[AlertRule]:
    rows = await session.scalars(select(AlertRule).where(AlertRule.project_id == project_id))
    return [r for r in rows if str(channel_id) in r.channel_ids]


async def active_rules(
    session: AsyncSession, project_id: uuid.UUID | None, kind: str
) -> list[AlertRule]:
    stmt = select(AlertRule).where(AlertRule.kind == kind, AlertRule.enabled.is_(True))
    if project_id is not None:
        stmt = stmt.where(AlertRule.project_id == project_id)
    return list(await session.scalars(stmt.order_by(AlertRule.created_at)))


async def any_active_rule(session: AsyncSession, kind: str) -> bool:
    found = await session.scalar(
        select(AlertRule.id).where(AlertRule.kind == kind, AlertRule.enabled.is_(True)).limit(1)
    )
    return found is not None


async def delete_rule(session: AsyncSession, rule_id: uuid.UUID) -> None:
    await session.execute(delete(AlertRule).where(AlertRule.id == rule_id))


async def delete_channel(session: AsyncSession, channel_id: uuid.UUID) -> None:
    await session.execute(delete(AlertChannel).where(AlertChannel.id == channel_id))


async def add_delivery(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a delivery unless one with its ``dedup_key`` exists (then nothing happens, even
    when another transaction inserts it concurrently). True when it was inserted."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert(AlertDelivery)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(AlertDelivery.id)
    )
    return (await session.scalar(stmt)) is not None


async def deliveries_page(
    session: AsyncSession, channel_id: uuid.UUID, *, status: str | None, limit: int, offset: int
) -> tuple[list[AlertDelivery], int]:
    where = [AlertDelivery.channel_id == channel_id]
    if status is not None:
        where.append(AlertDelivery.status == status)
    total = await session.scalar(select(func.count()).select_from(AlertDelivery).where(*where))
    rows = await session.scalars(
        select(AlertDelivery)
        .where(*where)
        .order_by(AlertDelivery.created_at.desc(), AlertDelivery.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total or 0


def _due(now: datetime) -> Any:
    return and_(
        AlertDelivery.status == DeliveryStatus.PENDING,
        AlertDelivery.next_attempt_at <= now,
        or_(AlertDelivery.locked_until.is_(None), AlertDelivery.locked_until < now),
    )


async def due_delivery_ids(session: AsyncSession, now: datetime, limit: int) -> list[uuid.UUID]:
    rows = await session.scalars(
        select(AlertDelivery.id)
        .where(_due(now))
        .order_by(AlertDelivery.next_attempt_at)
        .limit(limit)
    )
    return list(rows)


async def claim(
    session: AsyncSession, delivery_id: uuid.UUID, now: datetime, until: datetime
) -> bool:
    """Take the delivery for one attempt (counted now), unless another loop has it."""
    result = await session.execute(
        update(AlertDelivery)
        .where(AlertDelivery.id == delivery_id, _due(now))
        .values(locked_until=until, attempts=AlertDelivery.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


async def finish_attempt(
    session: AsyncSession, delivery_id: uuid.UUID, values: dict[str, Any]
) -> None:
    await session.execute(
        update(AlertDelivery)
        .where(AlertDelivery.id == delivery_id)
        .values(locked_until=None, **values)
        .execution_options(synchronize_session=False)
    )


async def workflow_name(session: AsyncSession, workflow_id: uuid.UUID) -> str | None:
    return await session.scalar(select(Workflow.name).where(Workflow.id == workflow_id))


async def task_run_context(
    session: AsyncSession, task_run_id: uuid.UUID
) -> tuple[TaskRun, Job, str] | None:
    """The task run, its job and the workflow's name."""
    row = (
        await session.execute(
            select(TaskRun, Job, Workflow.name)
            .join(Job, Job.id == TaskRun.job_id)
            .join(Workflow, Workflow.id == Job.workflow_id)
            .where(TaskRun.id == task_run_id)
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2])


async def recent_durations(
    session: AsyncSession,
    workflow_id: uuid.UUID,
    task: str,
    *,
    before: datetime,
    exclude: uuid.UUID,
    limit: int,
) -> list[float]:
    """Seconds taken by the last ``limit`` runs of the task in the workflow that succeeded
    by running (cache hits did not run) and finished before ``before``."""
    rows = await session.execute(
        select(TaskRun.started_at, TaskRun.finished_at)
        .join(Job, Job.id == TaskRun.job_id)
        .where(
            Job.workflow_id == workflow_id,
            TaskRun.name == task,
            TaskRun.status == TaskState.SUCCEEDED,
            TaskRun.id != exclude,
            TaskRun.cached_from.is_(None),
            TaskRun.started_at.is_not(None),
            TaskRun.finished_at.is_not(None),
            TaskRun.finished_at <= before,
        )
        .order_by(TaskRun.finished_at.desc())
        .limit(limit)
    )
    return [(end - start).total_seconds() for start, end in rows if start and end]


async def overdue_jobs(
    session: AsyncSession, rule: AlertRule, now: datetime, *, since: datetime
) -> list[tuple[Job, str]]:
    """Jobs of the rule's project (and workflow) created between ``since`` and the deadline
    that have not succeeded (cancelled ones are left alone) and were not yet alerted."""
    assert rule.max_minutes is not None  # noqa: S101 - deadline rules have one (schema)
    deadline = now - timedelta(minutes=rule.max_minutes)
    alerted = select(AlertDelivery.id).where(
        AlertDelivery.rule_id == rule.id, AlertDelivery.job_id == Job.id
    )
    stmt = (
        select(Job, Workflow.name)
        .join(Workflow, Workflow.id == Job.workflow_id)
        .where(
            Job.project_id == rule.project_id,
            Job.created_at <= deadline,
            Job.created_at >= since,
            Job.status.not_in([JobState.SUCCEEDED, JobState.CANCELLED]),
            ~alerted.exists(),
        )
        .order_by(Job.created_at)
        .limit(500)
    )
    if rule.workflow is not None:
        stmt = stmt.where(Workflow.name == rule.workflow)
    return [(job, name) for job, name in (await session.execute(stmt)).all()]
