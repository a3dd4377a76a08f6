"""Workers claiming at once: each queued task goes to exactly one worker, with one attempt
record, so attempt numbers (which key the attempt's logs and artifacts) never repeat."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

from sqlalchemy import select
from tests.conftest import auth
from tests.integration.concurrency.conftest import WRITERS
from tests.integration.registry.support import Platform

from armillary.kit.db import utcnow
from armillary.workflows.execution import claims
from armillary.workflows.jobs import transitions
from armillary.workflows.jobs.models import Job, JobState, TaskAttempt, TaskRun, TaskState

TASKS = 4


async def _queued_job(platform: Platform) -> uuid.UUID:
    api = platform.api
    user = await api.create_user(await api.admin_token(), "data_scientist")
    project = await api.create_project(user["token"])
    base = f"/api/v1/projects/{project['slug']}/workflows"
    spec = {"name": "fan", "tasks": [{"name": f"t{i}", "type": "noop"} for i in range(TASKS)]}
    applied = await api.client.post(base, json=spec, headers=auth(user["token"]))
    assert applied.status_code == 201, applied.text
    started = await api.client.post(f"{base}/fan/jobs", json={}, headers=auth(user["token"]))
    assert started.status_code == 201, started.text
    job_id = uuid.UUID(started.json()["id"])
    # Stand in for the scheduler: the job runs and every task is queued.
    async with platform.app.state.runtime.db.unit_of_work() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        await transitions.apply(session, job, JobState.RUNNING)
        for run in await session.scalars(select(TaskRun).where(TaskRun.job_id == job_id)):
            await transitions.apply(session, run, TaskState.QUEUED)
    return job_id


async def test_concurrent_claims_take_each_task_once(platform: Platform) -> None:
    job_id = await _queued_job(platform)
    db = platform.app.state.runtime.db

    async def claim(worker: int) -> list[claims.Claim]:
        async with db.unit_of_work() as session:
            return await claims.claim(session, f"worker-{worker}", 1, utcnow(), 60, job_id=job_id)

    batches = await asyncio.gather(*(claim(w) for w in range(WRITERS)))
    taken = [c for batch in batches for c in batch]

    assert sorted(c.task for c in taken) == [f"t{i}" for i in range(TASKS)]
    assert {c.attempt for c in taken} == {1}
    async with db.read_only() as session:
        attempts = (
            await session.execute(
                select(TaskAttempt.task_run_id, TaskAttempt.number)
                .join(TaskRun, TaskRun.id == TaskAttempt.task_run_id)
                .where(TaskRun.job_id == job_id)
            )
        ).all()
    assert len(attempts) == TASKS
    assert Counter(run for run, _ in attempts).most_common(1)[0][1] == 1
