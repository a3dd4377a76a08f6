"""Deployments: create, reconfigure, roll back, delete. Every change is a new immutable
configuration version with who, when and why, an audit entry and a ``DeploymentChanged``
event, all in the caller's transaction."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.serving import DeploymentChanged
from armillary.kit import audit, context
from armillary.kit.authz import ProjectAccess
from armillary.kit.db import next_number, utcnow
from armillary.kit.errors import Conflict, Forbidden, NotFound, Unprocessable
from armillary.kit.events import publish

from . import repository as repo
from .models import Deployment, DeploymentConfig
from .schemas import DeploymentCreate, DeploymentUpdate, PolicyIn, RoutingIn, VariantIn

SERVICE = "serving"


class ModelResolver(Protocol):
    """The registry as serving needs it (``RegistryClient.resolve``)."""

    async def resolve(
        self,
        project_id: uuid.UUID | str,
        model: str,
        *,
        version: int | None = None,
        alias: str | None = None,
    ) -> dict[str, Any] | None: ...


class InvalidVariants(Unprocessable):
    title = "Invalid variants"


def refuse_job(access: ProjectAccess, activity: str) -> None:
    """Job tokens create and reconfigure deployments (the ``deploy`` task); nothing else."""
    if access.principal.is_job:
        raise Forbidden(f"Job tokens cannot {activity}")


def check_variants(variants: Sequence[VariantIn]) -> None:
    """The rules a configuration obeys, each refused with a message that says which."""
    names = [v.name for v in variants]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidVariants(f"Variant names must be unique: {', '.join(repeated)} repeated")
    for v in variants:
        if (v.version is None) == (v.alias is None):
            raise InvalidVariants(f"Variant {v.name!r}: give exactly one of 'version' and 'alias'")
    shadows = [v.name for v in variants if v.shadow]
    if len(shadows) > 1:
        raise InvalidVariants(f"At most one shadow variant: {', '.join(shadows)} are shadows")
    if not any(not v.shadow and v.weight > 0 for v in variants):
        raise InvalidVariants("At least one variant that is not a shadow needs a weight above 0")


Resolution = dict[str, dict[str, Any]]


async def resolve_variants(
    resolver: ModelResolver, project_id: uuid.UUID, variants: Sequence[VariantIn]
) -> Resolution:
    """What each variant names now, by variant name; 422 naming the first variant whose model
    version or alias does not exist."""
    found: Resolution = {}
    for v in variants:
        answer = await resolver.resolve(project_id, v.model, version=v.version, alias=v.alias)
        if answer is None:
            what = f"version {v.version}" if v.version is not None else f"alias {v.alias!r}"
            raise InvalidVariants(f"Variant {v.name!r}: model {v.model!r} has no {what}")
        found[v.name] = answer
    return found


def _stored(variants: Sequence[VariantIn]) -> list[dict[str, Any]]:
    return [v.model_dump(mode="json") for v in variants]


def _changed(
    session: AsyncSession,
    deployment: Deployment,
    *,
    action: str,
    details: dict[str, Any],
    actor_label: str | None = None,
) -> None:
    audit.record(
        session,
        action=f"deployments.{action}",
        resource_type="deployment",
        resource_id=deployment.id,
        details={"name": deployment.name, **details},
        actor_label=actor_label,
        service=SERVICE,
    )
    version = 0 if deployment.deleted_at is not None else deployment.config_version
    event = DeploymentChanged(
        project_id=deployment.project_id,
        deployment_id=deployment.id,
        name=deployment.name,
        config_version=version,
    )
    publish(session, DeploymentChanged.TYPE, event)


def _add_config(
    session: AsyncSession,
    deployment: Deployment,
    *,
    variants: list[dict[str, Any]],
    routing: dict[str, Any],
    policy: dict[str, Any],
    reason: str,
    kind: str,
    access: ProjectAccess | None,
    restored: int | None = None,
) -> DeploymentConfig:
    config = DeploymentConfig(
        deployment_id=deployment.id,
        version=deployment.config_version,
        variants=variants,
        routing=routing,
        policy=policy,
        reason=reason,
        kind=kind,
        restored_version=restored,
        created_by=access.principal.user_id if access else None,
        job_id=access.principal.job_id if access else None,
        created_at=utcnow(),
    )
    session.add(config)
    return config


async def create(
    session: AsyncSession, access: ProjectAccess, data: DeploymentCreate, resolver: ModelResolver
) -> tuple[Deployment, DeploymentConfig, Resolution]:
    check_variants(data.variants)
    if await repo.deployment(session, access.project_id, data.name) is not None:
        raise Conflict("A deployment with this name already exists in the project")
    resolution = await resolve_variants(resolver, access.project_id, data.variants)
    now = utcnow()
    deployment = Deployment(
        project_id=access.project_id,
        project_slug=access.project_slug,
        name=data.name,
        description=data.description,
        config_version=1,
        created_by=access.principal.user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(deployment)
    try:
        await session.flush()
    except IntegrityError:
        # Someone created the same name between our check and our insert.
        raise Conflict("A deployment with this name already exists in the project") from None
    config = _add_config(
        session,
        deployment,
        variants=_stored(data.variants),
        routing=data.routing.model_dump(mode="json"),
        policy=data.policy.model_dump(mode="json"),
        reason=data.reason,
        kind="create",
        access=access,
    )
    await session.flush()
    _changed(session, deployment, action="create", details=_summary(config))
    return deployment, config, resolution


async def get(session: AsyncSession, access: ProjectAccess, ref: str) -> Deployment:
    deployment = await repo.deployment(session, access.project_id, ref)
    if deployment is None:
        raise NotFound("Deployment not found")
    return deployment


async def _locked(session: AsyncSession, access: ProjectAccess, ref: str) -> Deployment:
    # The row lock orders concurrent changes: config versions never collide.
    deployment = await repo.deployment(session, access.project_id, ref, for_update=True)
    if deployment is None:
        raise NotFound("Deployment not found")
    return deployment


async def _current(session: AsyncSession, deployment: Deployment) -> DeploymentConfig:
    config = await repo.config(session, deployment.id, deployment.config_version)
    if config is None:  # pragma: no cover - written together with the deployment
        raise NotFound("Deployment configuration not found")
    return config


async def current_config(session: AsyncSession, deployment: Deployment) -> DeploymentConfig:
    return await _current(session, deployment)


async def update(
    session: AsyncSession,
    access: ProjectAccess,
    ref: str,
    data: DeploymentUpdate,
    resolver: ModelResolver,
) -> tuple[Deployment, DeploymentConfig, Resolution]:
    check_variants(data.variants)
    # Resolved before the lock: the registry is asked outside the locked transaction.
    resolution = await resolve_variants(resolver, access.project_id, data.variants)
    deployment = await _locked(session, access, ref)
    current = await _current(session, deployment)
    await next_number(session, deployment, Deployment.config_version)
    deployment.updated_at = utcnow()
    if data.description is not None:
        deployment.description = data.description
    config = _add_config(
        session,
        deployment,
        variants=_stored(data.variants),
        routing=_or(data.routing, current.routing),
        policy=_or(data.policy, current.policy),
        reason=data.reason,
        kind="update",
        access=access,
    )
    await session.flush()
    _changed(session, deployment, action="update", details=_summary(config))
    return deployment, config, resolution


def _or(given: RoutingIn | PolicyIn | None, current: dict[str, Any]) -> dict[str, Any]:
    return given.model_dump(mode="json") if given is not None else dict(current)


def rollback_target(configs: Sequence[DeploymentConfig]) -> DeploymentConfig | None:
    """The configuration in force before the current one, walking back over earlier rollbacks
    (v1 -> v2 -> v3, rollback -> as v2, rollback -> as v1); None when there is none."""
    by_version = {c.version: c for c in configs}
    stack: list[int] = []
    for c in configs:
        if c.kind == "rollback" and stack:
            stack.pop()
            if stack:
                stack[-1] = c.version  # the restored configuration, now as this version
                continue
        stack.append(c.version)
    return by_version[stack[-2]] if len(stack) >= 2 else None


async def rollback(
    session: AsyncSession, access: ProjectAccess, ref: str, reason: str, resolver: ModelResolver
) -> tuple[Deployment, DeploymentConfig, Resolution]:
    refuse_job(access, "roll back deployments")
    deployment = await _locked(session, access, ref)
    target = rollback_target(await repo.configs(session, deployment.id))
    if target is None:
        raise Conflict("The deployment has no earlier configuration to roll back to")
    variants = [VariantIn.model_validate(v) for v in target.variants]
    resolution = await resolve_variants(resolver, access.project_id, variants)
    restored = target.restored_version or target.version
    await next_number(session, deployment, Deployment.config_version)
    deployment.updated_at = utcnow()
    config = _add_config(
        session,
        deployment,
        variants=list(target.variants),
        routing=dict(target.routing),
        policy=dict(target.policy),
        reason=reason,
        kind="rollback",
        access=access,
        restored=restored,
    )
    await session.flush()
    _changed(
        session,
        deployment,
        action="rollback",
        details={**_summary(config), "restored_version": restored},
    )
    return deployment, config, resolution


async def delete(session: AsyncSession, access: ProjectAccess, ref: str) -> None:
    """Soft delete: the configurations, keys and grants stay for the audit trail."""
    refuse_job(access, "delete deployments")
    deployment = await _locked(session, access, ref)
    deployment.deleted_at = deployment.updated_at = utcnow()
    await session.flush()
    _changed(session, deployment, action="delete", details={})


async def auto_rollback(
    session: AsyncSession, deployment_id: uuid.UUID, variant: str, reason: str
) -> int:
    """The platform's own change: a new configuration without ``variant`` (its traffic goes to
    the others). Returns the new configuration version. 404 when the deployment or the variant
    is gone, 409 when removing it would leave no variant to answer."""
    deployment = await repo.by_id(session, deployment_id)
    if deployment is None:
        raise NotFound("Deployment not found")
    current = await _current(session, deployment)
    kept = [v for v in current.variants if v["name"] != variant]
    if len(kept) == len(current.variants):
        raise NotFound(f"Variant {variant!r} is not in the deployment's configuration")
    if not any(not v["shadow"] and v["weight"] > 0 for v in kept):
        raise Conflict(f"Removing variant {variant!r} would leave no variant to answer")
    await next_number(session, deployment, Deployment.config_version)
    deployment.updated_at = utcnow()
    config = _add_config(
        session,
        deployment,
        variants=kept,
        routing=dict(current.routing),
        policy=dict(current.policy),
        reason=reason,
        kind="auto_rollback",
        access=None,
    )
    await session.flush()
    # The platform acts, not whoever sent the request that triggered the check.
    ctx = context.current()
    token = context.bind(dataclasses.replace(ctx, user_id=None) if ctx else None)
    try:
        _changed(
            session,
            deployment,
            action="auto_rollback",
            details={**_summary(config), "removed_variant": variant},
            actor_label="system",
        )
    finally:
        context.reset(token)
    return config.version


async def project_deleted(session: AsyncSession, project_id: uuid.UUID) -> int:
    """Soft-delete every live deployment of a deleted project (its slug may be reused)."""
    found = await repo.live_of_project(session, project_id)
    now = utcnow()
    for deployment in found:
        deployment.deleted_at = deployment.updated_at = now
        _changed(
            session,
            deployment,
            action="delete",
            details={"cause": "project deleted"},
            actor_label="system",
        )
    await session.flush()
    return len(found)


def _summary(config: DeploymentConfig) -> dict[str, Any]:
    return {
        "config_version": config.version,
        "reason": config.reason,
        "variants": [
            {k: v[k] for k in ("name", "model", "version", "alias", "weight", "shadow")}
            for v in config.variants
        ],
        "routing": config.routing,
    }
