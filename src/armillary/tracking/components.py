"""The tracking service's long-lived parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Request

from armillary.kit.errors import ServiceUnavailable
from armillary.kit.runtime import Runtime
from armillary.kit.storage import ObjectStore, StorageSettings, open_object_store

from .settings import TrackingSettings

SERVICE = "tracking"


class ModelRegistry(Protocol):
    """What MLflow's registry API asks the registry service (``RegistryClient``): its public
    models API, with the caller's own token, so the registry decides what the caller may do."""

    async def models_api(
        self,
        method: str,
        token: str,
        project: str,
        path: str = "",
        *,
        json: Any = None,
        params: Any = None,
    ) -> tuple[int, Any]: ...


@dataclass
class Tracking:
    settings: TrackingSettings
    runtime: Runtime
    # Runs' artifacts (the mlflow-artifacts proxy).
    storage_settings: StorageSettings
    store: ObjectStore
    # The registry's typed client, set by the composition root (MLflow's registry API).
    registry: ModelRegistry | None = None

    def require_registry(self) -> ModelRegistry:
        if self.registry is None:
            raise ServiceUnavailable("The tracking service cannot reach the model registry")
        return self.registry

    @classmethod
    def create(
        cls,
        runtime: Runtime,
        *,
        settings: TrackingSettings | None = None,
        storage_settings: StorageSettings | None = None,
    ) -> Tracking:
        storage_settings = storage_settings or StorageSettings()
        store = open_object_store(
            storage_settings,
            home=runtime.settings.home,
            signing_secret=runtime.settings.resolved_secret_key(),
        )
        return cls(settings or TrackingSettings(), runtime, storage_settings, store)


def tracking_of(runtime: Runtime) -> Tracking:
    component = runtime.services[SERVICE]
    assert isinstance(component, Tracking)  # noqa: S101 - wired by tracking.app.install
    return component


async def current_tracking(request: Request) -> Tracking:
    return tracking_of(request.app.state.runtime)
