from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from armillary.kit.authz import ProjectAccess, project_permission
from armillary.kit.deps import Session

from ..components import current_data
from . import service
from .schemas import PresignedObject, PresignRequest

router = APIRouter(prefix="/api/v1/projects/{project}/external-objects", tags=["datasets"])

Writer = Annotated[ProjectAccess, Depends(project_permission("dataset:write"))]


@router.post("/presign", name="external_objects.presign", responses={403: {}, 422: {}})
async def presign_external_object(
    body: PresignRequest, request: Request, access: Writer, session: Session
) -> PresignedObject:
    """A short-lived presigned GET URL for ``s3://bucket/key`` in a bucket the platform allows
    for ingest (``ARMILLARY_DATA_INGEST_ALLOWED_BUCKETS``; 403 otherwise), signed with the
    platform's storage credentials, so that a task can read it without S3 credentials."""
    return await service.presign(session, current_data(request), access, body.uri)
