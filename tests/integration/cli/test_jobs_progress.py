"""``armillary jobs show [--watch]`` shows what a running task last reported about its
progress (stage, counts, message, the first metrics), against the platform on a loopback port.

The server runs in the test's event loop (so the test can stand in for the scheduler and a
worker on the same runtime); the CLI, synchronous as users run it, in a thread.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from rich.console import Console
from rich.text import Text
from sqlalchemy import select, update
from tests.conftest import Api, auth
from tests.integration.workflows.engine import serve
from tests.ports import free_port
from typer.testing import CliRunner, Result

from armillary.cli import jobs as jobs_cli
from armillary.cli.main import app as cli_app
from armillary.kit.db import utcnow
from armillary.kit.runtime import Runtime
from armillary.workflows.execution import claims
from armillary.workflows.execution.protocol import AttemptResult, Outcome
from armillary.workflows.jobs import transitions
from armillary.workflows.jobs.models import Job, JobState, TaskAttempt, TaskRun, TaskState
from armillary.workflows.scheduling import dispatch

SPEC: dict[str, Any] = {
    "name": "fit",
    "tasks": [
        {"name": "train", "type": "noop"},
        {"name": "after", "type": "noop", "needs": ["train"]},
    ],
}
REPORT: dict[str, Any] = {
    "stage": "fold",
    "current": 2,
    "total": 5,
    "message": "cross-validating",
    "metrics": {"accuracy": 0.91234, "loss": 0.25, "f1": 0.8},
}
SHOWN = "fold 2/5 (40%) · cross-validating · accuracy=0.9123 loss=0.25"


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private config directory, and no server or token from the environment."""
    path = tmp_path / "config"
    monkeypatch.setenv("ARMILLARY_CONFIG_DIR", str(path))
    monkeypatch.delenv("ARMILLARY_URL", raising=False)
    monkeypatch.delenv("ARMILLARY_TOKEN", raising=False)
    return path


def rows(output: str) -> list[list[str]]:
    """The cells of a Rich table's lines, the heading (drawn with ┃) included."""
    return [
        [cell.strip() for cell in re.split("[│┃]", line)[1:-1]]
        for line in output.splitlines()
        if len(re.findall("[│┃]", line)) >= 3
    ]


class RunningJob:
    """A job whose ``train`` task runs (the scheduler's and a worker's steps, done here)."""

    def __init__(self, app: FastAPI, api: Api) -> None:
        self.runtime: Runtime = app.state.runtime
        self.api = api
        self.user: dict[str, Any] = {}
        self.project: dict[str, Any] = {}
        self.job_id = ""
        self.attempt_id = ""
        self.token = ""
        self.claim: claims.Claim | None = None

    async def start(self) -> None:
        admin = await self.api.admin_token()
        self.user = await self.api.create_user(admin, "data_scientist")
        self.project = await self.api.create_project(self.user["token"])
        headers = auth(self.user["token"])
        base = f"/api/v1/projects/{self.project['slug']}/workflows"
        assert (await self.api.client.post(base, json=SPEC, headers=headers)).status_code == 201
        started = await self.api.client.post(f"{base}/fit/jobs", json={}, headers=headers)
        assert started.status_code == 201, started.text
        self.job_id = started.json()["id"]
        async with self.runtime.db.unit_of_work() as session:
            job = await session.get(Job, uuid.UUID(self.job_id))
            assert job is not None
            await transitions.apply(session, job, JobState.RUNNING)
            await transitions.apply(session, await self._train(session), TaskState.QUEUED)
        async with self.runtime.db.unit_of_work() as session:
            taken = await claims.claim(session, "worker-1", 5, utcnow(), 60)
        assert [c.task for c in taken] == ["train"]
        self.claim = taken[0]
        async with self.runtime.db.sessionmaker() as session:
            run = await self._train(session)
            attempt = await session.scalar(
                select(TaskAttempt.id).where(TaskAttempt.task_run_id == run.id)
            )
        assert attempt is not None
        self.attempt_id = attempt.hex
        issued = await self.runtime.access.directory.issue_job_token(
            user_id=uuid.UUID(self.user["id"]),
            project_id=uuid.UUID(self.project["id"]),
            job_id=uuid.UUID(self.job_id),
            ttl_seconds=300,
        )
        self.token = str(issued.token)

    async def _train(self, session: Any) -> TaskRun:
        run = await session.scalar(
            select(TaskRun).where(TaskRun.job_id == uuid.UUID(self.job_id), TaskRun.name == "train")
        )
        assert run is not None
        return run

    async def report(self, **changes: Any) -> None:
        # Past the per-attempt interval, so this report is stored.
        async with self.runtime.db.unit_of_work() as session:
            await session.execute(
                update(TaskAttempt)
                .where(TaskAttempt.id == uuid.UUID(self.attempt_id))
                .values(progress_at=None)
            )
        response = await self.api.client.put(
            f"/api/v1/jobs/{self.job_id}/tasks/train/progress",
            json={"attempt_id": self.attempt_id, **REPORT, **changes},
            headers=auth(self.token),
        )
        assert response.status_code == 204, response.text

    async def cancel(self) -> None:
        """Cancel the job; the worker stops ``train`` and the scheduler ends the job."""
        cancelled = await self.api.client.post(
            f"/api/v1/jobs/{self.job_id}/cancel", headers=auth(self.user["token"])
        )
        assert cancelled.status_code == 200, cancelled.text
        async with self.runtime.db.unit_of_work() as session:
            assert self.claim is not None
            stopped = AttemptResult(Outcome.CANCELLED, None, None, None, {}, Path("/nonexistent"))
            await claims.report(session, self.claim, stopped, utcnow())
        async with self.runtime.db.unit_of_work() as session:
            await dispatch.finish_jobs(session, utcnow())


