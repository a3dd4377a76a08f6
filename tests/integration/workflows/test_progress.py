"""Task progress: only the job's own token reports it, only for the task's current running
attempt (fenced), stored on the attempt (never moving the task run's row_version), shown on
the job, and rate-limited per attempt."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from tests.conftest import Api, auth

from armillary.contracts.events import AuditEntry
from armillary.kit.db import utcnow
from armillary.kit.events import OutboxEvent
from armillary.kit.runtime import Runtime
from armillary.workflows.execution import claims
from armillary.workflows.execution.protocol import AttemptResult, Outcome
from armillary.workflows.jobs import service as jobs_service
from armillary.workflows.jobs import transitions
from armillary.workflows.jobs.models import Job, JobState, TaskAttempt, TaskRun, TaskState
from armillary.workflows.scheduling import dispatch

SPEC: dict[str, Any] = {
    "name": "fit",
    "tasks": [
        {"name": "train", "type": "noop", "retries": 1},
        {"name": "after", "type": "noop", "needs": ["train"]},
    ],
}
REPORT: dict[str, Any] = {
    "stage": "fold",
    "current": 2,
    "total": 5,
    "message": "cross-validating",
    "metrics": {"accuracy": 0.91, "loss": 0.25},
}


class Scene:
    def __init__(self, app: FastAPI, api: Api, user: dict[str, Any], project: dict[str, Any]):
        self.app = app
        self.api = api
        self.user = user
        self.project = project
        self.runtime: Runtime = app.state.runtime

    async def job_token(self, job_id: str) -> str:
        issued = await self.runtime.access.directory.issue_job_token(
            user_id=uuid.UUID(self.user["id"]),
            project_id=uuid.UUID(self.project["id"]),
            job_id=uuid.UUID(job_id),
            ttl_seconds=300,
        )
        return str(issued.token)

    async def start_job(self) -> str:
        response = await self.api.client.post(
            f"/api/v1/projects/{self.project['slug']}/workflows/fit/jobs",
            json={},
            headers=auth(self.user["token"]),
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def run_train(self, job_id: str) -> claims.Claim:
        """Stand in for the scheduler and a worker: ``train`` is queued and claimed, which
        records its attempt."""
        async with self.runtime.db.unit_of_work() as session:
            job = await session.get(Job, uuid.UUID(job_id))
            assert job is not None
            if job.status == JobState.QUEUED:
                await transitions.apply(session, job, JobState.RUNNING)
            run = await self.train(session, job_id)
            if run.status == TaskState.PENDING:
                await transitions.apply(session, run, TaskState.QUEUED)
        async with self.runtime.db.unit_of_work() as session:
            taken = await claims.claim(
                session, "worker-1", 5, utcnow(), 60, job_id=uuid.UUID(job_id)
            )
        assert [c.task for c in taken] == ["train"]
        return taken[0]

    @staticmethod
    async def train(session: Any, job_id: str) -> TaskRun:
        run = await session.scalar(
            select(TaskRun).where(TaskRun.job_id == uuid.UUID(job_id), TaskRun.name == "train")
        )
        assert run is not None
        return run

    async def attempt_ids(self, job_id: str) -> list[str]:
        async with self.runtime.db.sessionmaker() as session:
            run = await self.train(session, job_id)
            rows = await session.scalars(
                select(TaskAttempt.id)
                .where(TaskAttempt.task_run_id == run.id)
                .order_by(TaskAttempt.number)
            )
            return [row.hex for row in rows]

    async def row_version(self, job_id: str) -> int:
        async with self.runtime.db.sessionmaker() as session:
            return (await self.train(session, job_id)).row_version

    async def put(self, job_id: str, token: str, body: dict[str, Any], task: str = "train") -> Any:
        return await self.api.client.put(
            f"/api/v1/jobs/{job_id}/tasks/{task}/progress", json=body, headers=auth(token)
        )

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.api.client.get(
            f"/api/v1/jobs/{job_id}", headers=auth(self.user["token"])
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def rewind_progress(self, job_id: str) -> None:
        """Make the last report old enough that the next one is written."""
        async with self.runtime.db.unit_of_work() as session:
            run = await self.train(session, job_id)
            await session.execute(
                update(TaskAttempt)
                .where(TaskAttempt.task_run_id == run.id)
                .values(progress_at=utcnow() - timedelta(hours=1))
            )


async def audited(scene: Scene) -> list[tuple[str, int]]:
    """(outcome, status) of the audit entries progress reports left."""
    async with scene.runtime.db.sessionmaker() as session:
        rows = await session.scalars(select(OutboxEvent).where(OutboxEvent.type == AuditEntry.TYPE))
        return [
            (row.payload["outcome"], row.payload["details"].get("status"))
            for row in rows
            if row.payload["action"] == "jobs.task_progress"
        ]


async def make_scene(app: FastAPI, api: Api) -> Scene:
    admin = await api.admin_token()
    user = await api.create_user(admin, "data_scientist")
    project = await api.create_project(user["token"])
    applied = await api.client.post(
        f"/api/v1/projects/{project['slug']}/workflows", json=SPEC, headers=auth(user["token"])
    )
    assert applied.status_code == 201, applied.text
    return Scene(app, api, user, project)


def train_of(job: dict[str, Any]) -> dict[str, Any]:
    return next(t for t in job["tasks"] if t["name"] == "train")


async def test_the_running_attempt_reports_progress_shown_on_the_job(
    app: FastAPI, api: Api
) -> None:
    scene = await make_scene(app, api)
    job_id = await scene.start_job()
    await scene.run_train(job_id)
    (attempt,) = await scene.attempt_ids(job_id)
    token = await scene.job_token(job_id)
    before = await scene.row_version(job_id)

    response = await scene.put(job_id, token, {"attempt_id": attempt, **REPORT})
    assert response.status_code == 204, response.text
    assert response.content == b""

    shown = train_of(await scene.job(job_id))
    assert shown["status"] == "running"
    progress = shown["progress"]
    assert progress is not None
    assert {k: progress[k] for k in REPORT} == REPORT
    assert progress["updated_at"] is not None
    assert shown["attempts"][0]["progress"] == progress
    # Nothing about the task run itself changed: the executor's optimistic lock is intact.
    assert await scene.row_version(job_id) == before
    # The hyphenated spelling of the attempt id is the same attempt; the defaults apply.
    await scene.rewind_progress(job_id)
    minimal = await scene.put(job_id, token, {"attempt_id": str(uuid.UUID(attempt)), "stage": "x"})
    assert minimal.status_code == 204, minimal.text
    assert train_of(await scene.job(job_id))["progress"] | {"updated_at": None} == {
        "stage": "x",
        "current": None,
        "total": None,
        "message": "",
        "metrics": {},
        "updated_at": None,
    }
    # Other tasks have none.
    assert (
        next(t for t in (await scene.job(job_id))["tasks"] if t["name"] == "after")["progress"]
        is None
    )
    # Listed tasks carry it too.
    tasks = await api.client.get(f"/api/v1/jobs/{job_id}/tasks", headers=auth(token))
    assert tasks.status_code == 200
    assert tasks.json()[0]["progress"]["stage"] == "x"
    # Telemetry, not an audited change.
    assert await audited(scene) == []


async def test_only_the_jobs_own_token_may_report(app: FastAPI, api: Api) -> None:
    scene = await make_scene(app, api)
    job_id = await scene.start_job()
    await scene.run_train(job_id)
    (attempt,) = await scene.attempt_ids(job_id)
    body = {"attempt_id": attempt, **REPORT}

    # The user who started the job, and an admin: user tokens never report progress.
    as_user = await scene.put(job_id, scene.user["token"], body)
    assert as_user.status_code == 403, as_user.text
    assert as_user.headers["content-type"].startswith("application/problem+json")
    as_admin = await scene.put(job_id, await api.admin_token(), body)
    assert as_admin.status_code == 403

    # Another job's token, of the same project: this job does not exist for it.
    other_job = await scene.start_job()
    as_other_job = await scene.put(job_id, await scene.job_token(other_job), body)
    assert as_other_job.status_code == 404, as_other_job.text

    token = await scene.job_token(job_id)
    assert (await scene.put(job_id, token, body, task="nope")).status_code == 404
    assert (await scene.put("not-a-uuid", token, body)).status_code == 404
    assert train_of(await scene.job(job_id))["progress"] is None
    # Refusals are audited like any other.
    assert ("denied", 403) in await audited(scene)


async def test_only_the_current_running_attempt_may_report(app: FastAPI, api: Api) -> None:
    scene = await make_scene(app, api)
    job_id = await scene.start_job()
    token = await scene.job_token(job_id)

    # Before the task runs there is no attempt to report for.
    ghost = await scene.put(job_id, token, {"attempt_id": uuid.uuid4().hex, **REPORT})
    assert ghost.status_code == 409, ghost.text

    await scene.run_train(job_id)
    (first,) = await scene.attempt_ids(job_id)
    for wrong in (uuid.uuid4().hex, "not-an-attempt"):
        refused = await scene.put(job_id, token, {"attempt_id": wrong, **REPORT})
        assert refused.status_code == 409, refused.text
        assert refused.json()["status"] == 409
    assert (await scene.put(job_id, token, {"attempt_id": first, **REPORT})).status_code == 204

    # The worker is lost: its lease expires, the task is queued again and claimed anew.
    async with scene.runtime.db.unit_of_work() as session:
        reclaimed = await dispatch.reclaim_lost(session, utcnow() + timedelta(hours=1))
    assert reclaimed.queued == 1
    claim = await scene.run_train(job_id)
    lost, second = await scene.attempt_ids(job_id)
    assert lost == first

    # The lost attempt, still running somewhere, cannot overwrite its successor's progress.
    late = await scene.put(job_id, token, {"attempt_id": first, **REPORT, "stage": "late"})
    assert late.status_code == 409, late.text
    fresh = {"attempt_id": second, **REPORT, "stage": "trial", "current": 1}
    assert (await scene.put(job_id, token, fresh)).status_code == 204
    shown = train_of(await scene.job(job_id))
    assert shown["progress"]["stage"] == "trial"
    assert [(a["outcome"], (a["progress"] or {}).get("stage")) for a in shown["attempts"]] == [
        ("lost", "fold"),
        (None, "trial"),
    ]

    # Once the attempt has ended, it reports no more.
    async with scene.runtime.db.unit_of_work() as session:
        await claims.report(
            session,
            claim,
            AttemptResult(Outcome.SUCCEEDED, {}, None, 0, {}, Path("/nonexistent")),
            utcnow(),
        )
    await scene.rewind_progress(job_id)
    after_end = await scene.put(job_id, token, {"attempt_id": second, **REPORT})
    assert after_end.status_code == 409, after_end.text
    shown = train_of(await scene.job(job_id))
    assert shown["status"] == "succeeded"
    assert shown["progress"]["stage"] == "trial"


async def test_reports_closer_than_the_interval_are_acknowledged_not_stored(
    app: FastAPI, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An interval no loaded machine can outlast between the first report and the burst; the
    # test moves the clock (rewind_progress) instead of sleeping through it.
    monkeypatch.setattr(jobs_service, "PROGRESS_MIN_INTERVAL", timedelta(minutes=10))
    scene = await make_scene(app, api)
    job_id = await scene.start_job()
    await scene.run_train(job_id)
    (attempt,) = await scene.attempt_ids(job_id)
    token = await scene.job_token(job_id)
    before = await scene.row_version(job_id)

    first = await scene.put(job_id, token, {"attempt_id": attempt, **REPORT, "current": 1})
    burst = await asyncio.gather(
        *(
            scene.put(job_id, token, {"attempt_id": attempt, **REPORT, "current": n})
            for n in range(2, 6)
        )
    )
    assert [r.status_code for r in [first, *burst]] == [204] * 5
    assert train_of(await scene.job(job_id))["progress"]["current"] == 1

    await scene.rewind_progress(job_id)
    later = await scene.put(job_id, token, {"attempt_id": attempt, **REPORT, "current": 4})
    assert later.status_code == 204
    assert train_of(await scene.job(job_id))["progress"]["current"] == 4
    assert await scene.row_version(job_id) == before


async def test_malformed_reports_are_refused(app: FastAPI, api: Api) -> None:
    scene = await make_scene(app, api)
    job_id = await scene.start_job()
    await scene.run_train(job_id)
    (attempt,) = await scene.attempt_ids(job_id)
    token = await scene.job_token(job_id)
    base = {"attempt_id": attempt, **REPORT}
    bad: list[dict[str, Any]] = [
        {**base, "stage": "s" * 65},
        {**base, "stage": ""},
        {**base, "message": "m" * 501},
        {**base, "metrics": {f"m{i}": 1.0 for i in range(51)}},
        {**base, "metrics": {"accuracy": "high"}},
        {**base, "current": -1},
        {**base, "extra": True},
        {k: v for k, v in base.items() if k != "attempt_id"},
    ]
    for body in bad:
        response = await scene.put(job_id, token, body)
        assert response.status_code == 422, (body, response.text)
    for number in ("NaN", "Infinity", "-Infinity"):
        raw = json.dumps({**base, "metrics": {"loss": 0.5}}).replace("0.5", number)
        response = await api.client.put(
            f"/api/v1/jobs/{job_id}/tasks/train/progress",
            content=raw,
            headers={**auth(token), "content-type": "application/json"},
        )
        assert response.status_code == 422, (number, response.text)
    fifty = {**base, "metrics": {f"m{i}": float(i) for i in range(50)}, "message": "m" * 500}
    assert (await scene.put(job_id, token, fifty)).status_code == 204
    assert train_of(await scene.job(job_id))["progress"]["metrics"]["m49"] == 49.0


async def test_the_fence_is_the_runs_token_not_the_attempts_record(app: FastAPI, api: Api) -> None:
    """An attempt whose record was never closed (its run re-queued by a path that did not
    close it) is still refused once the run has moved on to another fencing token."""
    scene = await make_scene(app, api)
    job_id = await scene.start_job()
    token = await scene.job_token(job_id)
    await scene.run_train(job_id)
    (first,) = await scene.attempt_ids(job_id)
    async with scene.runtime.db.unit_of_work() as session:
        run = await scene.train(session, job_id)
        await transitions.apply(session, run, TaskState.QUEUED, reason="re-queued")
    # Queued, not running: nobody may report.
    queued = await scene.put(job_id, token, {"attempt_id": first, **REPORT})
    assert queued.status_code == 409, queued.text
    await scene.run_train(job_id)
    _, second = await scene.attempt_ids(job_id)
    stale = await scene.put(job_id, token, {"attempt_id": first, **REPORT})
    assert stale.status_code == 409, stale.text
    assert (await scene.put(job_id, token, {"attempt_id": second, **REPORT})).status_code == 204
