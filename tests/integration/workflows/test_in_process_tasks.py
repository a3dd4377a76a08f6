"""The opt-in in-process executor (ADR 0047): a spec may let a `noop` task skip the sandbox,
never user code. The worker here is the real one (claims, leases, logs, reports) in the test's
event loop; its executor only records which attempts reached it, so "no sandbox was started"
is "the executor never saw the task"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import update
from tests.conftest import Api, auth, client_for

from armillary.app import create_app
from armillary.contracts.identity import JobTokenRequest
from armillary.kit.runtime import Runtime
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.workflows import metrics
from armillary.workflows.components import workflows_of
from armillary.workflows.execution import in_process
from armillary.workflows.execution.protocol import (
    AttemptResult,
    AttemptSpec,
    LogSink,
    Outcome,
    ResourceLimits,
)
from armillary.workflows.execution.worker import Worker
from armillary.workflows.jobs.models import TaskRun
from armillary.workflows.scheduling.scheduler import Scheduler
from armillary.workflows.settings import WorkflowSettings

STORAGE = StorageSettings(backend="local")
ENGINE = WorkflowSettings(log_flush_seconds=0.05, poll_seconds=0.05)
PYTHON = {"source": "def main():\n    return {}\n"}
CHAIN = {
    "name": "trusted",
    "tasks": [
        {
            "name": "first",
            "type": "noop",
            "isolation": "in_process",
            "params": {"values": {"n": 1}},
            "outputs": ["n"],
        },
        {
            "name": "second",
            "type": "noop",
            "needs": ["first"],
            "params": {"values": {"m": "${tasks.first.outputs.n}"}},
            "outputs": ["m"],
        },
    ],
}


class RecordingSandbox:
    """Stands in for the sandboxed executor: records each attempt it was given and returns the
    noop's values (or nothing) as outputs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ran: list[str] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def run(
        self,
        spec: AttemptSpec,
        *,
        on_log: LogSink | None = None,
        cancel: asyncio.Event | None = None,
    ) -> AttemptResult:
        self.ran.append(spec.task)
        if on_log is not None:
            await on_log(b"in the sandbox\n")
        outputs = dict(spec.params.get("values", {}))
        return AttemptResult(Outcome.SUCCEEDED, outputs, None, 0, {}, self.root / spec.attempt_id)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The platform without its scheduler: the test ticks one."""
    started = create_app(settings, configure_logs=False, storage_settings=STORAGE)
    async with LifespanManager(started, startup_timeout=60):
        yield started


async def _project(api: Api) -> tuple[str, str]:
    user = await api.create_user(await api.admin_token(), "data_scientist")
    project = await api.create_project(user["token"])
    return user["token"], project["slug"]


async def _start_job(api: Api, token: str, slug: str, spec: dict[str, Any]) -> str:
    """Apply ``spec`` and start a job of it; returns the job's id."""
    http = api.client
    created = await http.post(f"/api/v1/projects/{slug}/workflows", json=spec, headers=auth(token))
    assert created.status_code == 201, created.text
    started = await http.post(
        f"/api/v1/projects/{slug}/workflows/{spec['name']}/jobs", json={}, headers=auth(token)
    )
    assert started.status_code == 201, started.text
    job_id: str = started.json()["id"]
    return job_id


async def _until_done(
    app: FastAPI, api: Api, token: str, job_id: str, box: RecordingSandbox
) -> dict[str, Any]:
    """Run the job to its end: a real worker (with ``box`` as its executor) and a ticked
    scheduler."""
    runtime: Runtime = app.state.runtime
    store = workflows_of(runtime).store
    assert store is not None
    directory = runtime.require_access().directory

    async def issue(request: JobTokenRequest) -> tuple[str, Any]:
        issued = await directory.issue_job_token(**request.model_dump())
        return issued.token, issued.expires_at

    scheduler = Scheduler(runtime.db, ENGINE, store=store)
    worker = Worker(
        runtime.db,
        store,
        box,
        ENGINE,
        issue_token=issue,
        api_url="http://127.0.0.1:9",  # nothing here calls the API
        work_root=box.root,
        concurrency=2,
        name="worker-test",
    )
    running = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 60
    try:
        while True:
            while await scheduler.tick():
                pass
            got = await api.client.get(f"/api/v1/jobs/{job_id}", headers=auth(token))
            job: dict[str, Any] = got.json()
            if job["status"] in {"succeeded", "failed", "cancelled"}:
                return job
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await running


async def _log(api: Api, token: str, job_id: str, task: str) -> str:
    got = await api.client.get(f"/api/v1/jobs/{job_id}/tasks/{task}/logs", headers=auth(token))
    assert got.status_code == 200, got.text
    return got.text


