"""Who is calling predict on a deployment: an API key of that deployment, or an account with
a bearer token. Any project member may predict, except that a ``user``-role account needs a
grant; a grant alone (no membership) suffices too.

No credentials, an unknown or revoked key -> 401; not a member and no grant -> 404 (the
deployment's existence is not revealed); a member who may not predict -> 403.
"""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import Request
from sqlalchemy import or_, select, update

from armillary.contracts.identity import PlatformRole
from armillary.kit import context, edge
from armillary.kit.authz import Principal
from armillary.kit.db import utcnow
from armillary.kit.errors import Forbidden, NotFound, Unauthorized
from armillary.kit.runtime import Runtime
from armillary.kit.security import bearer_token

from ..components import serving_of
from ..deployments.resolve import ResolvedDeployment
from . import key_cache
from .models import ApiKey, Grant
from .service import KEY_PREFIX, MAX_KEY_LENGTH, key_hash

API_KEY_HEADER = "x-api-key"


@dataclass(frozen=True, slots=True)
class Caller:
    kind: Literal["user", "api_key"]
    id: str  # the user's or the key's id
    label: str  # the user's email, or the key's name


_KEY_LOOKUP = select(
    ApiKey.id, ApiKey.name, ApiKey.key_hash, ApiKey.last_used_at, ApiKey.deployment_id
)


@edge.mark(access=edge.Access.API_KEY_OR_BEARER)
async def require_credentials(request: Request) -> None:
    """Authenticate before anything else is read, so that an anonymous or forged caller learns
    nothing (which deployments exist, what the body must be): an API key must exist and be
    live (the row is kept for :func:`authorize_predict`), a bearer token must verify."""
    runtime: Runtime = request.app.state.runtime
    key = request.headers.get(API_KEY_HEADER)
    if key:
        request.state.api_key = await _live_key(runtime, key)
        return
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthorized("Send an API key (X-API-Key) or a bearer token")
    control = runtime.require_access()
    claims = getattr(request.state, "token_claims", None)
    if claims is None:
        # Verified once, here, and kept for authorize_predict: the edge limiter, which does
        # it on other routes, leaves the prediction routes alone.
        claims = await control.verifier.verify(token)
        request.state.token_claims = claims
    await control.principal(token, claims)


async def _live_key(runtime: Runtime, key: str) -> Any:
    if not key.startswith(KEY_PREFIX) or len(key) > MAX_KEY_LENGTH:
        raise Unauthorized("Invalid API key")
    digest = key_hash(key)
    cached = await key_cache.lookup(runtime.cache, digest)
    if cached is False:
        raise Unauthorized("Invalid API key")
    if cached is not None and hmac.compare_digest(cached.key_hash, digest):
        return cached
    # One probe of the unique hash index; the cache takes the answer (see key_cache for why
    # a revocation still applies at once).
    async with runtime.db.read_connection() as connection:
        row = (
            await connection.execute(
                _KEY_LOOKUP.where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
            )
        ).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise Unauthorized("Invalid API key")
    live = key_cache.LiveKey(row.id, row.name, row.key_hash, row.last_used_at, row.deployment_id)
    await key_cache.remember(runtime.cache, digest, live)
    return live


async def authorize_predict(request: Request, deployment: ResolvedDeployment) -> Caller:
    """The caller, if they may call predict on ``deployment``; raises the problem otherwise."""
    runtime: Runtime = request.app.state.runtime
    key = request.headers.get(API_KEY_HEADER)
    if key is not None:
        row = getattr(request.state, "api_key", None)
        if row is None:  # a route without require_credentials in front
            row = await _live_key(runtime, key)
        if row.deployment_id != deployment.id:  # another deployment's key: as good as none
            raise Unauthorized("Invalid API key")
        await _touch(runtime, row.id, row.last_used_at)
        return Caller("api_key", str(row.id), row.name)
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthorized("Send an API key (X-API-Key) or a bearer token")
    return await _account(runtime, request, deployment, token)


# Keys whose last_used_at this process wrote lately: no write, no round trip.
_touched: dict[uuid.UUID, float] = {}


async def _touch(runtime: Runtime, key_id: uuid.UUID, last: datetime | None) -> None:
    """Record use at most once per interval: a write per request would double the cost of
    the hot path, and the column answers "is this key still used", not "when exactly"."""
    interval = serving_of(runtime).settings.key_touch_interval_seconds
    now = time.monotonic()
    if now - _touched.get(key_id, -interval - 1) < interval:
        return
    cutoff = utcnow() - timedelta(seconds=interval)
    if last is not None and last >= cutoff:
        _touched[key_id] = now
        return
    _touched[key_id] = now
    async with runtime.db.read_connection() as connection:
        await connection.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < cutoff),
            )
            .values(last_used_at=utcnow())
        )


async def _account(
    runtime: Runtime, request: Request, deployment: ResolvedDeployment, token: str
) -> Caller:
    control = runtime.require_access()
    claims = getattr(request.state, "token_claims", None)
    try:
        access = await control.project_access(token, deployment.project_slug, claims)
    except NotFound:
        principal = await control.principal(token, claims)
        if principal.is_scoped or not await _granted(runtime, deployment, principal):
            raise NotFound("Deployment not found") from None
        return _user(principal)
    principal = access.principal
    if principal.role is PlatformRole.USER and not await _granted(runtime, deployment, principal):
        raise Forbidden("A 'user' account needs a grant to call this deployment")
    return _user(principal)


async def _granted(runtime: Runtime, deployment: ResolvedDeployment, principal: Principal) -> bool:
    # Not cached either: removing a grant applies at once.
    async with runtime.db.read_connection() as connection:
        found = await connection.scalar(
            select(Grant.id).where(
                Grant.deployment_id == deployment.id, Grant.user_id == principal.user_id
            )
        )
    return found is not None


def _user(principal: Principal) -> Caller:
    ctx = context.current()
    if ctx is not None:
        ctx.user_id = principal.user_id
    return Caller("user", str(principal.user_id), principal.email)
