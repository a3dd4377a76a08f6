from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.ids import parse_uuid

from .models import Deployment, DeploymentConfig


def _by_ref(ref: str) -> ColumnElement[bool]:
    deployment_id = parse_uuid(ref)
    return Deployment.id == deployment_id if deployment_id else Deployment.name == ref


async def deployment(
    session: AsyncSession, project_id: uuid.UUID, ref: str, *, for_update: bool = False
) -> Deployment | None:
    """A live deployment of the project, by name or id. Never one of another project."""
    stmt = select(Deployment).where(
        Deployment.project_id == project_id, Deployment.deleted_at.is_(None), _by_ref(ref)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def by_id(session: AsyncSession, deployment_id: uuid.UUID) -> Deployment | None:
    return await session.scalar(
        select(Deployment)
        .where(Deployment.id == deployment_id, Deployment.deleted_at.is_(None))
        .with_for_update()
    )


async def live_with_config(
    session: AsyncSession, project: str, ref: str
) -> tuple[Deployment, DeploymentConfig] | None:
    """A live deployment by project slug or id and deployment name or id, with the
    configuration in force."""
    project_id = parse_uuid(project)
    in_project = (
        or_(Deployment.project_id == project_id, Deployment.project_slug == project)
        if project_id
        else Deployment.project_slug == project
    )
    row = (
        await session.execute(
            select(Deployment, DeploymentConfig)
            .join(
                DeploymentConfig,
                and_(
                    DeploymentConfig.deployment_id == Deployment.id,
                    DeploymentConfig.version == Deployment.config_version,
                ),
            )
            .where(in_project, Deployment.deleted_at.is_(None), _by_ref(ref))
        )
    ).first()
    if row is None:
        return None
    found, config = row
    return found, config


async def config(
    session: AsyncSession, deployment_id: uuid.UUID, version: int
) -> DeploymentConfig | None:
    return await session.scalar(
        select(DeploymentConfig).where(
            DeploymentConfig.deployment_id == deployment_id, DeploymentConfig.version == version
        )
    )


async def configs(session: AsyncSession, deployment_id: uuid.UUID) -> list[DeploymentConfig]:
    rows = await session.scalars(
        select(DeploymentConfig)
        .where(DeploymentConfig.deployment_id == deployment_id)
        .order_by(DeploymentConfig.version)
    )
    return list(rows)


async def configs_page(
    session: AsyncSession, deployment_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[DeploymentConfig], int]:
    stmt = select(DeploymentConfig).where(DeploymentConfig.deployment_id == deployment_id)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(
        stmt.order_by(DeploymentConfig.version.desc()).limit(limit).offset(offset)
    )
    return list(rows), total


async def deployments_page(
    session: AsyncSession, project_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[tuple[Deployment, DeploymentConfig]], int]:
    live = and_(Deployment.project_id == project_id, Deployment.deleted_at.is_(None))
    total = await session.scalar(select(func.count()).where(live)) or 0
    rows = await session.execute(
        select(Deployment, DeploymentConfig)
        .join(
            DeploymentConfig,
            and_(
                DeploymentConfig.deployment_id == Deployment.id,
                DeploymentConfig.version == Deployment.config_version,
            ),
        )
        .where(live)
        .order_by(Deployment.name)
        .limit(limit)
        .offset(offset)
    )
    return [(d, c) for d, c in rows.all()], total


async def live_of_project(session: AsyncSession, project_id: uuid.UUID) -> list[Deployment]:
    rows = await session.scalars(
        select(Deployment)
        .where(Deployment.project_id == project_id, Deployment.deleted_at.is_(None))
        .order_by(Deployment.id)
        .with_for_update()
    )
    return list(rows)
