"""The serving service's long-lived parts, and what it asks other services."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from armillary.kit.errors import ServiceUnavailable
from armillary.kit.runtime import Runtime
from armillary.kit.storage import ObjectStore, StorageSettings, open_object_store

from .deployments.resolve import DeploymentDirectory
from .deployments.service import ModelResolver
from .settings import ServingSettings

SERVICE = "serving"


@dataclass
class Serving:
    settings: ServingSettings
    # Read-only use: model files the registry stored.
    store: ObjectStore
    runtime: Runtime
    cache_dir: Path
    # The registry's typed client (``RegistryClient`` with its private app), set by the
    # composition root.
    registry: ModelResolver | None = None
    directory: DeploymentDirectory = field(init=False)

    def __post_init__(self) -> None:
        self.directory = DeploymentDirectory(
            self.runtime.db,
            self.store,
            cache_root=self.cache_dir / "models",
            ttl=self.settings.directory_ttl_seconds,
            resolver=self.require_registry,
        )

    @classmethod
    def create(
        cls,
        runtime: Runtime,
        *,
        settings: ServingSettings | None = None,
        storage_settings: StorageSettings | None = None,
        store: ObjectStore | None = None,
    ) -> Serving:
        settings = settings or ServingSettings()
        store = store or open_object_store(
            storage_settings or StorageSettings(),
            home=runtime.settings.home,
            signing_secret=runtime.settings.resolved_secret_key(),
        )
        cache_dir = (
            Path(settings.cache_dir) if settings.cache_dir else runtime.settings.home / "serving"
        )
        return cls(settings, store, runtime, cache_dir)

    def require_registry(self) -> ModelResolver:
        if self.registry is None:
            raise ServiceUnavailable("The prediction service cannot reach the model registry")
        return self.registry


def serving_of(runtime: Runtime) -> Serving:
    component = runtime.services[SERVICE]
    assert isinstance(component, Serving)  # noqa: S101 - wired by serving.app.install
    return component


def current_serving(request: Request) -> Serving:
    return serving_of(request.app.state.runtime)
