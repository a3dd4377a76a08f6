from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.deps import ReadSession, Session
from armillary.kit.pagination import Page, Paging

from ..access import Deleter, Reader, Writer
from ..versions import repository as versions_repo
from ..versions.records import version_out
from . import repository, service
from .models import RegisteredModel
from .schemas import ModelCreate, ModelDetail, ModelOut, ModelUpdate

router = APIRouter(prefix="/api/v1/projects/{project}/models", tags=["models"])


async def _outs(session: AsyncSession, models: list[RegisteredModel]) -> list[ModelOut]:
    ids = [m.id for m in models]
    latest = await repository.latest_numbers(session, ids)
    aliases = await repository.alias_numbers(session, ids)
    return [
        ModelOut(
            id=m.id,
            name=m.name,
            description=m.description,
            tags=m.tags,
            alias_policies=m.alias_policies,
            created_by=m.created_by,
            created_at=m.created_at,
            updated_at=m.updated_at,
            latest_version=latest.get(m.id),
            aliases=aliases.get(m.id, {}),
        )
        for m in models
    ]


async def _detail(session: AsyncSession, model: RegisteredModel) -> ModelDetail:
    out = (await _outs(session, [model]))[0]
    latest = await versions_repo.latest(session, model.id)
    record = version_out(model, latest).model_dump(mode="json") if latest else None
    return ModelDetail(**out.model_dump(), latest=record)


@router.get("", name="models.list", responses={400: {}})
async def list_models(
    access: Reader,
    session: ReadSession,
    paging: Paging,
    prefix: Annotated[str | None, Query(max_length=128, description="Name prefix")] = None,
    tag: Annotated[str | None, Query(max_length=300, description="`key` or `key=value`")] = None,
) -> Page[ModelOut]:
    rows, total = await repository.models_page(
        session,
        access.project_id,
        prefix=prefix,
        tag=service.parse_tag_filter(tag),
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page(
        items=await _outs(session, rows), total=total, limit=paging.limit, offset=paging.offset
    )


@router.post(
    "", name="models.create", status_code=status.HTTP_201_CREATED, responses={400: {}, 409: {}}
)
async def create_model(body: ModelCreate, access: Writer, session: Session) -> ModelDetail:
    return await _detail(session, await service.create_model(session, access, body))


@router.get("/{model}", name="models.get", responses={404: {}})
async def get_model(model: str, access: Reader, session: ReadSession) -> ModelDetail:
    """A model with its latest version and where its aliases point."""
    return await _detail(session, await service.get_model(session, access, model))


@router.patch("/{model}", name="models.update", responses={403: {}, 404: {}})
async def update_model(
    model: str, body: ModelUpdate, access: Writer, session: Session
) -> ModelDetail:
    """Description, tags, and (owners only) ``alias_policies``: which aliases only owners
    may move."""
    return await _detail(session, await service.update_model(session, access, model, body))


@router.delete(
    "/{model}",
    name="models.delete",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={403: {}, 404: {}},
)
async def delete_model(model: str, access: Deleter, session: Session) -> None:
    """Soft delete (owners): versions and history stay for lineage and audit."""
    await service.delete_model(session, access, model)
