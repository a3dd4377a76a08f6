"""Cron schedules fire at their times under a controllable clock; missed runs are skipped or
caught up (capped) per workflow; a time never runs twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select
from tests.conftest import Api, auth

from armillary.kit.runtime import Runtime
from armillary.workflows.jobs.models import Job
from armillary.workflows.scheduling.scheduler import Scheduler
from armillary.workflows.settings import WorkflowSettings

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


async def _scheduled(api: Api, schedule: dict[str, Any]) -> str:
    admin = await api.admin_token()
    user = await api.create_user(admin, "data_scientist")
    project = await api.create_project(user["token"])
    response = await api.client.post(
        f"/api/v1/projects/{project['slug']}/workflows",
        json={"name": "nightly", "schedule": schedule, "tasks": [{"name": "t", "type": "noop"}]},
        headers=auth(user["token"]),
    )
    assert response.status_code == 201, response.text
    return str(project["slug"])


async def _jobs(runtime: Runtime) -> list[Job]:
    async with runtime.db.read_only() as session:
        return list((await session.scalars(select(Job).order_by(Job.created_at))).all())


async def test_a_schedule_fires_at_its_times(app: FastAPI, api: Api) -> None:
    runtime: Runtime = app.state.runtime
    await _scheduled(api, {"cron": "*/15 * * * *"})
    scheduler = Scheduler(runtime.db, WorkflowSettings())
    # First sight: counting starts now, nothing from the past fires.
    assert await scheduler.fire_schedules(T0 + timedelta(minutes=1)) == 0
    assert await scheduler.fire_schedules(T0 + timedelta(minutes=14, seconds=59)) == 0
    assert await scheduler.fire_schedules(T0 + timedelta(minutes=15, seconds=2)) == 1
    # The same time again (a second tick, or a restarted scheduler) fires nothing new.
    assert await scheduler.fire_schedules(T0 + timedelta(minutes=15, seconds=30)) == 0
    assert await scheduler.fire_schedules(T0 + timedelta(minutes=30)) == 1
    jobs = await _jobs(runtime)
    assert [j.trigger for j in jobs] == ["schedule", "schedule"]
    assert [j.idempotency_key for j in jobs] == [
        f"schedule:{(T0 + timedelta(minutes=15)).isoformat()}",
        f"schedule:{(T0 + timedelta(minutes=30)).isoformat()}",
    ]


async def test_missed_runs_are_skipped_by_default(app: FastAPI, api: Api) -> None:
    runtime: Runtime = app.state.runtime
    await _scheduled(api, {"cron": "0 * * * *"})
    scheduler = Scheduler(runtime.db, WorkflowSettings())
    await scheduler.fire_schedules(T0)
    # Down for five hours: the missed runs are skipped; the next on-time run fires.
    assert await scheduler.fire_schedules(T0 + timedelta(hours=5, minutes=10)) == 0
    assert await scheduler.fire_schedules(T0 + timedelta(hours=6, seconds=5)) == 1
    assert len(await _jobs(runtime)) == 1


async def test_missed_runs_are_caught_up_up_to_the_cap(app: FastAPI, api: Api) -> None:
    runtime: Runtime = app.state.runtime
    await _scheduled(api, {"cron": "0 * * * *", "catchup": "catch_up", "max_catchup_runs": 3})
    scheduler = Scheduler(runtime.db, WorkflowSettings())
    await scheduler.fire_schedules(T0)
    assert await scheduler.fire_schedules(T0 + timedelta(hours=5, minutes=10)) == 3
    keys = [j.idempotency_key for j in await _jobs(runtime)]
    assert keys == [f"schedule:{(T0 + timedelta(hours=h)).isoformat()}" for h in (3, 4, 5)]


async def test_retention_deletes_old_finished_jobs_with_their_logs(app: FastAPI, api: Api) -> None:
    from armillary.kit.storage.keys import job_prefix
    from armillary.workflows.components import workflows_of
    from armillary.workflows.jobs import transitions
    from armillary.workflows.jobs.models import JobState
    from armillary.workflows.logs.store import chunk_key

    runtime: Runtime = app.state.runtime
    slug = await _scheduled(api, {"cron": "0 0 1 1 *"})
    admin = await api.admin_token()
    for _ in range(2):
        response = await api.client.post(
            f"/api/v1/projects/{slug}/workflows/nightly/jobs", json={}, headers=auth(admin)
        )
        assert response.status_code == 201, response.text
    old, recent = await _jobs(runtime)
    store = workflows_of(runtime).store
    assert store is not None
    for job in (old, recent):
        await store.put_bytes(chunk_key(job.project_id, job.id, "t", 1, 1), b"output")
    async with runtime.db.unit_of_work() as session:
        for job, finished in ((old, T0 - timedelta(days=40)), (recent, T0 - timedelta(days=5))):
            merged = await session.merge(job)
            await transitions.apply(session, merged, JobState.CANCELLED, now=finished)
    scheduler = Scheduler(runtime.db, WorkflowSettings(retention_days=30), store=store)
    assert await scheduler.sweep(T0) == 1
    assert [j.id for j in await _jobs(runtime)] == [recent.id]
    assert await store.list_keys(job_prefix(old.project_id, old.id)) == []
    assert len(await store.list_keys(job_prefix(recent.project_id, recent.id))) == 1
    # Nothing is deleted when retention is off.
    assert await Scheduler(runtime.db, WorkflowSettings(retention_days=0)).sweep(T0) == 0


async def test_the_engine_counts_finished_jobs_and_measures_the_queue(
    app: FastAPI, api: Api
) -> None:
    from prometheus_client import REGISTRY

    runtime: Runtime = app.state.runtime
    slug = await _scheduled(api, {"cron": "0 0 1 1 *"})
    admin = await api.admin_token()
    response = await api.client.post(
        f"/api/v1/projects/{slug}/workflows/nightly/jobs", json={}, headers=auth(admin)
    )
    job_id = response.json()["id"]
    scheduler = Scheduler(runtime.db, WorkflowSettings())
    await scheduler.tick()  # starts the job
    await scheduler.tick()  # queues its task
    assert await scheduler.measure_queue() == (1, 0)
    assert REGISTRY.get_sample_value("armillary_tasks_queued") == 1

    def finished(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    jobs_before = finished("armillary_jobs_finished_total", status="cancelled")
    tasks_before = finished("armillary_task_runs_finished_total", type="noop", status="cancelled")
    response = await api.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth(admin))
    assert response.json()["status"] == "cancelled"
    assert finished("armillary_jobs_finished_total", status="cancelled") == jobs_before + 1
    assert (
        finished("armillary_task_runs_finished_total", type="noop", status="cancelled")
        == tasks_before + 1
    )
    assert await scheduler.measure_queue() == (0, 0)
