"""Events the serving service consumes: its own deployment changes and alias moves (to swap
resolved deployments), and project deletions (their deployments go with them)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.events import ProjectDeleted
from armillary.contracts.registry import AliasMoved
from armillary.contracts.serving import DeploymentChanged
from armillary.kit.events import Delivery, EventBus

from . import service
from .resolve import DeploymentDirectory

DIRECTORY = "serving.directory"
PROJECTS = "serving.projects"


def subscribe(bus: EventBus, directory: DeploymentDirectory) -> None:
    # The directory lives in each process's memory: its changes are broadcast (ADR 0020).
    async def deployment_changed(delivery: Delivery) -> None:
        directory.invalidate(DeploymentChanged.model_validate(delivery.payload).deployment_id)

    async def alias_moved(delivery: Delivery) -> None:
        event = AliasMoved.model_validate(delivery.payload)
        await directory.alias_moved(event.project_id, event.model, event.alias)

    async def project_deleted(session: AsyncSession, delivery: Delivery) -> None:
        event = ProjectDeleted.model_validate(delivery.payload)
        await service.project_deleted(session, event.project_id)

    async def drop_all() -> None:
        directory.clear()

    bus.broadcast(DeploymentChanged.TYPE, DIRECTORY, deployment_changed, drop_all=drop_all)
    bus.broadcast(AliasMoved.TYPE, DIRECTORY, alias_moved, drop_all=drop_all)
    bus.subscribe(ProjectDeleted.TYPE, PROJECTS, project_deleted)
