"""The tracking service's long-lived parts."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from armillary.kit.runtime import Runtime

from .settings import TrackingSettings

SERVICE = "tracking"


@dataclass
class Tracking:
    settings: TrackingSettings
    runtime: Runtime


def tracking_of(runtime: Runtime) -> Tracking:
    component = runtime.services[SERVICE]
    assert isinstance(component, Tracking)  # noqa: S101 - wired by tracking.app.install
    return component


def current_tracking(request: Request) -> Tracking:
    return tracking_of(request.app.state.runtime)
