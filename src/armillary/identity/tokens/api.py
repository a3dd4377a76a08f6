from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, status

from armillary.kit.authz import Principal, refuse_job_tokens
from armillary.kit.deps import ReadSession, Session
from armillary.kit.errors import Forbidden
from armillary.kit.pagination import Page, Paging

from ..components import current_identity
from . import service
from .schemas import PersonalTokenCreate, PersonalTokenIssued, PersonalTokenOut

router = APIRouter(prefix="/api/v1/auth/tokens", tags=["auth"])

# A job or personal access token can neither mint nor see tokens: only the person can.
Holder = Annotated[Principal, Depends(refuse_job_tokens("manage personal access tokens"))]


@router.post(
    "",
    name="auth.personal_token_create",
    status_code=status.HTTP_201_CREATED,
    responses={404: {}, 422: {}},
)
async def create_token(
    request: Request, body: PersonalTokenCreate, caller: Holder, session: Session
) -> PersonalTokenIssued:
    """Issue a personal access token for one project (at most 90 days, 30 by default).
    The token is in this answer only: it is never shown again."""
    return await service.create(session, current_identity(request), caller, body)


@router.get("", name="auth.personal_token_list")
async def list_tokens(
    caller: Holder,
    session: ReadSession,
    paging: Paging,
    user_id: Annotated[UUID | None, Query(description="Another user's (admins only)")] = None,
) -> Page[PersonalTokenOut]:
    """The caller's tokens (an admin may ask for another user's), newest first, without the
    tokens themselves."""
    owner = caller.user_id if user_id is None else user_id
    if owner != caller.user_id and not caller.is_admin:
        raise Forbidden("Only an admin may list another user's tokens")
    rows, total = await service.page_of(session, owner, limit=paging.limit, offset=paging.offset)
    return Page(
        items=[PersonalTokenOut.model_validate(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.delete(
    "/{token_id}",
    name="auth.personal_token_revoke",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {}},
)
async def revoke_token(token_id: UUID, caller: Holder, session: Session) -> None:
    """Revoke a token: it stops working at once, everywhere. Admins may revoke anyone's."""
    await service.revoke(session, caller, token_id)
