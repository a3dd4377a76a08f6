"""The web console: server-rendered pages under ``/ui`` that call the public API as the
signed-in user (ADR 0038). It imports only ``kit`` and ``contracts``, never a service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .pages import install_error_pages, redirect
from .routes import router
from .settings import ConsoleSettings

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI, settings: ConsoleSettings | None = None) -> None:
    """Serves the console from ``app``: pages under ``/ui``, its assets under
    ``/ui/static``, and ``/`` sends a browser to ``/ui``."""
    app.state.console_settings = settings or ConsoleSettings()
    install_error_pages(app)
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="console-static")

    @app.get("/", include_in_schema=False)
    async def root() -> object:
        return redirect("/ui")
