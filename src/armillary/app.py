"""Composition of the embedded shape: every service in one process on one runtime.

This is the only module that knows every service; services know only ``kit``, ``contracts``
and each other's clients.
"""

from __future__ import annotations

from fastapi import FastAPI

from armillary import console
from armillary.data import app as data_app
from armillary.data.client import DataClient
from armillary.data.settings import DataSettings
from armillary.identity import app as identity_app
from armillary.identity.client import IdentityClient
from armillary.kit.app_factory import build_app
from armillary.kit.authz import AccessControl
from armillary.kit.logging import configure_logging
from armillary.kit.ratelimit import RateLimiter
from armillary.kit.runtime import Runtime
from armillary.kit.security import KeySet, TokenVerifier
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.kit.storage.doctor import ReferenceSource
from armillary.registry import app as registry_app
from armillary.registry.client import RegistryClient
from armillary.serving import app as serving_app
from armillary.tracking import app as tracking_app
from armillary.workflows import app as workflows_app
from armillary.workflows.client import WorkflowsClient
from armillary.workflows.components import workflows_of
from armillary.workflows.settings import WorkflowSettings

DESCRIPTION = (
    "Armillary: self-hosted ML workflow orchestration. Authenticate with "
    "`POST /api/v1/auth/token` and send the access token as `Authorization: Bearer ...`. "
    "Errors are RFC 9457 `application/problem+json`."
)


def create_runtime(
    settings: Settings,
    *,
    storage_settings: StorageSettings | None = None,
    data_settings: DataSettings | None = None,
    workflow_settings: WorkflowSettings | None = None,
    run_scheduler: bool = False,
    role: str = "api",
) -> Runtime:
    """Every service's components on one runtime. Settings not given come from the environment.
    With ``run_scheduler`` the workflow scheduler runs in this process (``armillary up``)."""
    runtime = Runtime.create(settings, role=role)
    runtime.limiter = RateLimiter.from_settings(settings)
    identity_app.install(runtime)
    data_app.install(runtime, settings=data_settings, storage_settings=storage_settings)
    workflows_app.install(
        runtime,
        storage_settings=storage_settings,
        settings=workflow_settings,
        run_scheduler=run_scheduler,
    )
    registry = registry_app.install(runtime, storage_settings=storage_settings)
    serving = serving_app.install(runtime, storage_settings=storage_settings)
    tracking = tracking_app.install(runtime)
    directory = IdentityClient.in_process(identity_app.create_internal_app(runtime))
    verifier = TokenVerifier(
        KeySet(directory.jwks, ttl=settings.jwks_cache_ttl_seconds),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    runtime.access = AccessControl(
        verifier, directory, runtime.cache, ttl=settings.permission_cache_ttl_seconds
    )
    runtime.access.subscribe_invalidations(runtime.bus)
    datasets = DataClient.in_process(data_app.create_internal_app(runtime))
    workflows_of(runtime).datasets = datasets
    registry.datasets = datasets
    jobs = WorkflowsClient.in_process(workflows_app.create_internal_app(runtime))
    registry.workflows = jobs
    models = RegistryClient.in_process(
        registry_app.create_internal_app(runtime), registry_app.create_private_app(runtime)
    )
    serving.registry = models
    # MLflow's registry API: the public models API, with each caller's token.
    tracking.registry = models

    async def close_directory(_runtime: Runtime) -> None:
        await directory.aclose()
        await datasets.aclose()
        await jobs.aclose()
        await models.aclose()

    runtime.shutdown_hooks.append(close_directory)
    return runtime


def create_app(
    settings: Settings | None = None,
    *,
    configure_logs: bool = True,
    storage_settings: StorageSettings | None = None,
    data_settings: DataSettings | None = None,
    workflow_settings: WorkflowSettings | None = None,
    run_scheduler: bool = False,
) -> FastAPI:
    """The embedded platform as one ASGI app."""
    settings = settings or Settings()
    if configure_logs:
        configure_logging(settings.log_level, json=settings.log_json)
    runtime = create_runtime(
        settings,
        storage_settings=storage_settings,
        data_settings=data_settings,
        workflow_settings=workflow_settings,
        run_scheduler=run_scheduler,
    )
    app = build_app(
        runtime,
        title="Armillary",
        description=DESCRIPTION,
        routers=[
            *identity_app.ROUTERS,
            *data_app.ROUTERS,
            *workflows_app.ROUTERS,
            *registry_app.ROUTERS,
            *serving_app.ROUTERS,
            *tracking_app.ROUTERS,
        ],
        hot_routes=(*identity_app.HOT_ROUTES, *serving_app.HOT_ROUTES),
    )
    # The web console, a client of the API above like the CLI (ADR 0038).
    console.install(app, limiter=runtime.limiter)
    return app


def storage_reference_sources() -> list[ReferenceSource]:
    """Each service's ``storage_references`` (the objects its rows own), for ``armillary
    doctor``: composed here, since kit knows no service."""
    from armillary.data.storage_references import storage_references as data_references
    from armillary.registry.storage_references import storage_references as registry_references
    from armillary.serving.storage_references import storage_references as serving_references
    from armillary.workflows.storage_references import (
        storage_references as workflows_references,
    )

    return [data_references, workflows_references, registry_references, serving_references]