async def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_show_has_the_running_tasks_progress(app: FastAPI, api: Api) -> None:
    job = RunningJob(app, api)
    await job.start()
    runner = CliRunner()
    async for url in serve(app, free_port()):
        env = {"ARMILLARY_URL": url, "ARMILLARY_TOKEN": job.user["token"], "COLUMNS": "250"}
        show = ["jobs", "show", job.job_id]

        before: Result = await asyncio.to_thread(runner.invoke, cli_app, show, env=env)
        assert before.exit_code == 0, before.output
        table = rows(before.stdout)
        assert "Progress" in table[0]
        column = table[0].index("Progress")
        assert [row[column] for row in table[1:]] == ["", ""]  # nothing reported yet

        await job.report()
        after: Result = await asyncio.to_thread(runner.invoke, cli_app, show, env=env)
        assert after.exit_code == 0, after.output
        table = rows(after.stdout)
        assert [(row[0], row[2], row[column]) for row in table[1:]] == [
            ("train", "running", SHOWN),
            ("after", "pending", ""),
        ]


async def test_watch_redraws_progress_until_the_job_ends(
    app: FastAPI, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = RunningJob(app, api)
    await job.start()
    await job.report()
    screen = io.StringIO()
    monkeypatch.setattr(jobs_cli, "console", Console(file=screen, force_terminal=True, width=220))

    def drawn() -> str:
        return Text.from_ansi(screen.getvalue()).plain

    runner = CliRunner()
    async for url in serve(app, free_port()):
        env = {"ARMILLARY_URL": url, "ARMILLARY_TOKEN": job.user["token"], "COLUMNS": "250"}
        watching = asyncio.ensure_future(
            asyncio.to_thread(
                runner.invoke, cli_app, ["jobs", "show", job.job_id, "--watch"], env=env
            )
        )
        await eventually(lambda: SHOWN in drawn(), "the first report")
        # A later report is drawn on the next poll; a report without counts or metrics too.
        await job.report(current=3, message="still going", metrics={"accuracy": 0.95})
        await eventually(
            lambda: "fold 3/5 (60%) · still going · accuracy=0.95" in drawn(), "the update"
        )
        await job.report(stage="upload", current=None, total=None, message="", metrics={})
        await eventually(lambda: "│ upload" in drawn(), "a bare stage")
        assert not watching.done()

        await job.cancel()
        result: Result = await asyncio.wait_for(watching, 60)
        assert result.exit_code == 0, result.output
        final = drawn()
        assert "status:       cancelled" in final
        assert "Progress" in final


async def test_watch_off_a_terminal_prints_progress_as_plain_lines(
    app: FastAPI, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a CI log sees it: stdout is not a terminal, so no live table and no control codes.
    screen = io.StringIO()
    monkeypatch.setattr(jobs_cli, "console", Console(file=screen, width=80))
    assert not jobs_cli.console.is_terminal
    job = RunningJob(app, api)
    await job.start()
    await job.report()

    runner = CliRunner()
    async for url in serve(app, free_port()):
        env = {"ARMILLARY_URL": url, "ARMILLARY_TOKEN": job.user["token"], "COLUMNS": "80"}
        watching = asyncio.ensure_future(
            asyncio.to_thread(
                runner.invoke, cli_app, ["jobs", "show", job.job_id, "--watch"], env=env
            )
        )
        await eventually(lambda: f"task train: {SHOWN}" in screen.getvalue(), "a progress line")
        await job.cancel()
        result: Result = await asyncio.wait_for(watching, 60)
        assert result.exit_code == 0, result.output

    printed = screen.getvalue()
    assert "\x1b" not in printed
    assert "\r" not in printed
    assert "task train: cancelled" in printed
    assert "status:       cancelled" in printed
    assert max(len(line) for line in printed.splitlines()) <= 80
