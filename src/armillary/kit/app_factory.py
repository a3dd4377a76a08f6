"""Builds a FastAPI application with the kit's middleware, error handling and endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.middleware import Middleware
from starlette.types import Scope

from armillary.kit import health, tracing
from armillary.kit.audit import AuditFallbackMiddleware
from armillary.kit.first_routes import match_first
from armillary.kit.metrics import SERVICES, MetricsMiddleware
from armillary.kit.problems import install_error_handlers, install_openapi
from armillary.kit.ratelimit import RateLimitMiddleware
from armillary.kit.request_context import RequestContextMiddleware
from armillary.kit.runtime import Runtime
from armillary.kit.security import InvalidToken, bearer_token
from armillary.kit.security_headers import SecurityHeadersMiddleware

# Routes that answer without a token. Everything else must say 401 to an anonymous caller.
# Metrics are not among them: they are served on a listener of their own (kit.metrics).
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/api/v1/auth/token",
        "/api/v1/auth/refresh",
        "/api/v1/auth/jwks",
        # Signed, expiring object links: the token in the path is the credential.
        "/api/v1/downloads/{token}",
        # Open Inference Protocol health, public like /healthz (models need a credential).
        "/v2/health/live",
        "/v2/health/ready",
    }
)

# FastAPI's own (native) telemetry, off: server spans come from the OpenTelemetry FastAPI
# instrumentation (kit.tracing.instrument_app), metrics from Prometheus (kit.metrics). Left
# on, it looks for that instrumentation in the middleware stack on every request only to
# stand aside (ADR 0046).
FASTAPI_TELEMETRY_OFF: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def build_app(
    runtime: Runtime,
    *,
    title: str,
    routers: Iterable[APIRouter],
    edge: bool = True,
    manage_runtime: bool = True,
    description: str = "",
    version: str = "0.1.0",
    middleware: Iterable[Middleware] = (),
    hot_routes: Iterable[str] = (),
) -> FastAPI:
    """An app serving ``routers`` on ``runtime``. ``edge`` adds the client-facing layers (rate
    limits); ``manage_runtime`` makes the app's lifespan start and stop the runtime;
    ``middleware`` goes innermost (its domain errors are rendered as problems);
    ``hot_routes`` (route names) are matched before all others (:mod:`.first_routes`)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_runtime:
            await runtime.start()
        try:
            yield
        finally:
            if manage_runtime:
                await runtime.stop()

    layers = [
        Middleware(SecurityHeadersMiddleware),
        Middleware(RequestContextMiddleware, settings=runtime.settings),
    ]
    # The process's service labels the routes of none (health, unmatched paths).
    own = runtime.role if runtime.role in SERVICES else "platform"
    layers.append(Middleware(MetricsMiddleware, service=own))
    if edge and runtime.limiter is not None and runtime.settings.rate_limit_enabled:
        layers.append(
            Middleware(RateLimitMiddleware, limiter=runtime.limiter, identify=_identify(runtime))
        )
    # Security events are the clients' doing: recorded at the edge, not again by the
    # in-process apps that other services' clients call on the same request's behalf.
    sampler = runtime.security_events if edge else None
    layers.append(Middleware(AuditFallbackMiddleware, sampler=sampler))
    layers.extend(middleware)

    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        middleware=layers,
        telemetry=FASTAPI_TELEMETRY_OFF,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(health.router)
    routers = list(routers)
    for router in routers:
        app.include_router(router)
    match_first(app, routers, hot_routes)
    install_openapi(app, public_paths=PUBLIC_PATHS)
    tracing.instrument_app(app)
    return app


def _identify(runtime: Runtime) -> Any:
    """Verifies the bearer token once for the rate limiter and leaves the claims for the
    route's auth dependency (``request.state.token_claims``)."""

    async def identify(scope: Scope) -> str | None:
        for key, value in scope.get("headers", []):
            if key == b"authorization":
                token = bearer_token(value.decode("latin-1"))
                break
        else:
            return None
        if token is None:
            return None
        try:
            claims = await runtime.require_access().verifier.verify(token)
        except InvalidToken:
            return None
        scope.setdefault("state", {})["token_claims"] = claims
        return str(claims["sub"])

    return identify
