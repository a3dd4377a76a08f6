"""Data service fixtures: the platform started on either storage backend.

``backend`` is parametrized, so a test that uses ``platform`` (or ``start_platform``) runs once
against the local directory under the test's home and once against S3 on the moto server.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from tests.conftest import client_for
from tests.integration.data.support import Platform
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY

from armillary.app import create_app
from armillary.data.settings import DataSettings
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.kit.storage.settings import S3_MIN_PART_SIZE

PART_SIZE = S3_MIN_PART_SIZE

StartPlatform = Callable[..., Awaitable[Platform]]


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def s3_storage_settings(endpoint: str) -> StorageSettings:
    """S3 on the moto server with a fresh bucket (created here), and 5 MiB multipart parts."""
    from armillary.kit.storage.admin import s3_client

    settings = StorageSettings(
        backend="s3",
        s3_endpoint_url=endpoint,
        s3_bucket=f"armillary-data-{uuid.uuid4().hex[:16]}",
        s3_region=REGION,
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SECRET_KEY,
        s3_allow_http=True,
        multipart_threshold_bytes=PART_SIZE,
        part_size=PART_SIZE,
    )
    s3_client(settings).create_bucket(Bucket=settings.bucket)
    return settings


@pytest.fixture
def storage_settings(backend: str, request: pytest.FixtureRequest) -> StorageSettings:
    if backend == "local":
        # No local_root: the store must place itself under the platform's home.
        return StorageSettings(
            backend="local", multipart_threshold_bytes=PART_SIZE, part_size=PART_SIZE
        )
    return s3_storage_settings(request.getfixturevalue("moto_endpoint"))


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


@pytest.fixture
async def start_platform(
    settings_factory: Callable[..., Settings],
    storage_settings: StorageSettings,
    spool_dir: Path,
) -> AsyncIterator[StartPlatform]:
    """Starts the app with ``DataSettings(spool_dir=..., **overrides)``; stopped at teardown
    (or earlier with ``Platform.stop``)."""
    started: list[Platform] = []

    async def start(**data_overrides: Any) -> Platform:
        data_settings = DataSettings(spool_dir=str(spool_dir), **data_overrides)
        app = create_app(
            settings_factory(),
            configure_logs=False,
            storage_settings=storage_settings,
            data_settings=data_settings,
        )
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(LifespanManager(app, startup_timeout=60))
        client = await stack.enter_async_context(client_for(app))
        platform = Platform(app, client, storage_settings, spool_dir, stack)
        started.append(platform)
        return platform

    try:
        yield start
    finally:
        for platform in reversed(started):
            await platform.stop()


@pytest.fixture
async def platform(start_platform: StartPlatform) -> Platform:
    return await start_platform()
