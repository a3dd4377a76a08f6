"""Wires the registry service into a runtime, and its app for other services' clients."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from armillary.kit.runtime import Runtime
from armillary.kit.service_status import service_status_router
from armillary.kit.storage import ObjectStore, StorageSettings

from .aliases.api import router as aliases_router
from .catalog.api import router as catalog_router
from .components import SERVICE, Registry
from .internal_api import internal_router
from .settings import RegistrySettings
from .versions import consumers as version_consumers
from .versions.api import lineage_router
from .versions.api import router as versions_router

# The lineage query first: ``/models/lineage`` is not the model named "lineage".
ROUTERS: list[APIRouter] = [
    lineage_router,
    catalog_router,
    versions_router,
    aliases_router,
    service_status_router("registry"),
]
# Routes only other services call (resolving a deployment's variants): the private app alone
# serves them.
INTERNAL_ROUTERS: list[APIRouter] = [internal_router]


def install(
    runtime: Runtime,
    *,
    settings: RegistrySettings | None = None,
    storage_settings: StorageSettings | None = None,
    store: ObjectStore | None = None,
) -> Registry:
    """Put the registry on ``runtime``. The composition root then sets ``workflows`` and
    ``datasets`` (the workflows and data services' typed clients)."""
    registry = Registry.create(
        runtime, settings=settings, storage_settings=storage_settings, store=store
    )
    runtime.services[SERVICE] = registry
    version_consumers.subscribe(runtime.bus)
    return registry


def create_internal_app(runtime: Runtime) -> FastAPI:
    """The registry routes on a runtime someone else starts, for other services'
    :class:`~.client.RegistryClient` in-process. No edge layers; the caller's own token still
    authorizes every request."""
    from armillary.kit.app_factory import build_app

    return build_app(
        runtime,
        title="Armillary registry (internal)",
        routers=ROUTERS,
        edge=False,
        manage_runtime=False,
    )


def create_private_app(runtime: Runtime) -> FastAPI:
    """The registry's internal-only routes (``/internal/v1/...``, no caller token) on a
    runtime someone else starts, for :meth:`~.client.RegistryClient.resolve` in-process.
    Never exposed to clients."""
    from armillary.kit.app_factory import build_app

    return build_app(
        runtime,
        title="Armillary registry (private)",
        routers=INTERNAL_ROUTERS,
        edge=False,
        manage_runtime=False,
    )
