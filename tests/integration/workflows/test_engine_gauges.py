"""The scheduler's gauges of the engine (issue 16): how long the oldest queued task has
waited, each worker's heartbeat age from the leases it renews, live workers, and task runs
whose lease was lost (counted once the reclaim is committed). Times come from the test, not
the wall clock."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import select
from tests.conftest import Api, auth

from armillary.kit.runtime import Runtime
from armillary.workflows.execution import claims
from armillary.workflows.jobs.models import TaskRun
from armillary.workflows.scheduling.gauges import LOST_WORKER_WINDOW
from armillary.workflows.scheduling.scheduler import Scheduler
from armillary.workflows.settings import WorkflowSettings

LEASE = 30.0


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_queue_age_heartbeats_and_lost_leases(app: FastAPI, api: Api) -> None:
    runtime: Runtime = app.state.runtime
    admin = await api.admin_token()
    user = await api.create_user(admin, "data_scientist")
    project = await api.create_project(user["token"])
    slug = project["slug"]
    response = await api.client.post(
        f"/api/v1/projects/{slug}/workflows",
        json={"name": "gauged", "tasks": [{"name": "t", "type": "noop"}]},
        headers=auth(user["token"]),
    )
    assert response.status_code == 201, response.text
    response = await api.client.post(
        f"/api/v1/projects/{slug}/workflows/gauged/jobs", json={}, headers=auth(user["token"])
    )
    assert response.status_code == 201, response.text
    scheduler = Scheduler(runtime.db, WorkflowSettings(lease_seconds=LEASE))
    await scheduler.tick()  # starts the job
    await scheduler.tick()  # queues its task
    async with runtime.db.read_only() as session:
        queued_at = (await session.scalars(select(TaskRun.queued_at))).one()
    assert queued_at is not None

    # The oldest queued task has waited 90 s.
    await scheduler.measure_queue(queued_at + timedelta(seconds=90))
    assert value("armillary_task_queue_age_seconds") == 90

    # A worker takes it: nothing waits; its heartbeat is 10 s old, and it is live.
    claimed_at = queued_at + timedelta(seconds=100)
    async with runtime.db.unit_of_work() as session:
        assert len(await claims.claim(session, "worker-a", 1, claimed_at, LEASE)) == 1
    await scheduler.measure_queue(claimed_at + timedelta(seconds=10))
    assert value("armillary_task_queue_age_seconds") == 0
    assert value("armillary_worker_heartbeat_age_seconds", worker="worker-a") == 10
    assert value("armillary_workers_live") == 1

    # It stops heartbeating: once its lease expired the scheduler reclaims the task (a lost
    # lease, counted) and the worker's heartbeat age keeps growing; it is no longer live.
    lost_before = value("armillary_task_lease_lost_total", type="noop") or 0.0
    reclaimed_at = claimed_at + timedelta(seconds=LEASE + 5)
    await scheduler.tick(reclaimed_at)
    assert value("armillary_task_lease_lost_total", type="noop") == lost_before + 1
    later = reclaimed_at + timedelta(seconds=60)
    await scheduler.measure_queue(later)
    # At least a lease length before the reclaim (the last renewal itself is not kept).
    assert value("armillary_worker_heartbeat_age_seconds", worker="worker-a") == 60 + LEASE
    assert value("armillary_workers_live") == 0
    # The task waits again, since it was queued anew at the reclaim.
    assert value("armillary_task_queue_age_seconds") == 60

    # A lost worker is forgotten after the window.
    await scheduler.measure_queue(reclaimed_at + LOST_WORKER_WINDOW + timedelta(seconds=1))
    assert value("armillary_worker_heartbeat_age_seconds", worker="worker-a") is None
