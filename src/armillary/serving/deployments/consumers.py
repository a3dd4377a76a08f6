"""Events the serving service consumes: its own deployment changes and alias moves (to swap
resolved deployments), project deletions (their deployments go with them), and revoked API
keys (their tombstones in the key cache)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.events import ProjectDeleted
from armillary.contracts.registry import AliasMoved
from armillary.contracts.serving import ApiKeyRevoked, DeploymentChanged
from armillary.kit.cache import Cache
from armillary.kit.events import Delivery, EventBus

from ..access import key_cache
from . import service
from .resolve import DeploymentDirectory

DIRECTORY = "serving.directory"
PROJECTS = "serving.projects"
KEYS = "serving.api_keys"
KEY_CACHE = "serving.key_cache"


def subscribe(bus: EventBus, directory: DeploymentDirectory, cache: Cache) -> None:
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

    # A revoked key's tombstone in the key cache (the revoking request wrote it after its
    # commit, in its own process's cache). Every process writes it into its own cache (a
    # broadcast: memory caches are per process), and one consumer writes it again, retried
    # while the cache is away (a shared Redis that missed it must still get it).
    async def key_revoked(delivery: Delivery) -> None:
        await key_cache.revoked(cache, ApiKeyRevoked.model_validate(delivery.payload).key_hash)

    async def key_revoked_retried(_session: AsyncSession, delivery: Delivery) -> None:
        await key_revoked(delivery)

    async def forget_keys() -> None:
        await key_cache.forget_all(cache)

    bus.broadcast(ApiKeyRevoked.TYPE, KEY_CACHE, key_revoked, drop_all=forget_keys)
    bus.subscribe(ApiKeyRevoked.TYPE, KEYS, key_revoked_retried)
