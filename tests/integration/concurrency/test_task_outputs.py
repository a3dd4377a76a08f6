"""Artifacts and logs under concurrency, on SQLite and PostgreSQL: attempts of one job write
their log chunks and artifacts at once through the worker's own paths (``Worker`` with its
``LogWriter`` and artifact upload; only the sandbox is scripted), while a zombie (an attempt
whose lease was lost, still running) writes its own and reports late.

Every object under the job's prefix belongs to a committed row or an attempt record, except the
zombie's artifacts: ADR 0010 leaves them as orphans (nothing points at them) until
``armillary doctor`` reports them and, on request, deletes them, and only them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from structlog.testing import capture_logs
from tests.conftest import Api, auth, client_for
from tests.integration.concurrency.conftest import WRITERS
from tests.integration.concurrency.support import assert_rows_and_objects_agree, findings

from armillary.app import create_app
from armillary.cli.doctor import check
from armillary.contracts.identity import JobTokenRequest
from armillary.kit.db import utcnow
from armillary.kit.runtime import Runtime
from armillary.kit.settings import Settings
from armillary.kit.storage import ObjectStore, StorageSettings
from armillary.kit.storage.keys import job_prefix
from armillary.workflows.components import workflows_of
from armillary.workflows.execution.protocol import AttemptResult, AttemptSpec, LogSink, Outcome
from armillary.workflows.execution.worker import Worker
from armillary.workflows.scheduling.scheduler import Scheduler
from armillary.workflows.settings import WorkflowSettings

STORAGE = StorageSettings(backend="local")
TASKS = [f"part-{i}" for i in range(WRITERS)]
SPEC = {"name": "fan-out", "tasks": [{"name": name, "type": "noop"} for name in TASKS]}
# Small chunks, so every attempt writes several log objects while the others write theirs.
ENGINE = WorkflowSettings(
    log_flush_bytes=1024, log_flush_seconds=0.05, poll_seconds=0.05, sqlite_poll_seconds=0.02
)
LINES = 120


class ScriptedSandbox:
    """Stands in for the bubblewrap executor: each attempt prints ``LINES`` lines (in several
    log chunks) and leaves two artifacts, one in a subdirectory, whose bytes name the worker
    and the task. Every attempt stops half way through its output until ``gate`` opens."""

    def __init__(self, label: str, root: Path, gate: asyncio.Event) -> None:
        self.label = label
        self.root = root
        self.gate = gate
        self.waiting = 0

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
        assert on_log is not None
        for line in range(LINES):
            if line == LINES // 2:
                self.waiting += 1
                await self.gate.wait()
            await on_log(f"{self.label} {spec.task} line {line:04d}\n".encode())
            await asyncio.sleep(0)  # let the other attempts write in between
        workdir = self.root / spec.attempt_id
        (workdir / "out" / "sub").mkdir(parents=True)
        model, report = workdir / "out" / "model.bin", workdir / "out" / "sub" / "report.txt"
        model.write_bytes(artifact(self.label, spec.task, "model.bin"))
        report.write_bytes(artifact(self.label, spec.task, "sub/report.txt"))
        return AttemptResult(
            outcome=Outcome.SUCCEEDED,
            outputs={"by": self.label},
            error=None,
            exit_code=0,
            artifacts={"model.bin": model, "sub/report.txt": report},
            workdir=workdir,
        )


def artifact(label: str, task: str, name: str) -> bytes:
    return f"{label}:{task}:{name}".encode()


@pytest.fixture
async def app(db_settings: Settings) -> AsyncIterator[FastAPI]:
    """The platform without its scheduler: the test ticks one, so it decides when a lease
    counts as lost."""
    started = create_app(db_settings, configure_logs=False, storage_settings=STORAGE)
    async with LifespanManager(started, startup_timeout=60):
        yield started


def _worker(runtime: Runtime, store: ObjectStore, sandbox: ScriptedSandbox, n: int) -> Worker:
    directory = runtime.require_access().directory

    async def issue(request: JobTokenRequest) -> tuple[str, Any]:
        issued = await directory.issue_job_token(**request.model_dump())
        return issued.token, issued.expires_at

    return Worker(
        runtime.db,
        store,
        sandbox,
        ENGINE,
        issue_token=issue,
        api_url="http://127.0.0.1:9",  # the scripted sandbox calls nothing
        work_root=sandbox.root,
        concurrency=n,
        name=f"worker-{sandbox.label}",
    )


async def _settle(scheduler: Scheduler, now: Any = None) -> None:
    while await scheduler.tick(now):
        pass


async def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def _until_done(api: Api, token: str, job_id: str, scheduler: Scheduler) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        await _settle(scheduler)
        job = (await api.client.get(f"/api/v1/jobs/{job_id}", headers=auth(token))).json()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            return dict(job)
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.05)


async def test_concurrent_attempts_and_a_zombie_leave_only_doctor_repairable_orphans(
    app: FastAPI, db_settings: Settings, tmp_path: Path
) -> None:
    runtime: Runtime = app.state.runtime
    store = workflows_of(runtime).store
    assert store is not None
    scheduler = Scheduler(runtime.db, ENGINE, store=store)
    async with client_for(app) as http:
        api = Api(http)
        user = await api.create_user(await api.admin_token(), "data_scientist")
        token = user["token"]
        project = await api.create_project(token)
        created = await http.post(
            f"/api/v1/projects/{project['slug']}/workflows", json=SPEC, headers=auth(token)
        )
        assert created.status_code == 201, created.text
        started = await http.post(
            f"/api/v1/projects/{project['slug']}/workflows/fan-out/jobs",
            json={},
            headers=auth(token),
        )
        assert started.status_code == 201, started.text
        job_id = started.json()["id"]
        await _settle(scheduler)

        # The zombie takes one task and stops half way through its output...
        gate = asyncio.Event()
        zombie_box = ScriptedSandbox("zombie", tmp_path / "zombie", gate)
        zombie = _worker(runtime, store, zombie_box, 1)
        assert await zombie._claim(1) == 1
        (held,) = [r.claim for r in zombie.running.values()]
        await _until(lambda: zombie_box.waiting == 1, "the zombie's attempt to start")
        # ...and misses its heartbeats: the scheduler re-queues the task as attempt 2.
        await _settle(scheduler, utcnow() + timedelta(seconds=2 * ENGINE.lease_seconds))

        # Another worker takes every task, the zombie's among them: once all its attempts are
        # half way, they and the zombie write the rest, upload and report at the same time.
        live_box = ScriptedSandbox("live", tmp_path / "live", gate)
        live = _worker(runtime, store, live_box, WRITERS)
        running = asyncio.create_task(live.run())
        with capture_logs() as logs:
            try:
                await _until(lambda: live_box.waiting == WRITERS, "every attempt to start")
                gate.set()
                done = await _until_done(api, token, job_id, scheduler)
                await _until(lambda: not zombie.running, "the zombie to report")
                await asyncio.gather(*zombie._tasks)
            finally:
                live.stop()
                await running
        runs = {t["name"]: t for t in done["tasks"]}
        assert done["status"] == "succeeded", {n: r["status"] for n, r in runs.items()}
        assert runs[held.task]["attempt"] == 2
        # The zombie's result was refused by the fence: attempt 2's stands.
        refused = [e for e in logs if e["event"] == "worker.late_result_refused"]
        assert [(e["task"], e["job"]) for e in refused] == [(held.task, job_id)]
        failed = {"worker.attempt_failed", "worker.report_failed"}
        assert [e for e in logs if e["event"] in failed] == []

        prefix = job_prefix(uuid.UUID(project["id"]), uuid.UUID(job_id))
        stored = await store.list_keys(f"{prefix}/")
        zombie_artifacts = sorted(
            k for k in stored if f"/{held.task}/attempt-1/" in k and "/log-" not in k
        )
        assert len(zombie_artifacts) == 2
        zombie_logs = [k for k in stored if f"/{held.task}/log-0001-" in k]
        assert len(zombie_logs) > 1

        # What the rows point at is there, whole, and is the live attempts' work.
        for name in TASKS:
            assert runs[name]["outputs"] == {"by": "live"}
            recorded = runs[name]["artifacts"]
            assert sorted(recorded) == ["model.bin", "sub/report.txt"]
            for artifact_name, key in recorded.items():
                assert await store.get_bytes(key) == artifact("live", name, artifact_name)
                # As a reader asks for it (the SDK escapes the subdirectory's slash).
                for asked in (artifact_name, artifact_name.replace("/", "%2F")):
                    got = await http.get(
                        f"/api/v1/jobs/{job_id}/tasks/{name}/artifacts/{asked}",
                        params={"redirect": "false"},
                        headers=auth(token),
                    )
                    assert got.status_code == 200, (asked, got.text)
                    assert got.content == artifact("live", name, artifact_name)
            log = await http.get(f"/api/v1/jobs/{job_id}/tasks/{name}/logs", headers=auth(token))
            expected = "".join(f"live {name} line {i:04d}\n" for i in range(LINES))
            assert log.text == expected
        # The zombie's output stays readable as its attempt's log.
        first = await http.get(
            f"/api/v1/jobs/{job_id}/tasks/{held.task}/logs",
            params={"attempt": 1},
            headers=auth(token),
        )
        assert first.text == "".join(f"zombie {held.task} line {i:04d}\n" for i in range(LINES))

        # Only the zombie's artifacts are unowned; the doctor deletes those and nothing else.
        found = await findings(app)
        assert found.missing == []
        assert sorted(o.key for o in found.orphans if "/jobs/" in o.key) == zombie_artifacts
        report = await check(db_settings, STORAGE, repair=True, grace=timedelta(0))
        assert sorted(k for k in report["repair"]["deleted"] if "/jobs/" in k) == zombie_artifacts
        assert sorted(await store.list_keys(f"{prefix}/")) == sorted(
            set(stored) - set(zombie_artifacts)
        )
        await assert_rows_and_objects_agree(app, under="/jobs/")
