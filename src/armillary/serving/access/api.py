from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.authz import ProjectAccess
from armillary.kit.deps import CurrentRuntime, ReadSession, Session
from armillary.kit.pagination import Page, Paging

from ..deployments import service as deployments
from ..deployments.models import Deployment
from . import repository, service
from .permissions import Writer
from .schemas import GrantOut, KeyCreate, KeyCreated, KeyOut

router = APIRouter(
    prefix="/api/v1/projects/{project}/deployments/{deployment}", tags=["deployments"]
)


async def _deployment(session: AsyncSession, access: ProjectAccess, ref: str) -> Deployment:
    return await deployments.get(session, access, ref)


@router.post(
    "/keys",
    name="deployments.key_create",
    status_code=status.HTTP_201_CREATED,
    responses={403: {}, 404: {}},
)
async def create_key(
    deployment: str, body: KeyCreate, access: Writer, session: Session
) -> KeyCreated:
    """An API key for this deployment alone. The key is in this answer and never again (it is
    stored as a hash); send it as ``X-API-Key``."""
    found = await _deployment(session, access, deployment)
    row, key = await service.create_key(session, access, found, body.name)
    return KeyCreated(
        id=row.id, name=row.name, prefix=row.prefix, key=key, created_at=row.created_at
    )


@router.get("/keys", name="deployments.keys", responses={403: {}, 404: {}})
async def list_keys(
    deployment: str, access: Writer, session: ReadSession, paging: Paging
) -> Page[KeyOut]:
    found = await _deployment(session, access, deployment)
    rows, total = await repository.keys_page(
        session, found.id, limit=paging.limit, offset=paging.offset
    )
    items = [KeyOut.model_validate(r) for r in rows]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.delete(
    "/keys/{key_id}",
    name="deployments.key_revoke",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={403: {}, 404: {}},
)
async def revoke_key(
    deployment: str, key_id: UUID, access: Writer, session: Session, runtime: CurrentRuntime
) -> None:
    """Revoked at once: the next request with it gets 401."""
    found = await _deployment(session, access, deployment)
    await service.revoke_key(session, access, found, key_id, runtime.cache)


@router.get("/grants", name="deployments.grants", responses={403: {}, 404: {}})
async def list_grants(
    deployment: str, access: Writer, session: ReadSession, paging: Paging
) -> Page[GrantOut]:
    found = await _deployment(session, access, deployment)
    rows, total = await repository.grants_page(
        session, found.id, limit=paging.limit, offset=paging.offset
    )
    items = [GrantOut.model_validate(r) for r in rows]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.put("/grants/{user_id}", name="deployments.grant", responses={403: {}, 404: {}})
async def put_grant(deployment: str, user_id: UUID, access: Writer, session: Session) -> GrantOut:
    """Lets account ``user_id`` call predict on this deployment (what a ``user``-role account
    needs). Granting twice is granting once."""
    found = await _deployment(session, access, deployment)
    return GrantOut.model_validate(await service.grant(session, access, found, user_id))


@router.delete(
    "/grants/{user_id}",
    name="deployments.grant_revoke",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={403: {}, 404: {}},
)
async def delete_grant(deployment: str, user_id: UUID, access: Writer, session: Session) -> None:
    found = await _deployment(session, access, deployment)
    await service.revoke_grant(session, access, found, user_id)
