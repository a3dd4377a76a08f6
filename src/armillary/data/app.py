"""Wires the data service into a runtime."""

from __future__ import annotations

from fastapi import APIRouter

from armillary.kit.runtime import Runtime
from armillary.kit.storage import StorageSettings

from .components import SERVICE, Data
from .datasets.api import router as datasets_router
from .datasets.downloads_api import router as downloads_router
from .settings import DataSettings

ROUTERS: list[APIRouter] = [datasets_router, downloads_router]


def install(
    runtime: Runtime,
    *,
    settings: DataSettings | None = None,
    storage_settings: StorageSettings | None = None,
) -> Data:
    data = Data.create(runtime, settings=settings, storage_settings=storage_settings)
    runtime.services[SERVICE] = data

    async def stop(_runtime: Runtime) -> None:
        await data.stop()

    runtime.shutdown_hooks.append(stop)
    return data
