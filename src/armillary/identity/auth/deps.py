"""Identity's own view of the caller, read straight from its tables (no cache).

Only the endpoints that other services' cached lookups call use this; everything else goes
through ``kit.authz`` like any other service.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from armillary.kit.authz import TokenScope, token_scope
from armillary.kit.deps import ReadSession
from armillary.kit.errors import Unauthorized

from ..components import current_identity
from ..tokens import service as personal_tokens
from ..users import repository as users
from ..users.models import User
from . import job_token_revocations as revocations

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class DirectCaller:
    user: User
    scope: TokenScope | None  # set when the token is a job or personal access token


async def current_caller_uncached(
    request: Request,
    session: ReadSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> DirectCaller:
    if credentials is None:
        raise Unauthorized("Missing bearer token")
    identity = current_identity(request)
    claims = await identity.runtime.require_access().verifier.verify(credentials.credentials)
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:  # a signed token whose subject is not a user id
        raise Unauthorized("Invalid token") from exc
    scope = token_scope(claims)
    user = await users.by_id(session, user_id)
    if user is None or not user.active:
        raise Unauthorized("Invalid token")
    if scope is not None and scope.is_personal:
        if not await personal_tokens.is_live(session, scope, user.id):
            raise Unauthorized("Invalid token")
    elif scope is not None and await revocations.is_revoked(session, scope):
        raise Unauthorized("Invalid token")
    return DirectCaller(user, scope)


async def current_user_uncached(
    caller: Annotated[DirectCaller, Depends(current_caller_uncached)],
) -> User:
    return caller.user


Direct = Annotated[DirectCaller, Depends(current_caller_uncached)]
DirectUser = Annotated[User, Depends(current_user_uncached)]
