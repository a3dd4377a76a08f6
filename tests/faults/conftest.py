"""Fixtures of the fault tests: a private PostgreSQL cluster per module, and the platform on
it (the API served in the test's loop; the test starts the scheduler and workers it needs)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from armillary.app import create_app
from armillary.migrations.runner import upgrade
from tests.conftest import REDIS_URL, _started, make_settings
from tests.faults.private_services import PrivatePostgres, private_postgres
from tests.integration.workflows.engine import Engine, Steps, client, engine_env, serve
from tests.ports import free_port


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    server = private_postgres()
    try:
        server.create_database("armillary")
        upgrade(make_settings(Path(server.root), database_url=server.url("armillary")))
        yield server
    finally:
        server.remove()


@pytest.fixture
async def platform(
    postgres: PrivatePostgres, tmp_path: Path
) -> AsyncIterator[tuple[Engine, Steps]]:
    settings = make_settings(
        tmp_path / "home", database_url=postgres.url("armillary"), redis_url=REDIS_URL
    )
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


async def editor_with(steps: Steps, spec: dict[str, Any]) -> tuple[str, str]:
    """A data scientist's token and a project of theirs holding workflow ``spec``."""
    admin = await steps.admin_token()
    user = await steps.create_user(admin, "data_scientist")
    project = (await steps.create_project(user["token"]))["slug"]
    await steps.workflow(user["token"], project, spec)
    return user["token"], project
