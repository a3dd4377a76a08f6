"""Registry test fixtures: the platform with the registry wired in, a project with a dataset
version, and a job whose artifacts the tests write straight into the object store.

The workflows lookup is a fake (:class:`FakeJobs`): a real job's ``ingest`` outputs exist only
after a worker has run it. The dataset lookup is the real data service, in-process.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from tests.conftest import auth, client_for
from tests.integration.registry.support import FakeJobs, Platform, Scene

import armillary.registry.app as registry_app
from armillary.app import create_runtime
from armillary.data import app as data_app
from armillary.identity import app as identity_app
from armillary.kit.app_factory import build_app
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.registry.components import registry_of
from armillary.workflows import app as workflows_app


def _wire(settings: Settings, storage: StorageSettings, jobs: FakeJobs) -> FastAPI:
    runtime = create_runtime(settings, storage_settings=storage)
    registry_of(runtime).workflows = jobs
    routers = [
        *identity_app.ROUTERS,
        *data_app.ROUTERS,
        *workflows_app.ROUTERS,
        *registry_app.ROUTERS,
    ]
    return build_app(runtime, title="Armillary (registry tests)", routers=routers)


@pytest.fixture
async def platform(settings_factory: Callable[..., Settings]) -> AsyncIterator[Platform]:
    jobs = FakeJobs()
    app = _wire(settings_factory(), StorageSettings(backend="local"), jobs)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(LifespanManager(app, startup_timeout=60))
        client = await stack.enter_async_context(client_for(app))
        yield Platform(app, client, jobs)


@pytest.fixture
async def scene(platform: Platform) -> Scene:
    api = platform.api
    user = await api.create_user(await api.admin_token(), "data_scientist")
    project = await api.create_project(user["token"])
    found = Scene(platform, user, project)
    created = await platform.client.post(
        found.base,
        json={"name": found.model, "tags": {"team": "growth"}},
        headers=auth(found.token),
    )
    assert created.status_code == 201, created.text
    return found
