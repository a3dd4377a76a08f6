"""The workflows service's long-lived parts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from fastapi import Request

from armillary.contracts.tasks import TASK_TYPES, TaskTypeContract
from armillary.kit.runtime import Runtime
from armillary.kit.storage import ObjectStore

from .code.schemas import CodeSettings
from .settings import WorkflowSettings

SERVICE = "workflows"


class DatasetDirectory(Protocol):
    """What the workflows service asks the data service (implemented by ``data.client``)."""

    async def version_columns(
        self, token: str, project: str, dataset: str, version: int | Literal["latest"]
    ) -> list[dict[str, str]] | None: ...


@dataclass
class Workflows:
    runtime: Runtime
    # Contracts only: the workflow service validates specs without the implementations.
    task_types: Mapping[str, TaskTypeContract]
    # Where code bundles' bytes live (set by workflows.app.install) and their limits.
    store: ObjectStore | None = None
    code_settings: CodeSettings = field(default_factory=CodeSettings)
    settings: WorkflowSettings = field(default_factory=WorkflowSettings)
    # The data service's client, for checks of specs that name datasets (wired by the
    # composition root; without it those checks are skipped).
    datasets: DatasetDirectory | None = None

    @classmethod
    def create(
        cls, runtime: Runtime, *, task_types: Mapping[str, TaskTypeContract] | None = None
    ) -> Workflows:
        return cls(runtime, dict(TASK_TYPES if task_types is None else task_types))


def workflows_of(runtime: Runtime) -> Workflows:
    component = runtime.services[SERVICE]
    assert isinstance(component, Workflows)  # noqa: S101 - wired by workflows.app.install
    return component


def current_workflows(request: Request) -> Workflows:
    return workflows_of(request.app.state.runtime)
