"""The objects the workflows service's rows own, for ``armillary doctor``: code bundles, the
artifacts each task run recorded, and every attempt's log chunks."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.storage.doctor import References

from .code.models import CodeBundle
from .jobs.models import Job, TaskAttempt, TaskRun
from .logs.store import task_prefix


async def storage_references(session: AsyncSession) -> References:
    """Bundle and artifact keys must exist; log chunks are owned by their attempt's row
    (``log-{attempt:04d}-``), none required (a task may print nothing). Artifacts a task's
    other attempts wrote are not recorded and so count as orphans."""
    found = References()
    for name, version, key in await session.execute(
        select(CodeBundle.name, CodeBundle.version, CodeBundle.object_key)
    ):
        found.keys[key] = f"code bundle {name!r} version {version}"
    for job_id, task, artifacts in await session.execute(
        select(TaskRun.job_id, TaskRun.name, TaskRun.artifacts).where(
            TaskRun.artifacts.is_not(None)
        )
    ):
        for name, key in (artifacts or {}).items():
            if isinstance(key, str):
                found.keys[key] = f"job {job_id} task {task!r}: artifact {name}"
    attempts = await session.execute(
        select(Job.project_id, Job.id, TaskRun.name, TaskAttempt.number)
        .join(TaskRun, TaskRun.job_id == Job.id)
        .join(TaskAttempt, TaskAttempt.task_run_id == TaskRun.id)
    )
    for project_id, job_id, task, attempt in attempts:
        found.prefixes.add(log_prefix(project_id, job_id, task, attempt))
    return found


def log_prefix(project_id: uuid.UUID, job_id: uuid.UUID, task: str, attempt: int) -> str:
    """What every log chunk key of the attempt (``logs.store.chunk_key``) starts with."""
    return f"{task_prefix(project_id, job_id, task)}/log-{attempt:04d}-"
