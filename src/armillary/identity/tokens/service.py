"""Personal access tokens (ADR 0040): a user's rights in one project, for notebooks and CI
(MLflow's ``MLFLOW_TRACKING_TOKEN``), valid until they expire (at most 90 days) or are
revoked.

A token is a JWT signed with identity's current key (typ ``pat+jwt``), so the gateway and
every service verify it against the same JWKS as access tokens. It carries ``scope: "pat"``
and ``prj`` (its project): ``kit.authz`` caps it to that project and to the user's current
role there. Identity keeps only the SHA-256 of its ``jti``, and every request made with it
asks identity (uncached), which refuses it once revoked: revocation applies at once in every
process.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit import audit
from armillary.kit.authz import Principal, TokenScope
from armillary.kit.db import utcnow
from armillary.kit.errors import NotFound
from armillary.kit.security import PERSONAL_TOKEN_SCOPE, PERSONAL_TOKEN_TYPE

from ..auth.claims import Registered
from ..components import SERVICE, Identity
from ..keys.service import keep_for_personal_tokens
from ..projects.service import access_for
from ..users import repository as users
from . import repository as repo
from .models import PersonalAccessToken
from .schemas import PersonalTokenCreate, PersonalTokenIssued, PersonalTokenOut


class TokenNotFound(NotFound):
    title = "Not found"


def jti_hash(jti: str) -> str:
    return hashlib.sha256(jti.encode()).hexdigest()


async def create(
    session: AsyncSession, identity: Identity, caller: Principal, data: PersonalTokenCreate
) -> PersonalTokenIssued:
    """Issue a token for the caller in ``data.project`` (404 when they may not see it)."""
    user = await users.by_id(session, caller.user_id)
    access = await access_for(session, user, data.project) if user else None
    if user is None or access is None:
        raise NotFound("Project not found")
    registered = Registered.lasting(
        identity.settings, user.id, timedelta(days=data.expires_in_days)
    )
    now, expires_at = registered.issued_at, registered.expires_at
    token = await identity.keyring.sign(
        session,
        registered.claims(scope=PERSONAL_TOKEN_SCOPE, prj=str(access.project_id)),
        typ=PERSONAL_TOKEN_TYPE,
    )
    row = await repo.add(
        session,
        PersonalAccessToken(
            user_id=user.id,
            project_id=access.project_id,
            name=data.name,
            jti_hash=jti_hash(registered.jti),
            kid=jwt.get_unverified_header(token)["kid"],
            created_at=now,
            expires_at=expires_at,
        ),
    )
    # Signed by a key already superseded (a rotation's publish lead): keep it long enough.
    await keep_for_personal_tokens(session)
    audit.record(
        session,
        action="auth.personal_token.create",
        resource_type="personal_access_token",
        resource_id=row.id,
        actor_id=user.id,
        details={
            "name": data.name,
            "project_id": str(access.project_id),
            "expires_at": expires_at.isoformat(),
        },
        service=SERVICE,
    )
    out = PersonalTokenOut.model_validate(row)
    return PersonalTokenIssued(**out.model_dump(), token=token)


async def page_of(
    session: AsyncSession, user_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[PersonalAccessToken], int]:
    return await repo.page_of_user(session, user_id, limit=limit, offset=offset)


async def revoke(session: AsyncSession, caller: Principal, token_id: uuid.UUID) -> None:
    """Revoke one of the caller's tokens (an admin: anyone's); 404 for any other. Revoking
    a revoked token again changes nothing."""
    row = await repo.by_id(session, token_id)
    if row is None or (row.user_id != caller.user_id and not caller.is_admin):
        raise TokenNotFound("Personal access token not found")
    if row.revoked_at is not None:
        return
    row.revoked_at = utcnow()
    audit.record(
        session,
        action="auth.personal_token.revoke",
        resource_type="personal_access_token",
        resource_id=row.id,
        actor_id=caller.user_id,
        details={"owner_id": str(row.user_id), "project_id": str(row.project_id)},
        service=SERVICE,
    )


async def is_live(session: AsyncSession, scope: TokenScope, user_id: uuid.UUID) -> bool:
    """Whether a verified personal access token is still issued: neither revoked nor
    expired (its signature and ``exp`` were checked already)."""
    if scope.token_id is None:
        return False
    return await repo.is_live(session, jti_hash(scope.token_id), user_id, utcnow())
