"""Accounts: created by an admin (or at first start), never by anonymous sign-up."""

from __future__ import annotations

import asyncio
from uuid import UUID

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.events import UserChanged
from armillary.contracts.identity import PlatformRole
from armillary.kit import audit
from armillary.kit.db import utcnow
from armillary.kit.errors import BadRequest, Conflict, NotFound, Unauthorized
from armillary.kit.events import publish

from ..auth.errors import INVALID_CREDENTIALS
from ..auth.models import RefreshToken
from ..components import SERVICE, Identity
from . import repository as repo
from .models import User
from .schemas import UserCreate, UserUpdate


async def create(session: AsyncSession, identity: Identity, data: UserCreate) -> User:
    email = str(data.email).strip().lower()
    if await repo.by_email(session, email) is not None:
        raise Conflict("A user with this email already exists")
    password_hash = await asyncio.to_thread(
        identity.passwords.hash, data.password.get_secret_value()
    )
    user = await repo.add(
        session,
        User(
            email=email,
            name=data.name,
            role=data.role.value,
            active=True,
            password_hash=password_hash,
        ),
    )
    audit.record(
        session,
        action="users.create",
        resource_type="user",
        resource_id=user.id,
        details={"email": email, "role": data.role.value},
        service=SERVICE,
    )
    return user


async def get(session: AsyncSession, user_id: UUID) -> User:
    user = await repo.by_id(session, user_id)
    if user is None:
        raise NotFound("User not found")
    return user


async def update_user(
    session: AsyncSession, actor_id: UUID, user_id: UUID, data: UserUpdate
) -> User:
    user = await get(session, user_id)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if user.id == actor_id and (
        changes.get("active") is False or changes.get("role", user.role) != user.role
    ):
        raise BadRequest("Admins cannot demote or deactivate themselves")
    if "name" in changes:
        user.name = changes["name"]
    if "role" in changes and changes["role"] != user.role:
        old = user.role
        user.role = PlatformRole(changes["role"]).value
        audit.record(
            session,
            action="users.role_change",
            resource_type="user",
            resource_id=user.id,
            details={"from": old, "to": user.role},
            service=SERVICE,
        )
    if "active" in changes and changes["active"] != user.active:
        user.active = changes["active"]
        if not user.active:
            await _revoke_refresh_tokens(session, user.id)
        audit.record(
            session,
            action="users.deactivate" if not user.active else "users.reactivate",
            resource_type="user",
            resource_id=user.id,
            service=SERVICE,
        )
    if "name" in changes and "role" not in changes and "active" not in changes:
        audit.record(
            session,
            action="users.update",
            resource_type="user",
            resource_id=user.id,
            service=SERVICE,
        )
    await session.flush()
    publish(session, UserChanged.TYPE, UserChanged(user_id=user.id))
    return user


async def deactivate(session: AsyncSession, actor_id: UUID, user_id: UUID) -> User:
    return await update_user(session, actor_id, user_id, UserUpdate(active=False))


async def change_password(
    session: AsyncSession, identity: Identity, user_id: UUID, current: str, new: str
) -> None:
    user = await get(session, user_id)
    ok = await asyncio.to_thread(identity.passwords.verify, user.password_hash, current)
    if not ok:
        raise Unauthorized(INVALID_CREDENTIALS)
    user.password_hash = await asyncio.to_thread(identity.passwords.hash, new)
    await _revoke_refresh_tokens(session, user.id)
    audit.record(
        session,
        action="auth.password_change",
        resource_type="user",
        resource_id=user.id,
        service=SERVICE,
    )


async def _revoke_refresh_tokens(session: AsyncSession, user_id: UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
