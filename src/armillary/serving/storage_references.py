"""The objects the serving service's rows own, for ``armillary doctor``: the request samples
of each deployment (``predict.sampling.sample_key``), none of them required to exist."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.storage.doctor import References

from .deployments.models import Deployment


def samples_prefix(project_id: uuid.UUID, deployment_id: uuid.UUID) -> str:
    """Where ``sample_key`` puts every sample batch of the deployment."""
    return f"projects/{project_id}/deployments/{deployment_id}/samples/"


async def storage_references(session: AsyncSession) -> References:
    """Every deployment's samples prefix, soft-deleted deployments too (kept for audit)."""
    rows = await session.execute(select(Deployment.project_id, Deployment.id))
    return References(prefixes={samples_prefix(p, d) for p, d in rows})
