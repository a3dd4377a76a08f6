"""The tracking tests run the embedded platform on PostgreSQL and on SQLite alike."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from tests.conftest import Api, client_for, make_settings
from tests.integration.tracking.support import Mlflow, editor_in_new_project

from armillary.app import create_app
from armillary.kit.settings import Settings
from armillary.migrations.runner import upgrade


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per session; each test starts from a copy (migrating every
    service's branch costs seconds)."""
    home = tmp_path_factory.mktemp("tracking-sqlite")
    upgrade(make_settings(home, database_url=None, redis_url=None))
    return home / "armillary.db"


@pytest.fixture(params=["postgresql", pytest.param("sqlite", marks=pytest.mark.sqlite)])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "postgresql":
        settings: Settings = request.getfixturevalue("settings")
        return settings
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(request.getfixturevalue("migrated_sqlite"), home / "armillary.db")
    return make_settings(home, database_url=None, redis_url=None)


@pytest.fixture
async def platform_api(backend_settings: Settings) -> AsyncIterator[Api]:
    app = create_app(backend_settings, configure_logs=False)
    async with LifespanManager(app, startup_timeout=60), client_for(app) as client:
        yield Api(client)


@pytest.fixture
async def mlflow(platform_api: Api) -> Mlflow:
    """MLflow's API in a fresh project, as its owner."""
    token, project = await editor_in_new_project(platform_api)
    return Mlflow(platform_api.client, project, token)
