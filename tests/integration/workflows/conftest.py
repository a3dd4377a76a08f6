"""Fixtures of the engine's end-to-end tests: the API on a real port, and a user's project."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from tests.conftest import _started
from tests.integration.workflows.engine import Engine, Steps, client, engine_env, serve
from tests.ports import free_port

from armillary.app import create_app
from armillary.kit.settings import Settings


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
