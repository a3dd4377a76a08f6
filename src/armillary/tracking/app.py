"""Wires the tracking service into a runtime."""

from __future__ import annotations

from fastapi import APIRouter

from armillary.kit.runtime import Runtime

from .components import SERVICE, Tracking
from .experiments.api import router as experiments_router
from .runs.api import router as runs_router
from .settings import TrackingSettings

# MLflow's REST API under /mlflow/{project}/api/2.0/mlflow (ADR 0037).
ROUTERS: list[APIRouter] = [experiments_router, runs_router]


def install(runtime: Runtime, *, settings: TrackingSettings | None = None) -> Tracking:
    """Put the tracking service on ``runtime``."""
    tracking = Tracking(settings or TrackingSettings(), runtime)
    runtime.services[SERVICE] = tracking
    return tracking
