"""Aliases: point, move, delete, roll back; every change is an append-only move with who, when
and why, an ``AliasMoved`` event and an audit entry, all in the caller's transaction."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.registry import ALIAS_PATTERN, AliasMoved
from armillary.kit import audit
from armillary.kit.authz import ProjectAccess
from armillary.kit.db import utcnow
from armillary.kit.errors import BadRequest, Conflict, NotFound
from armillary.kit.events import publish

from ..access import refuse_job, require_owner
from ..catalog.models import RegisteredModel
from ..catalog.service import get_model
from ..components import SERVICE
from ..versions import repository as versions_repo
from ..versions.models import ModelVersion
from . import repository as repo
from .models import Alias, AliasMove

_ALIAS = re.compile(ALIAS_PATTERN)


def check_alias_name(name: str) -> str:
    if not _ALIAS.fullmatch(name):
        raise BadRequest("Alias names are 1-64 lower-case letters, digits, '_' or '-'")
    return name


def _may_move(access: ProjectAccess, model: RegisteredModel, name: str) -> None:
    if model.alias_policies.get(name) == "owner":
        require_owner(access, f"move alias {name!r} of this model")


async def _version(session: AsyncSession, model: RegisteredModel, number: int) -> ModelVersion:
    version = await versions_repo.version(session, model.id, number)
    if version is None:
        raise NotFound("Model version not found")
    return version


def _record(
    session: AsyncSession,
    access: ProjectAccess,
    model: RegisteredModel,
    name: str,
    *,
    kind: str,
    before: int | None,
    after: int | None,
    reason: str,
) -> None:
    now = utcnow()
    session.add(
        AliasMove(
            model_id=model.id,
            alias=name,
            from_version=before,
            to_version=after,
            actor=access.principal.user_id,
            job_id=access.principal.job_id,
            reason=reason,
            kind=kind,
            at=now,
        )
    )
    event = AliasMoved(
        project_id=access.project_id,
        model_id=model.id,
        model=model.name,
        alias=name,
        from_version=before,
        to_version=after,
        occurred_at=now,
    )
    publish(session, AliasMoved.TYPE, event)
    audit.record(
        session,
        action=f"models.alias_{kind}",
        resource_type="model_alias",
        resource_id=model.id,
        details={
            "model": model.name,
            "alias": name,
            "from_version": before,
            "to_version": after,
            "reason": reason,
        },
        service=SERVICE,
    )


async def _point(
    session: AsyncSession,
    access: ProjectAccess,
    model: RegisteredModel,
    name: str,
    version: ModelVersion,
    *,
    kind: str | None,
    reason: str,
) -> None:
    current = await repo.alias(session, model.id, name)
    before = None
    if current is not None:
        if current.model_version_id == version.id:
            return  # already there: no move to record
        previous = await session.get(ModelVersion, current.model_version_id)
        before = previous.number if previous is not None else None
        current.model_version_id = version.id
        current.updated_at = utcnow()
        current.updated_by = access.principal.user_id
    else:
        session.add(
            Alias(
                model_id=model.id,
                name=name,
                model_version_id=version.id,
                updated_by=access.principal.user_id,
            )
        )
    kind = kind or ("set" if current is None else "move")
    _record(
        session, access, model, name, kind=kind, before=before, after=version.number, reason=reason
    )
    await session.flush()


async def set_alias(
    session: AsyncSession, access: ProjectAccess, ref: str, name: str, number: int, reason: str
) -> tuple[RegisteredModel, ModelVersion]:
    check_alias_name(name)
    # The model's row lock orders concurrent moves of its aliases.
    model = await get_model(session, access, ref, for_update=True)
    _may_move(access, model, name)
    version = await _version(session, model, number)
    await _point(session, access, model, name, version, kind=None, reason=reason)
    return model, version


async def delete_alias(
    session: AsyncSession, access: ProjectAccess, ref: str, name: str, reason: str
) -> None:
    refuse_job(access, "delete aliases")
    check_alias_name(name)
    model = await get_model(session, access, ref, for_update=True)
    _may_move(access, model, name)
    current = await repo.alias(session, model.id, name)
    if current is None:
        raise NotFound("Alias not found")
    before = await session.get(ModelVersion, current.model_version_id)
    await session.delete(current)
    _record(
        session,
        access,
        model,
        name,
        kind="delete",
        before=before.number if before else None,
        after=None,
        reason=reason,
    )


def rollback_target(moves: list[AliasMove]) -> int | None:
    """The version the alias pointed to before its current one, walking back over earlier
    rollbacks (v1 -> v2 -> v3, rollback -> v2, rollback -> v1); None when there is none."""
    stack: list[int] = []
    for move in moves:
        if move.kind == "delete" or move.to_version is None:
            stack = []
        elif move.kind == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != move.to_version:
                stack.append(move.to_version)
        else:
            stack.append(move.to_version)
    return stack[-2] if len(stack) >= 2 else None


async def rollback_alias(
    session: AsyncSession, access: ProjectAccess, ref: str, name: str, reason: str
) -> tuple[RegisteredModel, ModelVersion]:
    refuse_job(access, "roll back aliases")
    check_alias_name(name)
    model = await get_model(session, access, ref, for_update=True)
    _may_move(access, model, name)
    if await repo.alias(session, model.id, name) is None:
        raise NotFound("Alias not found")
    target = rollback_target(await repo.moves(session, model.id, name))
    if target is None:
        raise Conflict("The alias has no earlier version to roll back to")
    version = await _version(session, model, target)
    await _point(session, access, model, name, version, kind="rollback", reason=reason)
    return model, version


async def resolve(
    session: AsyncSession, access: ProjectAccess, ref: str, name: str, at: datetime | None
) -> tuple[RegisteredModel, ModelVersion]:
    """What the alias points to now, or pointed to at ``at`` (404 when nothing)."""
    check_alias_name(name)
    model = await get_model(session, access, ref)
    if at is None:
        current = await repo.alias(session, model.id, name)
        version = await session.get(ModelVersion, current.model_version_id) if current else None
    else:
        move = await repo.move_at(session, model.id, name, at)
        version = (
            await versions_repo.version(session, model.id, move.to_version)
            if move is not None and move.to_version is not None
            else None
        )
    if version is None:
        raise NotFound("Alias not found" if at is None else "The alias pointed nowhere then")
    return model, version
