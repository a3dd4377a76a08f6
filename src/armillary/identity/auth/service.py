"""Login, refresh-token rotation with reuse detection, and logout."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit import audit, context
from armillary.kit.db import utcnow
from armillary.kit.errors import ServiceUnavailable, TooManyRequests, Unauthorized
from armillary.kit.ratelimit import RateLimitStoreUnavailable
from armillary.kit.security import ACCESS_TOKEN_TYPE, REFRESH_TOKEN_TYPE, InvalidToken

from ..components import SERVICE, Identity
from ..users import repository as users
from ..users.models import User
from .errors import InvalidCredentials, RefreshTokenReused
from .models import RefreshToken
from .schemas import TokenPair


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def login(session: AsyncSession, identity: Identity, email: str, password: str) -> TokenPair:
    account = email.strip().lower()[:320]
    ctx = context.current()
    address = ctx.client_address if ctx else None
    limiter = identity.runtime.limiter
    if limiter is not None:
        try:
            wait = await limiter.login_blocked(account, address)
        except RateLimitStoreUnavailable as exc:
            raise ServiceUnavailable("Sign-in is temporarily unavailable") from exc
        if wait:
            raise TooManyRequests(
                "Too many failed sign-in attempts; try again later",
                headers={"Retry-After": str(wait)},
            )
    user = await users.by_email(session, account)
    # The hasher runs whether or not the account exists, so timing does not tell them apart.
    valid = await asyncio.to_thread(
        identity.passwords.verify, user.password_hash if user else None, password
    )
    if not valid or user is None or not user.active:
        if limiter is not None:
            try:
                await limiter.login_failed(account, address)
            except RateLimitStoreUnavailable as exc:
                raise ServiceUnavailable("Sign-in is temporarily unavailable") from exc
        audit.record(
            session,
            action="auth.login",
            outcome="failure",
            resource_type="user",
            resource_id=user.id if user else None,
            actor_id=user.id if user else None,
            actor_label=account,
            service=SERVICE,
        )
        raise InvalidCredentials()
    if limiter is not None:
        try:
            await limiter.login_succeeded(account, address)
        except RateLimitStoreUnavailable as exc:
            raise ServiceUnavailable("Sign-in is temporarily unavailable") from exc
    if identity.passwords.needs_rehash(user.password_hash):
        user.password_hash = await asyncio.to_thread(identity.passwords.hash, password)
    if ctx is not None:
        ctx.user_id = user.id
    audit.record(
        session,
        action="auth.login",
        resource_type="user",
        resource_id=user.id,
        actor_id=user.id,
        actor_label=account,
        service=SERVICE,
    )
    return await _issue_pair(session, identity, user, family_id=uuid.uuid4())


async def refresh(session: AsyncSession, identity: Identity, token: str) -> TokenPair:
    claims = await _verify_refresh(identity, token)
    jti = uuid.UUID(claims["jti"])
    row = await session.get(RefreshToken, jti)
    if row is None or row.token_hash != _hash(token) or row.revoked_at is not None:
        raise Unauthorized("Invalid refresh token")
    # Conditional update: of two concurrent refreshes with one token, only one wins.
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.jti == jti, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=utcnow())
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await revoke_family(session, row.family_id)
        audit.record(
            session,
            action="auth.refresh_reuse",
            outcome="denied",
            resource_type="token_family",
            resource_id=row.family_id,
            actor_id=row.user_id,
            service=SERVICE,
        )
        raise RefreshTokenReused()
    user = await users.by_id(session, row.user_id)
    if user is None or not user.active:
        raise Unauthorized("Invalid refresh token")
    audit.record(
        session,
        action="auth.refresh",
        resource_type="token_family",
        resource_id=row.family_id,
        actor_id=user.id,
        service=SERVICE,
    )
    return await _issue_pair(session, identity, user, family_id=row.family_id)


async def logout(
    session: AsyncSession, identity: Identity, user_id: uuid.UUID, token: str | None
) -> None:
    """Revoke the family of ``token``, or every refresh token of the user when none is given."""
    if token is not None:
        claims = await _verify_refresh(identity, token)
        row = await session.get(RefreshToken, uuid.UUID(claims["jti"]))
        if row is None or row.user_id != user_id:
            raise Unauthorized("Invalid refresh token")
        await revoke_family(session, row.family_id)
    else:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    audit.record(
        session, action="auth.logout", resource_type="user", resource_id=user_id, service=SERVICE
    )


async def revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def _verify_refresh(identity: Identity, token: str) -> dict[str, Any]:
    verifier = identity.runtime.require_access().verifier
    try:
        return await verifier.verify(token, expected_type=REFRESH_TOKEN_TYPE)
    except InvalidToken as exc:
        raise Unauthorized("Invalid refresh token") from exc


async def _issue_pair(
    session: AsyncSession, identity: Identity, user: User, *, family_id: uuid.UUID
) -> TokenPair:
    settings = identity.settings
    now = utcnow()
    base = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user.id),
        "iat": now,
    }
    access_ttl = timedelta(seconds=settings.access_token_ttl_seconds)
    access = await identity.keyring.sign(
        session,
        # "role" lets the gateway refuse non-admins on admin routes at the edge (ADR 0022); the
        # services still check the current role themselves.
        {**base, "exp": now + access_ttl, "jti": uuid.uuid4().hex, "role": user.role},
        typ=ACCESS_TOKEN_TYPE,
    )
    refresh_jti = uuid.uuid4()
    expires = now + timedelta(seconds=settings.refresh_token_ttl_seconds)
    refresh_token = await identity.keyring.sign(
        session,
        {**base, "exp": expires, "jti": str(refresh_jti), "fam": str(family_id)},
        typ=REFRESH_TOKEN_TYPE,
    )
    session.add(
        RefreshToken(
            jti=refresh_jti,
            family_id=family_id,
            user_id=user.id,
            token_hash=_hash(refresh_token),
            expires_at=expires,
        )
    )
    await session.flush()
    return TokenPair(
        access_token=access,
        refresh_token=refresh_token,
        expires_in=settings.access_token_ttl_seconds,
    )
