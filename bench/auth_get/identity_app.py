"""uvicorn factory for the identity service's own process, set up as `armillary serve
identity` sets it up (logging, tracing from OTEL_*, the service app); a factory with no
arguments, which uvicorn's --factory needs."""

from __future__ import annotations

from fastapi import FastAPI

from armillary.kit import tracing
from armillary.kit.logging import configure_logging
from armillary.kit.settings import Settings
from armillary.services import create_service_app


def create() -> FastAPI:
    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    tracing.setup("identity")
    return create_service_app("identity", settings)
