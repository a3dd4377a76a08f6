"""The registry service's long-lived parts, and what it asks other services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Request

from armillary.kit.errors import ServiceUnavailable
from armillary.kit.runtime import Runtime
from armillary.kit.storage import ObjectStore, StorageSettings, open_object_store

from .settings import RegistrySettings

SERVICE = "registry"


class WorkflowsLookup(Protocol):
    """The workflows service as the registry needs it (set by the composition root)."""

    async def job(self, token: str, job_id: str) -> dict[str, Any] | None:
        """The JSON of ``GET /api/v1/jobs/{job_id}`` as the token's holder sees it, or None."""
        ...


class DatasetLookup(Protocol):
    """The data service as the registry needs it (set by the composition root)."""

    async def dataset_version(
        self, token: str, project: str, dataset: str, version: int
    ) -> dict[str, Any] | None:
        """The JSON of ``GET .../datasets/{dataset}/versions/{version}`` (with ``dataset_id``
        and ``sha256``), or None when the token's holder cannot see it."""
        ...


@dataclass
class Registry:
    settings: RegistrySettings
    store: ObjectStore
    runtime: Runtime
    workflows: WorkflowsLookup | None = None
    datasets: DatasetLookup | None = None

    @classmethod
    def create(
        cls,
        runtime: Runtime,
        *,
        settings: RegistrySettings | None = None,
        storage_settings: StorageSettings | None = None,
        store: ObjectStore | None = None,
    ) -> Registry:
        store = store or open_object_store(
            storage_settings or StorageSettings(),
            home=runtime.settings.home,
            signing_secret=runtime.settings.resolved_secret_key(),
        )
        return cls(settings or RegistrySettings(), store, runtime)

    def require_workflows(self) -> WorkflowsLookup:
        if self.workflows is None:
            raise ServiceUnavailable("The registry cannot reach the workflows service")
        return self.workflows

    def require_datasets(self) -> DatasetLookup:
        if self.datasets is None:
            raise ServiceUnavailable("The registry cannot reach the data service")
        return self.datasets


def registry_of(runtime: Runtime) -> Registry:
    component = runtime.services[SERVICE]
    assert isinstance(component, Registry)  # noqa: S101 - wired by registry.app.install
    return component


def current_registry(request: Request) -> Registry:
    return registry_of(request.app.state.runtime)
