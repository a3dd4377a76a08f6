from __future__ import annotations

from fastapi import APIRouter, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.deps import ReadSession, Session
from armillary.kit.pagination import Page, Paging

from ..access.permissions import Reader, Writer
from ..components import current_serving
from . import repository, service
from .models import Deployment, DeploymentConfig
from .resolve import ResolvedDeployment
from .schemas import (
    ConfigOut,
    DeploymentCreate,
    DeploymentOut,
    DeploymentUpdate,
    ResolvedOut,
    RollbackIn,
    VariantOut,
)

router = APIRouter(prefix="/api/v1/projects/{project}/deployments", tags=["deployments"])

_WRITE_ERRORS: dict[int | str, dict[str, object]] = {403: {}, 404: {}, 409: {}, 422: {}}


def deployment_out(
    deployment: Deployment, config: DeploymentConfig, resolved: dict[str, ResolvedOut]
) -> DeploymentOut:
    return DeploymentOut(
        id=deployment.id,
        name=deployment.name,
        project=deployment.project_slug,
        description=deployment.description,
        config_version=deployment.config_version,
        routing=config.routing,
        variants=[
            VariantOut(
                name=v["name"],
                model=v["model"],
                version=v["version"],
                alias=v["alias"],
                weight=v["weight"],
                shadow=v["shadow"],
                resolved=resolved.get(v["name"]),
            )
            for v in config.variants
        ],
        policy=config.policy,
        created_by=deployment.created_by,
        created_at=deployment.created_at,
        updated_at=deployment.updated_at,
    )


def _from_answers(resolution: service.Resolution) -> dict[str, ResolvedOut]:
    return {
        name: ResolvedOut(model_version=a["version"], model_version_id=a["model_version_id"])
        for name, a in resolution.items()
    }


def _from_directory(resolved: ResolvedDeployment | None) -> dict[str, ResolvedOut]:
    if resolved is None:
        return {}
    return {
        v.name: ResolvedOut(model_version=v.model_version, model_version_id=v.model_version_id)
        for v in resolved.variants
    }


async def _served(
    request: Request, deployment: Deployment, config: DeploymentConfig
) -> DeploymentOut:
    """With the model versions the variants resolve to as predict sees them."""
    directory = current_serving(request).directory
    resolved = await directory.get(str(deployment.project_id), str(deployment.id))
    return deployment_out(deployment, config, _from_directory(resolved))


@router.get("", name="deployments.list")
async def list_deployments(
    request: Request, access: Reader, session: ReadSession, paging: Paging
) -> Page[DeploymentOut]:
    rows, total = await repository.deployments_page(
        session, access.project_id, limit=paging.limit, offset=paging.offset
    )
    items = [await _served(request, d, c) for d, c in rows]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.post(
    "",
    name="deployments.create",
    status_code=status.HTTP_201_CREATED,
    responses=_WRITE_ERRORS,
)
async def create_deployment(
    request: Request, body: DeploymentCreate, access: Writer, session: Session
) -> DeploymentOut:
    """A deployment with its first configuration (owners, editors, the project's jobs)."""
    resolver = current_serving(request).require_registry()
    deployment, config, found = await service.create(session, access, body, resolver)
    return deployment_out(deployment, config, _from_answers(found))


async def _get(
    session: AsyncSession, access: Reader, ref: str
) -> tuple[Deployment, DeploymentConfig]:
    deployment = await service.get(session, access, ref)
    return deployment, await service.current_config(session, deployment)


@router.get("/{deployment}", name="deployments.get", responses={404: {}})
async def get_deployment(
    request: Request, deployment: str, access: Reader, session: ReadSession
) -> DeploymentOut:
    return await _served(request, *await _get(session, access, deployment))


@router.put("/{deployment}", name="deployments.update", responses=_WRITE_ERRORS)
async def update_deployment(
    request: Request, deployment: str, body: DeploymentUpdate, access: Writer, session: Session
) -> DeploymentOut:
    """A new configuration version: the variants in full (a canary step is a PUT with new
    weights); routing and policy stay as they were when left out."""
    resolver = current_serving(request).require_registry()
    found, config, answers = await service.update(session, access, deployment, body, resolver)
    return deployment_out(found, config, _from_answers(answers))


@router.post("/{deployment}/rollback", name="deployments.rollback", responses=_WRITE_ERRORS)
async def rollback_deployment(
    request: Request, deployment: str, body: RollbackIn, access: Writer, session: Session
) -> DeploymentOut:
    """Back to the configuration in force before the current one, as a new version."""
    resolver = current_serving(request).require_registry()
    found, config, answers = await service.rollback(
        session, access, deployment, body.reason, resolver
    )
    return deployment_out(found, config, _from_answers(answers))


@router.get("/{deployment}/configs", name="deployments.configs", responses={404: {}})
async def list_configs(
    deployment: str, access: Reader, session: ReadSession, paging: Paging
) -> Page[ConfigOut]:
    """Every configuration the deployment had, newest first: what, who, when and why."""
    found = await service.get(session, access, deployment)
    rows, total = await repository.configs_page(
        session, found.id, limit=paging.limit, offset=paging.offset
    )
    items = [
        ConfigOut(
            version=c.version,
            kind=c.kind,
            variants=c.variants,
            routing=c.routing,
            policy=c.policy,
            reason=c.reason,
            restored_version=c.restored_version,
            created_by=c.created_by,
            job_id=c.job_id,
            created_at=c.created_at,
        )
        for c in rows
    ]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.delete(
    "/{deployment}",
    name="deployments.delete",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={403: {}, 404: {}},
)
async def delete_deployment(deployment: str, access: Writer, session: Session) -> None:
    """Soft delete: it stops answering at once; its history stays for the audit trail."""
    await service.delete(session, access, deployment)
