"""Registered models: create, find, update, soft delete."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit import audit
from armillary.kit.authz import ProjectAccess
from armillary.kit.db import utcnow
from armillary.kit.errors import BadRequest, Conflict, NotFound
from armillary.kit.ids import parse_uuid

from ..access import check_model_name, refuse_job, require_owner
from ..components import SERVICE
from . import repository as repo
from .models import RegisteredModel
from .schemas import ModelCreate, ModelUpdate


async def create_model(
    session: AsyncSession, access: ProjectAccess, data: ModelCreate
) -> RegisteredModel:
    name = check_model_name(data.name)
    if await repo.model(session, access.project_id, name) is not None:
        raise Conflict("A model with this name already exists in the project")
    model = RegisteredModel(
        project_id=access.project_id,
        name=name,
        description=data.description,
        tags=dict(data.tags),
        alias_policies={},
        created_by=access.principal.user_id,
    )
    session.add(model)
    await session.flush()
    audit.record(
        session,
        action="models.create",
        resource_type="model",
        resource_id=model.id,
        details={"project": access.project_slug, "name": name},
        service=SERVICE,
    )
    return model


async def get_model(
    session: AsyncSession, access: ProjectAccess, ref: str, *, for_update: bool = False
) -> RegisteredModel:
    if parse_uuid(ref) is None:
        check_model_name(ref)
    model = await repo.model(session, access.project_id, ref, for_update=for_update)
    if model is None:
        raise NotFound("Model not found")
    return model


def parse_tag_filter(tag: str | None) -> tuple[str, str | None] | None:
    """``key`` (the tag is set) or ``key=value``."""
    if tag is None or tag == "":
        return None
    key, sep, value = tag.partition("=")
    if not key:
        raise BadRequest("'tag' is 'key' or 'key=value'")
    return key, value if sep else None


async def update_model(
    session: AsyncSession, access: ProjectAccess, ref: str, data: ModelUpdate
) -> RegisteredModel:
    refuse_job(access, "change a model")
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if "alias_policies" in changes:
        require_owner(access, "change who may move aliases")
    model = await get_model(session, access, ref, for_update=True)
    if "description" in changes:
        model.description = changes["description"]
    if "tags" in changes:
        model.tags = dict(changes["tags"])
    if "alias_policies" in changes:
        model.alias_policies = dict(changes["alias_policies"])
    model.updated_at = utcnow()
    await session.flush()
    audit.record(
        session,
        action="models.update",
        resource_type="model",
        resource_id=model.id,
        details={"name": model.name, "fields": sorted(changes), **_policies(changes)},
        service=SERVICE,
    )
    return model


def _policies(changes: dict[str, object]) -> dict[str, object]:
    return {"alias_policies": changes["alias_policies"]} if "alias_policies" in changes else {}


async def delete_model(session: AsyncSession, access: ProjectAccess, ref: str) -> None:
    """Soft delete: versions, artifacts and alias history stay for lineage and audit."""
    refuse_job(access, "delete a model")
    require_owner(access, "delete a model")
    model = await get_model(session, access, ref, for_update=True)
    model.deleted_at = utcnow()
    audit.record(
        session,
        action="models.delete",
        resource_type="model",
        resource_id=model.id,
        details={"name": model.name},
        service=SERVICE,
    )
