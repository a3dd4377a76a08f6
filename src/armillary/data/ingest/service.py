"""Presigned links to external S3 objects a pipeline ingests."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit import audit
from armillary.kit.authz import ProjectAccess

from ..components import SERVICE, Data
from .schemas import PresignedObject
from .signer import BucketNotAllowed, parse_s3_uri


async def presign(
    session: AsyncSession, data: Data, access: ProjectAccess, uri: str
) -> PresignedObject:
    target = parse_s3_uri(uri)
    details = {
        "project": access.project_slug,
        "bucket": target.bucket,
        "object": target.key[:300],
        "job_id": str(access.principal.job_id) if access.principal.job_id else None,
    }
    try:
        url, expires_at = await data.ingest_signer.presign_get(target)
    except BucketNotAllowed:
        audit.record(
            session,
            action="external_objects.presign",
            resource_type="external_object",
            resource_id=target.bucket,
            outcome="denied",
            details=details,
            service=SERVICE,
        )
        raise
    audit.record(
        session,
        action="external_objects.presign",
        resource_type="external_object",
        resource_id=target.bucket,
        details=details,
        service=SERVICE,
    )
    return PresignedObject(url=url, expires_at=expires_at)
