"""Serving test fixtures: the platform with the registry and the serving service wired in
(the registry's private app behind ``RegistryClient.resolve``), and a project whose model has
versions uploaded through the real registry API.

Until the composition root knows the serving service, this file adds its migrations and
tables itself: before any fixture migrates or truncates the test database.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated

import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from tests.conftest import client_for
from tests.integration.serving.support import Platform, Scene

import armillary.serving.access.models
import armillary.serving.deployments.models  # noqa: F401 - tables for TRUNCATE
from armillary.app import create_runtime
from armillary.data import app as data_app
from armillary.identity import app as identity_app
from armillary.kit.app_factory import build_app
from armillary.kit.errors import NotFound
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.registry import app as registry_app
from armillary.registry.client import RegistryClient
from armillary.serving import app as serving_app
from armillary.serving.access.predict_access import authorize_predict
from armillary.serving.components import SERVICE, Serving, serving_of
from armillary.serving.settings import ServingSettings
from armillary.workflows import app as workflows_app

# What predict does before answering, as a route of its own: the access rules tested over
# HTTP without depending on the predict route.
probe_router = APIRouter()


@probe_router.get("/test/projects/{project}/deployments/{deployment}/caller")
async def caller(
    request: Request,
    project: Annotated[str, PathParam(max_length=64)],
    deployment: Annotated[str, PathParam(max_length=128)],
) -> dict[str, str]:
    resolved = await serving_of(request.app.state.runtime).directory.get(project, deployment)
    if resolved is None:
        raise NotFound("Deployment not found")
    found = await authorize_predict(request, resolved)
    return {"kind": found.kind, "id": found.id, "label": found.label}


def _wire(settings: Settings, storage: StorageSettings, cache_dir: Path) -> FastAPI:
    runtime = create_runtime(settings, storage_settings=storage)
    if SERVICE not in runtime.services:
        serving_app.install(
            runtime,
            settings=ServingSettings(cache_dir=str(cache_dir)),
            storage_settings=storage,
        )
    serving = serving_of(runtime)
    if serving.registry is None:
        client = RegistryClient.in_process(
            registry_app.create_internal_app(runtime), registry_app.create_private_app(runtime)
        )
        serving.registry = client

        async def close(_runtime: object) -> None:
            await client.aclose()

        runtime.shutdown_hooks.append(close)
    routers = [
        *identity_app.ROUTERS,
        *data_app.ROUTERS,
        *workflows_app.ROUTERS,
        *registry_app.ROUTERS,
        *serving_app.ROUTERS,
        probe_router,
    ]
    return build_app(runtime, title="Armillary (serving tests)", routers=routers)


@pytest.fixture
async def platform(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[Platform]:
    app = _wire(settings_factory(), StorageSettings(backend="local"), tmp_path / "serving-cache")
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(LifespanManager(app, startup_timeout=60))
        client = await stack.enter_async_context(client_for(app))
        yield Platform(app, client)


@pytest.fixture
async def scene(platform: Platform) -> Scene:
    """A data scientist's project with model ``churn``: version 1 (ONNX), version 2 (skops),
    and alias ``champion`` on version 1."""
    found = await Scene.create(platform)
    await found.upload_version("onnx")
    await found.upload_version("skops")
    await found.set_alias("champion", 1)
    return found


def serving(platform: Platform) -> Serving:
    return serving_of(platform.app.state.runtime)


@pytest.fixture
async def other_process(
    platform: Platform, settings_factory: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[Platform]:
    """A second serving process on the same database and Redis (as two replicas are): its
    own runtime, caches and event bus."""
    app = _wire(settings_factory(), StorageSettings(backend="local"), tmp_path / "other-cache")
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(LifespanManager(app, startup_timeout=60))
        client = await stack.enter_async_context(client_for(app))
        yield Platform(app, client)
