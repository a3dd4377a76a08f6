"""The system-health API for administrators: the engine's queue and workers
(``/api/v1/system/engine``) and each service's requests, errors and latency from the
process's own metrics (``/api/v1/system/services/<service>``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from tests.conftest import Api, auth

from armillary.kit.runtime import Runtime
from armillary.workflows.execution import claims
from armillary.workflows.scheduling.scheduler import Scheduler
from armillary.workflows.settings import WorkflowSettings

SERVICES = ("identity", "data", "workflows", "registry", "serving", "tracking")


async def test_the_engine_shows_what_waits_and_who_works(app: FastAPI, api: Api) -> None:
    runtime: Runtime = app.state.runtime
    admin = await api.admin_token()
    user = await api.create_user(admin, "data_scientist")
    slug = (await api.create_project(user["token"]))["slug"]
    spec = {"name": "waiting", "tasks": [{"name": "t", "type": "noop"}]}
    created = await api.client.post(
        f"/api/v1/projects/{slug}/workflows", json=spec, headers=auth(user["token"])
    )
    assert created.status_code == 201, created.text
    submitted = await api.client.post(
        f"/api/v1/projects/{slug}/workflows/waiting/jobs", json={}, headers=auth(user["token"])
    )
    assert submitted.status_code == 201, submitted.text
    scheduler = Scheduler(runtime.db, WorkflowSettings())
    await scheduler.tick()  # starts the job
    await scheduler.tick()  # queues its task

    async def engine() -> dict[str, object]:
        response = await api.client.get("/api/v1/system/engine", headers=auth(admin))
        assert response.status_code == 200, response.text
        return dict(response.json())

    waiting = await engine()
    project_id = (await api.client.get(f"/api/v1/projects/{slug}", headers=auth(admin))).json()[
        "id"
    ]
    [jobs] = [e for e in waiting["jobs_by_project"] if e["project_id"] == project_id]  # type: ignore[attr-defined]
    assert (jobs["running"], jobs["queued"], jobs["failed"], jobs["total"]) == (1, 0, 0, 1)
    assert jobs["oldest_queued_at"] is None
    assert waiting["tasks_queued"] == 1
    assert waiting["tasks_running"] == 0
    assert isinstance(waiting["oldest_queued_age_seconds"], float)
    assert waiting["workers"] == []

    async with runtime.db.unit_of_work() as session:
        assert len(await claims.claim(session, "worker-a", 1, datetime.now(UTC), 30.0)) == 1
    working = await engine()
    assert working["tasks_queued"] == 0
    assert working["tasks_running"] == 1
    assert working["live_workers"] == 1
    [worker] = working["workers"]  # type: ignore[misc]
    assert worker["id"] == "worker-a"
    assert worker["state"] == "live"

    # Administrators only, as the API decides for every client.
    refused = await api.client.get("/api/v1/system/engine", headers=auth(user["token"]))
    assert refused.status_code == 403
    assert (await api.client.get("/api/v1/system/engine")).status_code == 401


async def test_each_service_reports_its_requests_errors_and_latency(api: Api) -> None:
    admin = await api.admin_token()

    async def status(service: str, routes: int = 10) -> dict[str, object]:
        response = await api.client.get(
            f"/api/v1/system/services/{service}?routes={routes}", headers=auth(admin)
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    before = await status("workflows")
    user = await api.create_user(admin, "data_scientist")
    slug = (await api.create_project(user["token"]))["slug"]
    missing = f"/api/v1/projects/{slug}/workflows/no-such-workflow"
    for _ in range(3):
        assert (await api.client.get(missing, headers=auth(user["token"]))).status_code == 404
    # Every route this process has served (other tests' routes too, when they share it).
    after = await status("workflows", routes=500)
    assert after["service"] == "workflows"
    assert after["requests"] >= before["requests"] + 3  # type: ignore[operator]
    assert after["client_errors"] >= before["client_errors"] + 3  # type: ignore[operator]
    routes = after["routes"]
    assert isinstance(routes, list)
    assert len(routes) == after["routes_total"]
    assert any(
        r["route"] == "/api/v1/projects/{project}/workflows/{workflow}" and r["client_errors"] >= 3
        for r in routes
    ), routes
    latency = after["latency_seconds"]
    assert isinstance(latency, dict)
    assert latency["p50"] is not None
    assert latency["p50"] <= latency["p95"] <= latency["p99"]  # type: ignore[operator]
    for service in SERVICES:
        assert (await status(service))["service"] == service
    assert len((await status("workflows", routes=1))["routes"]) == 1  # type: ignore[arg-type]
    too_many = await api.client.get(
        "/api/v1/system/services/workflows?routes=501", headers=auth(admin)
    )
    assert too_many.status_code == 422
    refused = await api.client.get("/api/v1/system/services/workflows", headers=auth(user["token"]))
    assert refused.status_code == 403


@pytest.mark.parametrize("path", ["/api/v1/system/services/console", "/api/v1/system/services/x"])
async def test_only_the_platforms_services_have_a_status(api: Api, path: str) -> None:
    admin = await api.admin_token()
    assert (await api.client.get(path, headers=auth(admin))).status_code == 404
