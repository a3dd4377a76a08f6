"""Job tokens: the short-lived access tokens a job's tasks call the API with (DESIGN §2).

A job token is an ordinary access token of the user who started the job (same type, issuer,
audience and signing key) with three more claims: ``scope: "job"``, ``job`` (the job id) and
``prj`` (the project id). ``kit.authz`` caps it to that project and refuses it on platform-level
routes. It is issued only while the user is active and may still run jobs in the project.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.identity import (
    JOB_TOKEN_SCOPE,
    JobToken,
    JobTokenRequest,
    ProjectRole,
)
from armillary.kit import audit
from armillary.kit.db import utcnow
from armillary.kit.errors import Conflict, NotFound
from armillary.kit.security import ACCESS_TOKEN_TYPE

from ..components import SERVICE, Identity
from ..projects.service import access_for
from ..users import repository as users

# The least effective project role that may run jobs (``job:run`` in kit.authz).
_RUNS_JOBS = {ProjectRole.EDITOR, ProjectRole.OWNER}


class JobTokenNotFound(NotFound):
    keep_changes = True  # keep the refusal's audit entry


class JobTokenRefused(Conflict):
    keep_changes = True


async def issue(session: AsyncSession, identity: Identity, request: JobTokenRequest) -> JobToken:
    user = await users.by_id(session, request.user_id)
    access = await access_for(session, user, str(request.project_id)) if user else None
    if user is None or access is None:
        _refused(session, request, "user or project not found, or not a member")
        raise JobTokenNotFound("No such member of this project")
    if not user.active or access.role not in _RUNS_JOBS:
        _refused(session, request, "inactive or may not run jobs")
        raise JobTokenRefused("This user may not run jobs in this project")
    settings = identity.settings
    now = utcnow()
    # Whole seconds: "exp" is a NumericDate, and expires_at must say exactly when it lapses.
    expires_at = (now + timedelta(seconds=request.ttl_seconds)).replace(microsecond=0)
    jti = uuid.uuid4().hex
    token = await identity.keyring.sign(
        session,
        {
            "iss": settings.jwt_issuer,
            "aud": settings.jwt_audience,
            "sub": str(user.id),
            "iat": now,
            "exp": expires_at,
            "jti": jti,
            "scope": JOB_TOKEN_SCOPE,
            "job": str(request.job_id),
            "prj": str(request.project_id),
        },
        typ=ACCESS_TOKEN_TYPE,
    )
    audit.record(
        session,
        action="auth.job_token",
        resource_type="job",
        resource_id=request.job_id,
        actor_id=user.id,
        details={
            "project_id": str(request.project_id),
            "jti": jti,
            "ttl_seconds": request.ttl_seconds,
            "expires_at": expires_at.isoformat(),
        },
        service=SERVICE,
    )
    return JobToken(token=token, expires_at=expires_at)


def _refused(session: AsyncSession, request: JobTokenRequest, reason: str) -> None:
    audit.record(
        session,
        action="auth.job_token",
        outcome="denied",
        resource_type="job",
        resource_id=request.job_id,
        actor_id=request.user_id,
        details={"project_id": str(request.project_id), "reason": reason},
        service=SERVICE,
    )
