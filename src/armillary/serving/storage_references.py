"""The objects the serving service's rows own, for ``armillary doctor``: the request samples
of each deployment (``predict.sampling.sample_key``), none of them required to exist."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.storage.doctor import References

from .deployments.models import Deployment


async def storage_references(session: AsyncSession) -> References:
    """Every deployment's samples prefix, soft-deleted deployments too (kept for audit)."""
    rows = await session.execute(select(Deployment.project_id, Deployment.id))
    return References(
        prefixes={
            f"projects/{project_id}/deployments/{deployment_id}/samples/"
            for project_id, deployment_id in rows
        }
    )
