"""Wires the data service into a runtime, and its app for other services' clients."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from armillary.kit.runtime import Runtime
from armillary.kit.service_status import service_status_router
from armillary.kit.storage import StorageSettings

from .components import SERVICE, Data
from .datasets.api import router as datasets_router
from .datasets.downloads_api import router as downloads_router
from .holds import consumer as holds_consumer
from .ingest.api import router as ingest_router
from .quality.api import router as quality_router
from .settings import DataSettings

ROUTERS: list[APIRouter] = [
    datasets_router,
    quality_router,
    downloads_router,
    ingest_router,
    service_status_router("data"),
]


def install(
    runtime: Runtime,
    *,
    settings: DataSettings | None = None,
    storage_settings: StorageSettings | None = None,
) -> Data:
    data = Data.create(runtime, settings=settings, storage_settings=storage_settings)
    runtime.services[SERVICE] = data
    holds_consumer.subscribe(runtime.bus)

    async def stop(_runtime: Runtime) -> None:
        await data.stop()

    runtime.shutdown_hooks.append(stop)
    return data


def create_internal_app(runtime: Runtime) -> FastAPI:
    """The data routes on a runtime someone else starts (the embedded composition), for other
    services' :class:`~.client.DataClient` in-process. Never exposed to clients: no edge
    layers (rate limits), the caller's own token still authorizes every request."""
    from armillary.kit.app_factory import build_app

    return build_app(
        runtime,
        title="Armillary data (internal)",
        routers=ROUTERS,
        edge=False,
        manage_runtime=False,
    )
