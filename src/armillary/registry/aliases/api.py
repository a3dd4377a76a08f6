from __future__ import annotations

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, status
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.registry import ALIAS_PATTERN
from armillary.kit.deps import ReadSession, Session
from armillary.kit.pagination import Instant, Page, Paging

from ..access import AliasMover, Reader
from ..catalog.models import RegisteredModel
from ..catalog.service import get_model
from ..versions.models import ModelVersion
from ..versions.records import version_out
from . import repository, service
from .schemas import AliasMoveOut, AliasOut, AliasReason, AliasSet

router = APIRouter(prefix="/api/v1/projects/{project}/models/{model}/aliases", tags=["models"])

AliasName = Annotated[str, Path(max_length=64, pattern=ALIAS_PATTERN)]


def _out(model: RegisteredModel, version: ModelVersion, name: str) -> AliasOut:
    return AliasOut(alias=name, version=version.number, model_version=version_out(model, version))


async def _versions_by_id(session: AsyncSession, ids: list[object]) -> dict[object, ModelVersion]:
    found = {}
    for version_id in ids:
        version = await session.get(ModelVersion, version_id)
        if version is not None:
            found[version_id] = version
    return found


@router.get("", name="models.aliases", responses={404: {}})
async def list_aliases(model: str, access: Reader, session: ReadSession) -> list[AliasOut]:
    found = await get_model(session, access, model)
    aliases = await repository.aliases(session, found.id)
    versions = await _versions_by_id(session, [a.model_version_id for a in aliases])
    return [_out(found, versions[a.model_version_id], a.name) for a in aliases]


@router.get("/{alias}", name="models.alias", responses={404: {}})
async def get_alias(
    model: str,
    alias: AliasName,
    access: Reader,
    session: ReadSession,
    at: Annotated[
        Instant | None,
        Query(description="ISO time: where the alias pointed then (UTC if no zone)"),
    ] = None,
) -> AliasOut:
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    found, version = await service.resolve(session, access, model, alias, at)
    return _out(found, version, alias)


@router.put("/{alias}", name="models.alias_set", responses={403: {}, 404: {}})
async def set_alias(
    model: str, alias: AliasName, body: AliasSet, access: AliasMover, session: Session
) -> AliasOut:
    """Point the alias at a version (editors; owners only where the model's
    ``alias_policies`` say so). Setting it to where it already points records nothing."""
    found, version = await service.set_alias(
        session, access, model, alias, body.version, body.reason
    )
    return _out(found, version, alias)


@router.delete(
    "/{alias}",
    name="models.alias_delete",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={403: {}, 404: {}},
)
async def delete_alias(
    model: str,
    alias: AliasName,
    access: AliasMover,
    session: Session,
    reason: Annotated[str | None, Query(max_length=2_000)] = None,
    body: Annotated[AliasReason | None, Body()] = None,
) -> None:
    """Remove the alias (its history stays). ``reason`` as a query parameter or in the body."""
    text = reason if reason is not None else (body.reason if body else "")
    await service.delete_alias(session, access, model, alias, text)


@router.get("/{alias}/history", name="models.alias_history", responses={404: {}})
async def alias_history(
    model: str, alias: AliasName, access: Reader, session: ReadSession, paging: Paging
) -> Page[AliasMoveOut]:
    """Every move of the alias, newest first: who, when, why, from and to which version."""
    found = await get_model(session, access, model)
    rows, total = await repository.moves_page(
        session, found.id, alias, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[
            AliasMoveOut(
                alias=r.alias,
                kind=r.kind,
                from_version=r.from_version,
                to_version=r.to_version,
                actor=r.actor,
                job_id=r.job_id,
                reason=r.reason,
                at=r.at,
            )
            for r in rows
        ],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post(
    "/{alias}/rollback", name="models.alias_rollback", responses={403: {}, 404: {}, 409: {}}
)
async def rollback_alias(
    model: str, alias: AliasName, body: AliasReason, access: AliasMover, session: Session
) -> AliasOut:
    """Point the alias back at the version before its current one (409 when there is none)."""
    found, version = await service.rollback_alias(session, access, model, alias, body.reason)
    return _out(found, version, alias)
