from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request, status

from armillary.kit.authz import Principal, require_platform_role
from armillary.kit.deps import ReadSession, Session
from armillary.kit.pagination import Page, Paging

from ..components import current_identity
from . import repository, service
from .schemas import UserCreate, UserOut, UserUpdate

router = APIRouter(prefix="/api/v1/users", tags=["users"])

Admin = Annotated[Principal, Depends(require_platform_role())]


@router.get("", name="users.list")
async def list_users(admin: Admin, session: ReadSession, paging: Paging) -> Page[UserOut]:
    rows, total = await repository.page(session, limit=paging.limit, offset=paging.offset)
    return Page(
        items=[UserOut.model_validate(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post("", name="users.create", status_code=status.HTTP_201_CREATED, responses={409: {}})
async def create_user(
    request: Request, body: UserCreate, admin: Admin, session: Session
) -> UserOut:
    """Create an account with a role. There is no self sign-up."""
    return UserOut.model_validate(await service.create(session, current_identity(request), body))


@router.get("/{user_id}", name="users.get")
async def get_user(user_id: UUID, admin: Admin, session: ReadSession) -> UserOut:
    return UserOut.model_validate(await service.get(session, user_id))


@router.patch("/{user_id}", name="users.update", responses={400: {}})
async def update_user(user_id: UUID, body: UserUpdate, admin: Admin, session: Session) -> UserOut:
    """Change name, role or active flag; takes effect on the user's next request."""
    return UserOut.model_validate(await service.update_user(session, admin.user_id, user_id, body))


@router.delete("/{user_id}", name="users.deactivate", responses={400: {}})
async def deactivate_user(user_id: UUID, admin: Admin, session: Session) -> UserOut:
    """Deactivate (accounts are never deleted: the audit log refers to them)."""
    return UserOut.model_validate(await service.deactivate(session, admin.user_id, user_id))
