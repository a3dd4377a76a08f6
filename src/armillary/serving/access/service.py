"""API keys (shown once, stored as a SHA-256 hash, revoked at once) and predict grants; every
change audited in the caller's transaction."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from functools import partial

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.serving import ApiKeyRevoked
from armillary.kit import audit
from armillary.kit.authz import ProjectAccess
from armillary.kit.cache import Cache
from armillary.kit.db import after_commit, utcnow
from armillary.kit.errors import NotFound
from armillary.kit.events import publish

from ..deployments.models import Deployment
from ..deployments.service import SERVICE, refuse_job
from . import key_cache
from . import repository as repo
from .models import ApiKey, Grant

log = structlog.get_logger("armillary.serving.access")

KEY_PREFIX = "amk_"
PREFIX_SHOWN = 8
# token_urlsafe(32) is 43 characters; anything much longer is not one of ours.
MAX_KEY_LENGTH = 128


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    # The key carries 256 random bits: a fast hash is enough (no dictionary to attack), and
    # the predict hot path can afford it on every request.
    return hashlib.sha256(key.encode()).hexdigest()


def _audit(
    session: AsyncSession,
    deployment: Deployment,
    action: str,
    resource: uuid.UUID,
    **details: object,
) -> None:
    audit.record(
        session,
        action=f"deployments.{action}",
        resource_type="deployment",
        resource_id=deployment.id,
        details={"name": deployment.name, "target": str(resource), **details},
        service=SERVICE,
    )


async def create_key(
    session: AsyncSession, access: ProjectAccess, deployment: Deployment, name: str
) -> tuple[ApiKey, str]:
    """A new key for ``deployment``; the key itself is returned here and never again."""
    refuse_job(access, "manage API keys")
    key = new_key()
    row = ApiKey(
        deployment_id=deployment.id,
        name=name,
        prefix=key[:PREFIX_SHOWN],
        key_hash=key_hash(key),
        created_by=access.principal.user_id,
        created_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    _audit(session, deployment, "key_create", row.id, key_name=name, prefix=row.prefix)
    return row, key


async def revoke_key(
    session: AsyncSession,
    access: ProjectAccess,
    deployment: Deployment,
    key_id: uuid.UUID,
    cache: Cache,
) -> None:
    refuse_job(access, "manage API keys")
    row = await repo.key(session, deployment.id, key_id)
    if row is None:
        raise NotFound("API key not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        _audit(session, deployment, "key_revoke", row.id, key_name=row.name, prefix=row.prefix)
        # The cache learns it after the commit, here and again from the event (retried).
        event = ApiKeyRevoked(deployment_id=deployment.id, key_id=row.id, key_hash=row.key_hash)
        publish(session, ApiKeyRevoked.TYPE, event)
        after_commit(session, partial(_tombstone, cache, row.key_hash))


async def _tombstone(cache: Cache, digest: str) -> None:
    try:
        await key_cache.revoked(cache, digest)
    except key_cache.TombstoneNotWritten:
        log.warning("api_key_tombstone_deferred")  # the event writes it when the cache is back


async def grant(
    session: AsyncSession, access: ProjectAccess, deployment: Deployment, user_id: uuid.UUID
) -> Grant:
    refuse_job(access, "grant access")
    found = await repo.grant(session, deployment.id, user_id)
    if found is not None:
        return found
    row = Grant(
        deployment_id=deployment.id,
        user_id=user_id,
        granted_by=access.principal.user_id,
        at=utcnow(),
    )
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        # Granted concurrently: the same outcome.
        found = await repo.grant(session, deployment.id, user_id)
        if found is None:  # pragma: no cover - the conflicting row exists
            raise
        return found
    _audit(session, deployment, "grant", user_id)
    return row


async def revoke_grant(
    session: AsyncSession, access: ProjectAccess, deployment: Deployment, user_id: uuid.UUID
) -> None:
    refuse_job(access, "revoke access")
    found = await repo.grant(session, deployment.id, user_id)
    if found is None:
        raise NotFound("Grant not found")
    await session.delete(found)
    _audit(session, deployment, "grant_revoke", user_id)
