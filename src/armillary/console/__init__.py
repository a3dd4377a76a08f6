"""The web console: server-rendered pages under ``/ui`` that call the public API as the
signed-in user (ADR 0038). It imports only ``kit`` and ``contracts``, never a service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from armillary.kit.ratelimit import RateLimiter

from .pages import install_error_pages, redirect
from .routes import router
from .routes_admin import router as admin_router
from .routes_alerts import router as alerts_router
from .routes_datasets import router as datasets_router
from .routes_deployments import router as deployments_router
from .routes_jobs import router as jobs_router
from .routes_models import router as models_router
from .settings import ConsoleSettings

STATIC = Path(__file__).parent / "static"


# The console's own paths: "/", "/ui" and everything under it.
CONSOLE_PATHS = r"/(ui(/.*)?)?$"


def install(
    app: FastAPI, settings: ConsoleSettings | None = None, limiter: RateLimiter | None = None
) -> None:
    """Serves the console from ``app``: pages under ``/ui``, its assets under
    ``/ui/static``, and ``/`` sends a browser to ``/ui``. Every API call a page makes is
    limited by the API as the signed-in user's (or, signing in, as the address's); the page
    requests themselves are left out of ``limiter``'s per-address budgets, so that users
    behind one NAT do not share a budget twice."""
    app.state.console_settings = settings or ConsoleSettings()
    if limiter is not None:
        limiter.delegate(CONSOLE_PATHS)
    install_error_pages(app)
    for pages in (
        router,
        datasets_router,
        jobs_router,
        models_router,
        deployments_router,
        alerts_router,
        admin_router,
    ):
        app.include_router(pages)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="console-static")

    @app.get("/", include_in_schema=False)
    async def root() -> object:
        return redirect("/ui")
