"""Wires the tracking service into a runtime."""

from __future__ import annotations

from fastapi import APIRouter

from armillary.kit.runtime import Runtime
from armillary.kit.service_status import service_status_router

from .artifacts.api import proxy_router as artifacts_proxy_router
from .artifacts.api import router as artifacts_router
from .compare.api import router as compare_router
from .components import SERVICE, Tracking
from .experiments.api import router as experiments_router
from .logged_models import router as logged_models_router
from .model_registry.api import router as model_registry_router
from .runs.api import router as runs_router
from .settings import TrackingSettings

# MLflow's REST API under /mlflow/{project}/api/2.0/mlflow (ADR 0037).
# The artifact proxy under /mlflow/{project}/api/2.0/mlflow-artifacts, as `mlflow server
# --serve-artifacts` serves it.
ROUTERS: list[APIRouter] = [
    experiments_router,
    runs_router,
    artifacts_router,
    artifacts_proxy_router,
    logged_models_router,
    model_registry_router,
    # Armillary's own API over runs (compare, history, export), under /api/v1/projects.
    compare_router,
    service_status_router("tracking"),
]


def install(runtime: Runtime, *, settings: TrackingSettings | None = None) -> Tracking:
    """Put the tracking service on ``runtime``."""
    tracking = Tracking.create(runtime, settings=settings)
    runtime.services[SERVICE] = tracking
    return tracking
