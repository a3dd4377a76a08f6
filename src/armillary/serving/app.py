"""Wires the serving service into a runtime, and its app for other services' clients."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from armillary.kit.runtime import Runtime
from armillary.kit.service_status import service_status_router
from armillary.kit.storage import ObjectStore, StorageSettings

from .access.api import router as access_router
from .components import SERVICE, Serving
from .deployments import consumers
from .deployments.api import router as deployments_router
from .predict import wiring as predict_wiring
from .predict.api import ROUTERS as PREDICT_ROUTERS
from .settings import ServingSettings

ROUTERS: list[APIRouter] = [
    deployments_router,
    access_router,
    *PREDICT_ROUTERS,
    service_status_router("serving"),
]
# Matched before the walk over every router's routes (kit.first_routes, ADR 0045).
HOT_ROUTES = ("deployments.predict", "v2.infer")


def install(
    runtime: Runtime,
    *,
    settings: ServingSettings | None = None,
    storage_settings: StorageSettings | None = None,
    store: ObjectStore | None = None,
) -> Serving:
    """Put the serving service on ``runtime``. The composition root then sets ``registry``
    (``RegistryClient.in_process(registry internal app, registry private app)``)."""
    serving = Serving.create(
        runtime, settings=settings, storage_settings=storage_settings, store=store
    )
    runtime.services[SERVICE] = serving
    consumers.subscribe(runtime.bus, serving.directory, runtime.cache)
    predict_wiring.install(runtime)
    return serving


def create_internal_app(runtime: Runtime) -> FastAPI:
    """The serving routes on a runtime someone else starts, for other services' clients
    in-process. No edge layers; the caller's own token still authorizes every request."""
    from armillary.kit.app_factory import build_app

    return build_app(
        runtime,
        title="Armillary serving (internal)",
        routers=ROUTERS,
        hot_routes=HOT_ROUTES,
        edge=False,
        manage_runtime=False,
    )
