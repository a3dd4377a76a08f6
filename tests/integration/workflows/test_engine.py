"""The engine end to end: scheduler and workers as their own processes on PostgreSQL, tasks in
sandboxed children, the API over real HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from armillary.app import create_app
from armillary.kit.settings import Settings
from tests.conftest import _started
from tests.integration.workflows.engine import (
    Engine,
    Steps,
    client,
    engine_env,
    free_port,
    serve,
    tasks_by_name,
)

pytestmark = pytest.mark.slow


@pytest.fixture
async def platform(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[Engine, Steps]]:
    """The API on a real port; the test starts the scheduler and workers it needs."""
    app: FastAPI = create_app(settings, configure_logs=False)
    async for started in _started(app):
        async for base_url in serve(started, free_port()):
            logs = tmp_path / "logs"
            logs.mkdir()
            engine = Engine(settings, base_url, logs, engine_env(settings, base_url))
            try:
                async with client(base_url) as http:
                    yield engine, Steps(http)
            finally:
                engine.stop_all()


@pytest.fixture
async def editor(platform: tuple[Engine, Steps]) -> dict[str, Any]:
    _, steps = platform
    admin = await steps.admin_token()
    user = await steps.create_user(admin, "data_scientist")
    project = await steps.create_project(user["token"])
    return {"token": user["token"], "project": project["slug"], "project_id": project["id"]}


def at(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


def python_task(name: str, source: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "python", "params": {"source": source}, **extra}


async def test_a_diamond_runs_in_dependency_order_with_branches_in_parallel(
    platform: tuple[Engine, Steps], editor: dict[str, Any]
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker", "--concurrency", "4")
    token, project = editor["token"], editor["project"]
    branch = "import time\ndef main(x):\n    time.sleep(1.0)\n    return {'y': x * 2}\n"
    await steps.workflow(
        token,
        project,
        {
            "name": "diamond",
            "parameters": {"start": 3},
            "tasks": [
                python_task(
                    "a",
                    "def main(n):\n    return {'x': n + 1}\n",
                    outputs=["x"],
                    params={"source": "def main(n):\n    return {'x': n + 1}\n",
                            "args": {"n": "${params.start}"}},
                ),
                python_task("b", branch, needs=["a"], outputs=["y"],
                            params={"source": branch, "args": {"x": "${tasks.a.outputs.x}"}}),
                python_task("c", branch, needs=["a"], outputs=["y"],
                            params={"source": branch, "args": {"x": "${tasks.a.outputs.x}"}}),
                python_task(
                    "d",
                    "",
                    needs=["b", "c"],
                    outputs=["total"],
                    params={
                        "source": "def main(inputs):\n"
                        "    return {'total': inputs['b']['y'] + inputs['c']['y']}\n"
                    },
                ),
            ],
        },
    )
    job = await steps.run(token, project, "diamond")
    done = await steps.wait(token, job["id"])
    assert done["status"] == "succeeded", done
    runs = tasks_by_name(done)
    assert runs["a"]["outputs"] == {"x": 4}
    assert runs["d"]["outputs"] == {"total": 16}
    # Dependency order: each task started after everything it needs finished.
    assert at(runs["a"]["finished_at"]) <= at(runs["b"]["started_at"])
    assert at(runs["a"]["finished_at"]) <= at(runs["c"]["started_at"])
    for branch_name in ("b", "c"):
        assert at(runs[branch_name]["finished_at"]) <= at(runs["d"]["started_at"])
    # The independent branches overlapped in time.
    assert at(runs["b"]["started_at"]) < at(runs["c"]["finished_at"])
    assert at(runs["c"]["started_at"]) < at(runs["b"]["finished_at"])
    assert all(len(r["attempts"]) == 1 for r in runs.values())
