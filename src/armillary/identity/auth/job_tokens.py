"""Job tokens: the short-lived access tokens a job's tasks call the API with (DESIGN §2).

A job token is an ordinary access token of the user who started the job (same type, issuer,
audience and signing key) with more claims: ``scope: "job"``, ``job`` (the job id), ``prj``
(the project id), ``act`` (what it may do: every job token's actions plus what the task type
declares) and, when minted for one attempt, ``task`` and ``att``. ``kit.authz`` caps it to that
project and those actions and refuses it on platform-level routes; identity refuses it once
its job or attempt has ended (``job_token_revocations``). It is issued only while the user is
active and may still run jobs in the project, and the job or attempt has not ended.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.identity import (
    JOB_TOKEN_SCOPE,
    JobToken,
    JobTokenRequest,
    ProjectRole,
)
from armillary.contracts.tasks import TASK_TYPES
from armillary.kit import audit
from armillary.kit.authz import TokenScope, job_token_actions
from armillary.kit.errors import Conflict, NotFound
from armillary.kit.security import ACCESS_TOKEN_TYPE

from ..components import SERVICE, Identity
from ..projects.service import access_for
from ..users import repository as users
from . import job_token_revocations as revocations
from .claims import Registered

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
    try:
        actions = job_token_actions(_declared_actions(request.task_type))
    except ValueError:
        _refused(session, request, "the task type declares actions no job token may hold")
        raise JobTokenRefused("This task type's token cannot be issued") from None
    scope = TokenScope(request.job_id, request.project_id, actions, request.task, request.attempt)
    if await revocations.is_revoked(session, scope):
        _refused(session, request, "the job or attempt has ended")
        raise JobTokenRefused("The job or attempt has ended")
    registered = Registered.lasting(
        identity.settings, user.id, timedelta(seconds=request.ttl_seconds)
    )
    expires_at = registered.expires_at
    token = await identity.keyring.sign(
        session,
        registered.claims(
            scope=JOB_TOKEN_SCOPE,
            role=user.role,
            job=str(request.job_id),
            prj=str(request.project_id),
            act=sorted(actions),
            **({"task": request.task, "att": request.attempt} if request.task else {}),
            **(
                {"dsr": sorted(request.datasets_read or []), "dsw": sorted(request.datasets_write)}
                if request.datasets_write is not None
                else {}
            ),
        ),
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
            "task": request.task,
            "attempt": request.attempt,
            "actions": sorted(actions),
            "datasets_read": request.datasets_read,
            "datasets_write": request.datasets_write,
            "jti": registered.jti,
            "ttl_seconds": request.ttl_seconds,
            "expires_at": expires_at.isoformat(),
        },
        service=SERVICE,
    )
    return JobToken(token=token, expires_at=expires_at)


def _declared_actions(task_type: str | None) -> tuple[str, ...]:
    contract = TASK_TYPES.get(task_type) if task_type else None
    return contract.job_actions if contract else ()


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
