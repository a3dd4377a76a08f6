"""Composition of the distributed shape: one service per process (``armillary serve
<service>``), its calls to the other services over HTTP (ADR 0021).

Like ``app.py`` (the embedded shape) this module knows every service; no service knows it.
Each process serves its service's public routes and, under ``/internal``, the routes only
other services call, behind service credentials and the policy below.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from fastapi import APIRouter, FastAPI
from starlette.middleware import Middleware

from armillary.identity.client import IdentityClient
from armillary.kit import service_client
from armillary.kit.app_factory import build_app
from armillary.kit.authz import AccessControl
from armillary.kit.ratelimit import RateLimiter
from armillary.kit.runtime import Runtime
from armillary.kit.security import KeySet, TokenVerifier
from armillary.kit.service_auth import Policy, ServiceCallGuard, ServiceCredentials, ServiceVerifier
from armillary.kit.settings import SERVICE_PORTS, Settings
from armillary.kit.storage import StorageSettings

if TYPE_CHECKING:
    from armillary.data.settings import DataSettings
    from armillary.workflows.settings import WorkflowSettings

log = structlog.get_logger("armillary.services")

SERVICES = tuple(SERVICE_PORTS)
C = TypeVar("C")

# Who may call which internal route, per receiving service: (method, path) -> callers.
# Anything not listed is refused, whoever asks. Workflows (its worker and scheduler) mints job
# tokens; serving resolves deployments' model versions. Serving never mints job tokens.
INTERNAL_POLICY: dict[str, Policy] = {
    "identity": {("POST", "/internal/v1/job-tokens"): frozenset({"workflows"})},
    "registry": {("GET", "/internal/v1/model-versions/resolve"): frozenset({"serving"})},
}
# The services whose internal routes each service calls (it needs its own key for them).
INTERNAL_CALLS: dict[str, frozenset[str]] = {
    "serving": frozenset({"registry"}),
}


class UnknownService(ValueError):
    pass


def _check(service: str) -> None:
    if service not in SERVICES:
        raise UnknownService(f"unknown service {service!r}: one of {', '.join(SERVICES)}")


def service_app(service: str) -> ModuleType:
    """``armillary.<service>.app``, imported when asked for: a service's process loads its
    own service's code only, not the five others' (tens of MB each, for days)."""
    _check(service)
    return importlib.import_module(f"armillary.{service}.app")


def own_credentials(service: str, settings: Settings) -> ServiceCredentials | None:
    """This service's signing key, when it calls other services' internal routes. A missing
    key stops the process at start-up, not at its first call."""
    if not INTERNAL_CALLS.get(service):
        return None
    return ServiceCredentials.from_pem(service, settings.service_key_pem(service))


def create_service_runtime(
    service: str,
    settings: Settings,
    *,
    storage_settings: StorageSettings | None = None,
    data_settings: DataSettings | None = None,
    workflow_settings: WorkflowSettings | None = None,
    role: str | None = None,
) -> Runtime:
    """A runtime with ``service`` alone installed; the others are reached over HTTP at
    ``settings.service_urls()``. ``role`` names the process (its pool size): the service's
    name by default, ``worker`` or ``scheduler`` for the workflow engine's processes."""
    _check(service)
    service_client.trust(settings.tls_ca_file)
    urls = settings.service_urls()
    credentials = own_credentials(service, settings)
    if getattr(settings, "event_transport", "in_process") != "rabbitmq":
        # In process, this process's bus knows its own service's consumers only: events
        # for the others' consumers (audit entries for identity, ...) never reach them.
        log.warning("service_process.events_in_process", service=service)
    # Its own schema only (ADR 0026): another service's tables are not even visible.
    runtime = Runtime.create(settings, role=role or service, schemas=(service,))
    runtime.limiter = RateLimiter.from_settings(settings)
    clients: list[Any] = []
    app = service_app(service)
    if service == "identity":
        app.install(runtime)
        directory = IdentityClient.in_process(app.create_internal_app(runtime))
    else:
        directory = IdentityClient.over_http(urls["identity"])
    clients.append(directory)
    if service == "data":
        app.install(runtime, settings=data_settings, storage_settings=storage_settings)
    elif service == "workflows":
        from armillary.data.client import DataClient
        from armillary.workflows.components import workflows_of

        app.install(runtime, storage_settings=storage_settings, settings=workflow_settings)
        workflows_of(runtime).datasets = _keep(clients, DataClient.over_http(urls["data"]))
    elif service == "registry":
        from armillary.data.client import DataClient
        from armillary.workflows.client import WorkflowsClient

        registry = app.install(runtime, storage_settings=storage_settings)
        registry.datasets = _keep(clients, DataClient.over_http(urls["data"]))
        registry.workflows = _keep(clients, WorkflowsClient.over_http(urls["workflows"]))
    elif service == "serving":
        from armillary.registry.client import RegistryClient

        serving = app.install(runtime, storage_settings=storage_settings)
        serving.registry = _keep(
            clients,
            RegistryClient.over_http(urls["registry"], urls["registry"], credentials=credentials),
        )
    elif service == "tracking":
        from armillary.registry.client import RegistryClient

        tracking = app.install(runtime)
        # MLflow's registry API calls the registry's public routes with the caller's token.
        tracking.registry = _keep(clients, RegistryClient.over_http(urls["registry"]))
    verifier = TokenVerifier(
        KeySet(directory.jwks, ttl=settings.jwks_cache_ttl_seconds),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    runtime.access = AccessControl(
        verifier, directory, runtime.cache, ttl=settings.permission_cache_ttl_seconds
    )
    runtime.access.subscribe_invalidations(runtime.bus)

    async def close_clients(_runtime: Runtime) -> None:
        for client in clients:
            await client.aclose()

    runtime.shutdown_hooks.append(close_clients)
    return runtime


def _keep(clients: list[Any], client: C) -> C:
    """``client``, closed with the runtime."""
    clients.append(client)
    return client


def routers_of(service: str) -> list[APIRouter]:
    """What a service's process serves: its public routes (the gateway's routes) and its
    internal ones (never routed by the gateway)."""
    app = service_app(service)
    return [*app.ROUTERS, *getattr(app, "INTERNAL_ROUTERS", [])]


def create_service_app(
    service: str,
    settings: Settings | None = None,
    *,
    storage_settings: StorageSettings | None = None,
    data_settings: DataSettings | None = None,
    workflow_settings: WorkflowSettings | None = None,
) -> FastAPI:
    """Service ``service`` as one ASGI app: its public routes, and its internal routes
    behind service credentials (every ``/internal`` path is guarded, routed or not)."""
    _check(service)
    settings = settings or Settings()
    runtime = create_service_runtime(
        service,
        settings,
        storage_settings=storage_settings,
        data_settings=data_settings,
        workflow_settings=workflow_settings,
    )
    if runtime.limiter is not None:
        # Service calls are not a client's traffic: a worker fleet minting job tokens from one
        # address must not spend a user's budget. Only a service credential gets through.
        runtime.limiter.delegate(r"/internal(/|$)")
    policy = INTERNAL_POLICY.get(service, {})
    guard = ServiceVerifier.from_directory(service, settings.service_keys_dir(), policy, SERVICES)
    return build_app(
        runtime,
        title=f"Armillary {service}",
        routers=routers_of(service),
        middleware=[Middleware(ServiceCallGuard, verifier=guard)],
        hot_routes=getattr(service_app(service), "HOT_ROUTES", ()),
    )
