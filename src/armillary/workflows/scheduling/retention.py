"""Retention: finished jobs older than the configured period go, with their logs and
artifacts. Objects are deleted before rows, so a crash half-way leaves a job whose files are
gone (swept again next time) rather than files no job points to.

A task served from the result cache records the artifact keys of the run it reused, which
live under that earlier job's prefix. Such keys are kept while any surviving task run records
them, and deleted with the last run that does (ADR 0010)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.db import Database
from armillary.kit.storage import ObjectStore
from armillary.kit.storage.keys import job_prefix, project_prefix

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
            jobs = {job_id: project_id for job_id, project_id in rows}
            kept = 0
            if store is not None:
                kept = await _delete_objects(session, store, jobs)
            ids = list(jobs)
            runs = select(TaskRun.id).where(TaskRun.job_id.in_(ids))
            await session.execute(delete(TaskAttempt).where(TaskAttempt.task_run_id.in_(runs)))
            await session.execute(delete(TaskRun).where(TaskRun.job_id.in_(ids)))
            await session.execute(delete(Job).where(Job.id.in_(ids)))
        deleted += len(rows)
        log.info(
            "workflows.retention_deleted",
            jobs=len(rows),
            kept_for_cached_runs=kept,
            cutoff=cutoff.isoformat(),
        )


async def _delete_objects(
    session: AsyncSession, store: ObjectStore, jobs: dict[uuid.UUID, uuid.UUID]
) -> int:
    """Delete the jobs' objects but those another task run records; returns how many were
    kept. Also deletes the keys these jobs' cached runs recorded from jobs deleted earlier,
    once no surviving run records them."""
    # Locked before the surviving references are read: a cache hit about to reuse one of
    # these runs waits for this transaction and then finds the run gone, or committed first
    # and so is among the survivors read below. On SQLite this takes the write lock.
    doomed = (
        await session.execute(
            select(TaskRun.job_id, TaskRun.artifacts, TaskRun.cache_key)
            .where(TaskRun.job_id.in_(list(jobs)))
            .with_for_update()
        )
    ).all()
    cache_keys = {cache_key for _, _, cache_key in doomed if cache_key}
    still_recorded = await _recorded_by_survivors(session, list(jobs), cache_keys)
    kept: set[str] = set()
    for job_id, project_id in jobs.items():
        async for info in store.list(job_prefix(project_id, job_id)):
            if info.key in still_recorded:
                kept.add(info.key)
            else:
                await store.delete(info.key)
    for job_id, artifacts, _ in doomed:
        # Only job files of the run's own project: the cache never reaches across projects.
        own_jobs = f"{project_prefix(jobs[job_id])}/jobs/"
        for key in _keys(artifacts):
            if key.startswith(own_jobs) and key not in still_recorded:
                await store.delete(key)
    return len(kept)


async def _recorded_by_survivors(
    session: AsyncSession, doomed_jobs: Sequence[uuid.UUID], cache_keys: Iterable[str]
) -> set[str]:
    """Artifact keys that task runs outside ``doomed_jobs`` record. Only a cache hit records
    another run's keys, and it reuses a run with its own cache key, so only runs sharing a
    cache key with the doomed ones are read (through the cache key's index)."""
    wanted = sorted(cache_keys)
    if not wanted:
        return set()
    recorded = await session.scalars(
        select(TaskRun.artifacts).where(
            TaskRun.cache_key.in_(wanted), TaskRun.job_id.not_in(doomed_jobs)
        )
    )
    return {key for artifacts in recorded for key in _keys(artifacts)}


def _keys(artifacts: Any) -> list[str]:
    if not isinstance(artifacts, dict):
        return []
    return [key for key in artifacts.values() if isinstance(key, str)]
