"""Concurrency fixtures: the whole platform (registry with a fake workflows lookup) on either
database, since SQLite (the embedded shape) and PostgreSQL lock differently."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from tests.conftest import client_for, make_settings
from tests.integration.registry.support import FakeJobs, Platform

import armillary.registry.app as registry_app
from armillary.app import create_runtime
from armillary.data import app as data_app
from armillary.identity import app as identity_app
from armillary.kit.app_factory import build_app
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.migrations.runner import upgrade
from armillary.registry.components import registry_of
from armillary.workflows import app as workflows_app

#: Writers racing on one row in every test.
WRITERS = 8


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.sqlite), "postgresql"])
def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        settings = make_settings(tmp_path / "home", database_url=None, redis_url=None)
        upgrade(settings)
        return settings
    factory: Callable[..., Settings] = request.getfixturevalue("settings_factory")
    return factory()


def _wire(settings: Settings, jobs: FakeJobs) -> FastAPI:
    runtime = create_runtime(settings, storage_settings=StorageSettings(backend="local"))
    registry_of(runtime).workflows = jobs
    routers = [
        *identity_app.ROUTERS,
        *data_app.ROUTERS,
        *workflows_app.ROUTERS,
        *registry_app.ROUTERS,
    ]
    return build_app(runtime, title="Armillary (concurrency tests)", routers=routers)


@pytest.fixture
async def platform(db_settings: Settings) -> AsyncIterator[Platform]:
    jobs = FakeJobs()
    app = _wire(db_settings, jobs)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(LifespanManager(app, startup_timeout=60))
        client = await stack.enter_async_context(client_for(app))
        yield Platform(app, client, jobs)
