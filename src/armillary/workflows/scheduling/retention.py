"""Retention: finished jobs older than the configured period go, with their logs and
artifacts. Objects are deleted before rows, so a crash half-way leaves a job whose files are
gone (swept again next time) rather than files no job points to."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import delete, select

from armillary.kit.db import Database
from armillary.kit.storage import ObjectStore
from armillary.kit.storage.keys import job_prefix

from ..jobs.models import Job, TaskAttempt, TaskRun
from ..jobs.transitions import JOB_TERMINAL

log = structlog.get_logger(__name__)
BATCH = 200


async def delete_finished_before(db: Database, store: ObjectStore | None, cutoff: datetime) -> int:
    """Delete jobs that finished before ``cutoff``; returns how many."""
    deleted = 0
    while True:
        async with db.unit_of_work() as session:
            rows = (
                await session.execute(
                    select(Job.id, Job.project_id)
                    .where(Job.status.in_(JOB_TERMINAL), Job.finished_at < cutoff)
                    .limit(BATCH)
                )
            ).all()
            if not rows:
                return deleted
            if store is not None:
                for job_id, project_id in rows:
                    async for info in store.list(job_prefix(project_id, job_id)):
                        await store.delete(info.key)
            ids = [job_id for job_id, _ in rows]
            runs = select(TaskRun.id).where(TaskRun.job_id.in_(ids))
            await session.execute(delete(TaskAttempt).where(TaskAttempt.task_run_id.in_(runs)))
            await session.execute(delete(TaskRun).where(TaskRun.job_id.in_(ids)))
            await session.execute(delete(Job).where(Job.id.in_(ids)))
        deleted += len(rows)
        log.info("workflows.retention_deleted", jobs=len(rows), cutoff=cutoff.isoformat())
