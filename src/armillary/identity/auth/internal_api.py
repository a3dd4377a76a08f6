"""Routes other services call and clients never reach: served only on the identity service's
internal app (``identity.app.create_internal_app``), never on the public one.

The embedded shape calls them in-process; a distributed deployment must put them behind
service-to-service authentication before serving that app over the network.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from armillary.contracts.identity import JobToken, JobTokenRequest
from armillary.kit.deps import Session

from ..components import current_identity
from . import job_tokens

internal_router = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)


@internal_router.post(
    "/job-tokens",
    name="auth.job_token",
    status_code=status.HTTP_201_CREATED,
    responses={404: {}, 409: {}},
)
async def issue_job_token(request: Request, body: JobTokenRequest, session: Session) -> JobToken:
    """A short-lived access token for a job's tasks: the starter's rights, capped to the
    job's project. 404 when the user is not a member there, 409 when inactive or not allowed
    to run jobs."""
    return await job_tokens.issue(session, current_identity(request), body)
