"""uvicorn factory for the identity service's own process, as `armillary serve identity`
builds it (a factory with no arguments, which uvicorn's --factory needs)."""

from __future__ import annotations

from fastapi import FastAPI

from armillary.services import create_service_app


def create() -> FastAPI:
    return create_service_app("identity")
