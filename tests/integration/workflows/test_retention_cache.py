"""Retention and the result cache: a run served from the cache records an earlier job's
artifact keys, so deleting that earlier job must keep the objects the cached run still
records, on SQLite and PostgreSQL, and delete them with the last run that records them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from tests.conftest import Api, auth, client_for, make_settings

from armillary.app import create_app
from armillary.cli.doctor import check
from armillary.kit.db import utcnow
from armillary.kit.runtime import Runtime
from armillary.kit.settings import Settings
from armillary.kit.storage import ObjectStore, StorageSettings, attempt_artifact_key
from armillary.kit.storage.keys import project_prefix
from armillary.migrations.runner import upgrade
from armillary.workflows.components import workflows_of
from armillary.workflows.execution import claims
from armillary.workflows.execution.protocol import AttemptResult, Outcome
from armillary.workflows.logs.store import chunk_key
from armillary.workflows.scheduling.scheduler import Scheduler
from armillary.workflows.settings import WorkflowSettings

STORAGE = StorageSettings(backend="local")
SPEC = {"name": "fit", "tasks": [{"name": "train", "type": "noop", "cache": True}]}


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.sqlite), "postgresql"])
def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        settings = make_settings(tmp_path / "home", database_url=None, redis_url=None)
        upgrade(settings)
        return settings
    factory: Callable[..., Settings] = request.getfixturevalue("settings_factory")
    return factory()


@pytest.fixture
async def platform(db_settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(db_settings, configure_logs=False, storage_settings=STORAGE)
    async with LifespanManager(app, startup_timeout=60):
        yield app


async def _run_job(api: Api, token: str, project: str) -> str:
    response = await api.client.post(
        f"/api/v1/projects/{project}/workflows/fit/jobs", json={}, headers=auth(token)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _job(api: Api, token: str, job_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/api/v1/jobs/{job_id}", headers=auth(token))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _settle(scheduler: Scheduler, now: Any) -> None:
    while await scheduler.tick(now):
        pass


async def _work_one_task(runtime: Runtime, store: ObjectStore, now: Any) -> str:
    """What a worker does: claim the queued task, upload its artifact under the attempt's key
    and report success with it. Returns the artifact's key."""
    async with runtime.db.unit_of_work() as session:
        (claimed,) = await claims.claim(session, "test-worker", 1, now, 60)
    key = attempt_artifact_key(
        claimed.project_id, claimed.job_id, claimed.task, claimed.attempt, "model.bin"
    )
    await store.put_bytes(key, b"weights")
    await store.put_bytes(chunk_key(claimed.project_id, claimed.job_id, "train", 1, 1), b"log")
    result = AttemptResult(
        outcome=Outcome.SUCCEEDED,
        outputs={},
        error=None,
        exit_code=0,
        artifacts={},
        workdir=Path("/nonexistent"),
    )
    async with runtime.db.unit_of_work() as session:
        await claims.report(session, claimed, result, now, artifacts={"model.bin": key})
    return key


async def _download(api: Api, token: str, job_id: str) -> tuple[int, bytes]:
    response = await api.client.get(
        f"/api/v1/jobs/{job_id}/tasks/train/artifacts/model.bin",
        params={"redirect": "false"},
        headers=auth(token),
    )
    return response.status_code, response.content


async def test_retention_keeps_the_objects_a_cached_run_still_records(
    platform: FastAPI, db_settings: Settings
) -> None:
    runtime: Runtime = platform.state.runtime
    store = workflows_of(runtime).store
    assert store is not None
    async with client_for(platform) as http:
        api = Api(http)
        user = await api.create_user(await api.admin_token(), "data_scientist")
        token = user["token"]
        project = await api.create_project(token)
        slug = project["slug"]
        created = await http.post(
            f"/api/v1/projects/{slug}/workflows", json=SPEC, headers=auth(token)
        )
        assert created.status_code == 201, created.text
        scheduler = Scheduler(runtime.db, WorkflowSettings(retention_days=30), store=store)
        recent = utcnow()
        old = recent - timedelta(days=40)

        # Job A runs the task and records an artifact under its own attempt key.
        job_a = await _run_job(api, token, slug)
        await _settle(scheduler, old)
        key = await _work_one_task(runtime, store, old)
        await _settle(scheduler, old)
        assert (await _job(api, token, job_a))["status"] == "succeeded"

        # Job B is served from the cache: it records job A's key.
        job_b = await _run_job(api, token, slug)
        await _settle(scheduler, recent)
        done = await _job(api, token, job_b)
        assert done["status"] == "succeeded"
        (train,) = done["tasks"]
        assert train["cached_from"] is not None
        assert train["artifacts"] == {"model.bin": key}

        # Retention deletes job A (and its log), but not the artifact job B records.
        assert await scheduler.sweep(recent) == 1
        assert (await http.get(f"/api/v1/jobs/{job_a}", headers=auth(token))).status_code == 404
        assert await _download(api, token, job_b) == (200, b"weights")
        assert await store.list_keys(f"{project_prefix(uuid.UUID(project['id']))}/jobs/") == [key]
        report = await check(db_settings, STORAGE, repair=False, grace=timedelta(0))
        assert report["missing"] == []
        assert report["orphans"] == []

        # The object goes with the last run that records it.
        assert await scheduler.sweep(recent + timedelta(days=40)) == 1
        assert not await store.exists(key)
        report = await check(db_settings, STORAGE, repair=False, grace=timedelta(0))
        assert (report["missing"], report["orphans"]) == ([], [])
