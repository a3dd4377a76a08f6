"""The console as a process of its own (the distributed shape, ``armillary serve console``):
its pages behind the gateway, its API calls over HTTP to the gateway
(``ARMILLARY_CONSOLE_API_URL``), like any other client. It has no database, no schema and no
queue: nothing but the API to depend on."""

from __future__ import annotations

import os
from ipaddress import ip_address
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from armillary.kit.metrics import MetricsMiddleware
from armillary.kit.request_context import RequestContextMiddleware
from armillary.kit.security_headers import SecurityHeadersMiddleware
from armillary.kit.settings import InsecureSettings, Settings
from armillary.kit.tls import is_loopback

from . import install
from .settings import ConsoleSettings


class ApiUrlMissing(ValueError):
    """The console's process was started without the API's address."""


class ForwardedScheme:
    """Behind a trusted proxy (the gateway, which may terminate TLS) the request's scheme is
    the one the browser used (``X-Forwarded-Proto``): cookies are then ``Secure`` and HSTS
    is sent. A header from any other peer is ignored."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.trusted = settings.trusted_proxy_networks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            peer = scope.get("client")
            if peer and self._trusted(str(peer[0])):
                for key, value in scope.get("headers", []):
                    if key == b"x-forwarded-proto" and value in (b"http", b"https"):
                        scope = {**scope, "scheme": value.decode()}
                        break
        await self.app(scope, receive, send)

    def _trusted(self, host: str) -> bool:
        try:
            address = ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)


def process_settings() -> Settings:
    """The console process's settings. The production profile's checks of the platform's
    secret key and database do not apply (the console holds neither), so the settings are
    read as the embedded profile's; what that profile demands of the console itself is
    checked here: no plaintext hop off the machine, neither its own listener nor its calls to
    the API (which carry the users' tokens)."""
    settings = Settings(profile="embedded")
    if os.environ.get("ARMILLARY_PROFILE", "embedded") != "production":
        return settings
    hops = []
    if not (
        settings.tls_cert_file or settings.tls_terminated_by_proxy or is_loopback(settings.host)
    ):
        hops.append("the console's listener (ARMILLARY_TLS_CERT_FILE, or a TLS-terminating proxy)")
    api_url = ConsoleSettings().api_url or ""
    api = urlsplit(api_url)
    if api.scheme != "https" and not is_loopback(api.hostname) and not settings.tls_service_mesh:
        hops.append("the API (an https:// ARMILLARY_CONSOLE_API_URL, or a service mesh)")
    if hops:
        raise InsecureSettings("; ".join(f"{hop} is plaintext off this machine" for hop in hops))
    return settings


def create_console_app(
    settings: Settings | None = None, console_settings: ConsoleSettings | None = None
) -> FastAPI:
    settings = settings or Settings()
    console_settings = console_settings or ConsoleSettings()
    if not console_settings.api_url:
        raise ApiUrlMissing(
            "ARMILLARY_CONSOLE_API_URL must point at the gateway (the console's process "
            "calls the API over HTTP), e.g. http://127.0.0.1:8000"
        )
    app = FastAPI(
        title="Armillary console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        middleware=[
            Middleware(ForwardedScheme, settings=settings),
            Middleware(SecurityHeadersMiddleware),
            Middleware(RequestContextMiddleware, settings=settings),
            Middleware(MetricsMiddleware, service="console"),
        ],
    )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        # Liveness and readiness alike: the console holds no state and needs no database;
        # when the API is down its pages say so.
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    install(app, console_settings)
    return app
