"""Routes other services call and clients never reach: served only on the registry's private
app (``registry.app.create_private_app``), never on the public one.

The prediction service resolves a deployment's variants here: an API-key caller has no token
to forward, and serving needs the artifacts' object keys, which never leave the registry
otherwise. The embedded shape calls it in-process; a distributed deployment must put it behind
service-to-service authentication before serving that app over the network.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select

from armillary.contracts.registry import ALIAS_PATTERN, MODEL_NAME_PATTERN
from armillary.kit.deps import ReadSession
from armillary.kit.errors import BadRequest, NotFound

from .aliases.models import Alias
from .catalog.models import RegisteredModel
from .versions.models import ModelVersion

internal_router = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)

_MODEL = re.compile(MODEL_NAME_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)


class ArtifactLocation(BaseModel):
    key: str
    size_bytes: int
    sha256: str


class ResolvedVersion(BaseModel):
    model_id: UUID
    model_version_id: UUID
    model: str
    version: int
    format: str
    signature: dict[str, Any]
    problem: str | None
    artifacts: dict[str, ArtifactLocation]
    drift_reference: dict[str, Any] | None = None


@internal_router.get(
    "/model-versions/resolve", name="registry.resolve", responses={400: {}, 404: {}}
)
async def resolve(
    session: ReadSession,
    project_id: UUID,
    model: Annotated[str, Query(max_length=128)],
    version: Annotated[int | None, Query(ge=1)] = None,
    alias: Annotated[str | None, Query(max_length=64)] = None,
) -> ResolvedVersion:
    """The version of live model ``model`` of project ``project_id`` that ``version`` or
    ``alias`` (exactly one) names, with its artifacts' object keys; 404 when there is none."""
    if (version is None) == (alias is None):
        raise BadRequest("Give exactly one of 'version' and 'alias'")
    if not _MODEL.fullmatch(model) or (alias is not None and not _ALIAS.fullmatch(alias)):
        raise NotFound("Model version not found")
    stmt = (
        select(RegisteredModel, ModelVersion)
        .join(ModelVersion, ModelVersion.model_id == RegisteredModel.id)
        .where(
            RegisteredModel.project_id == project_id,
            RegisteredModel.name == model,
            RegisteredModel.deleted_at.is_(None),
        )
    )
    if alias is not None:
        stmt = stmt.join(Alias, Alias.model_version_id == ModelVersion.id).where(
            Alias.model_id == RegisteredModel.id, Alias.name == alias
        )
    else:
        stmt = stmt.where(ModelVersion.number == version)
    row = (await session.execute(stmt)).first()
    if row is None:
        raise NotFound("Model version not found")
    found, mv = row
    return ResolvedVersion(
        model_id=found.id,
        model_version_id=mv.id,
        model=found.name,
        version=mv.number,
        format=mv.format,
        signature=mv.signature,
        problem=mv.problem,
        drift_reference=mv.drift_reference,
        artifacts={
            name: ArtifactLocation(
                key=info["key"], size_bytes=info["size_bytes"], sha256=info["sha256"]
            )
            for name, info in sorted(mv.artifacts.items())
        },
    )