async def test_user_code_cannot_opt_out_of_the_sandbox(app: FastAPI) -> None:
    async with client_for(app) as http:
        api = Api(http)
        token, slug = await _project(api)
        for task_type, params in [
            ("python", PYTHON),
            ("transform", {"sql": "select 1"}),
            ("ingest", {"dataset": "d", "source": {"url": "https://example.com/a.csv"}}),
        ]:
            spec = {
                "name": "escape",
                "tasks": [
                    {"name": "mine", "type": task_type, "params": params, "isolation": "in_process"}
                ],
            }
            got = await http.post(
                f"/api/v1/projects/{slug}/workflows", json=spec, headers=auth(token)
            )
            assert got.status_code == 422, got.text
            refused = [e for e in got.json()["errors"] if e["kind"] == "isolation_not_allowed"]
            assert [e["path"] for e in refused] == ["tasks[0].isolation"], got.text
            assert "'mine'" in refused[0]["message"]
            assert f"'{task_type}'" in refused[0]["message"]


async def test_a_noop_in_process_runs_in_the_worker_without_a_sandbox(
    app: FastAPI, tmp_path: Path
) -> None:
    counted = metrics.TASK_ATTEMPTS_IN_PROCESS.labels("noop")._value.get()
    async with client_for(app) as http:
        api = Api(http)
        token, slug = await _project(api)
        job_id = await _start_job(api, token, slug, CHAIN)
        box = RecordingSandbox(tmp_path)
        job = await _until_done(app, api, token, job_id, box)
        tasks = {t["name"]: t for t in job["tasks"]}
        assert job["status"] == "succeeded", tasks
        # The in-process task's outputs reached its downstream task as a sandboxed one's would.
        assert tasks["first"]["outputs"] == {"n": 1}
        assert tasks["second"]["outputs"] == {"m": 1}
        # Only the sandboxed task reached the executor.
        assert box.ran == ["second"]
        assert metrics.TASK_ATTEMPTS_IN_PROCESS.labels("noop")._value.get() == counted + 1
        # An operator sees which tasks skip the sandbox: in the job, the log and the version.
        assert (tasks["first"]["isolation"], tasks["second"]["isolation"]) == (
            "in_process",
            "sandbox",
        )
        assert in_process.LOG_LINE.decode() in await _log(api, token, job_id, "first")
        assert await _log(api, token, job_id, "second") == "in the sandbox\n"
        version = await http.get(
            f"/api/v1/projects/{slug}/workflows/trusted/versions/1", headers=auth(token)
        )
        stored = {t["name"]: t for t in version.json()["spec"]["tasks"]}
        assert stored["first"]["isolation"] == "in_process"
        assert "isolation" not in stored["second"]  # the default is not written out


async def test_a_stored_forbidden_opt_in_still_runs_in_the_sandbox(
    app: FastAPI, tmp_path: Path
) -> None:
    """A python task marked in_process behind validation's back (a row written before a rule
    changed) goes to the sandbox all the same."""
    spec = {"name": "sneaky", "tasks": [{"name": "code", "type": "python", "params": PYTHON}]}
    runtime: Runtime = app.state.runtime
    async with client_for(app) as http:
        api = Api(http)
        token, slug = await _project(api)
        job_id = await _start_job(api, token, slug, spec)
        async with runtime.db.unit_of_work() as session:
            changed = await session.execute(
                update(TaskRun).where(TaskRun.name == "code").values(isolation="in_process")
            )
            assert changed.rowcount == 1  # type: ignore[attr-defined]
        box = RecordingSandbox(tmp_path)
        job = await _until_done(app, api, token, job_id, box)
        assert job["status"] == "succeeded", job
        assert box.ran == ["code"]
        log = await _log(api, token, job_id, "code")
        assert "is not allowed for type 'python': running in a sandbox" in log
        assert in_process.LOG_LINE.decode() not in log


async def test_the_in_process_runner_refuses_other_types(tmp_path: Path) -> None:
    spec = AttemptSpec(
        attempt_id="a1",
        job_id="j",
        project_id="p",
        task="code",
        task_type="python",
        params=PYTHON,
        inputs={},
        declared_outputs=[],
        limits=ResourceLimits(),
        api_url="http://127.0.0.1:9",
        job_token="",
    )
    assert not in_process.allowed("in_process", "python")
    assert not in_process.allowed("sandbox", "noop")
    with pytest.raises(ValueError, match="never runs in the worker's process"):
        await in_process.run(spec, tmp_path)
