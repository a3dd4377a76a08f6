"""Audit entries: written by every service into its outbox, in the same transaction as the
change they describe. The identity service appends them to the one hash-chained log.

:class:`AuditFallbackMiddleware` makes sure each state-changing request and each
authorization denial leaves exactly one entry even when no code recorded one (for example
because the transaction was rolled back).
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from armillary.contracts.events import AuditEntry
from armillary.kit import context, security_events
from armillary.kit.db import after_commit, utcnow
from armillary.kit.events import publish
from armillary.kit.redaction import is_secret_key, redact_mapping
from armillary.kit.security_events import SecurityEventSampler

log = structlog.get_logger("armillary.audit")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_PARAM_LENGTH = 200


def record(
    session: AsyncSession,
    *,
    action: str,
    resource_type: str | None = None,
    resource_id: str | UUID | None = None,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
    actor_id: UUID | None = None,
    actor_label: str | None = None,
    service: str = "platform",
) -> None:
    """Add one audit entry to the caller's transaction (the entry is lost only if it is)."""
    ctx = context.current()
    entry = AuditEntry(
        occurred_at=utcnow(),
        service=service,
        actor_id=actor_id or (ctx.user_id if ctx else None),
        actor_label=actor_label,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id) if resource_id is not None else None,
        outcome=outcome,
        client_address=ctx.client_address if ctx else None,
        user_agent=ctx.user_agent if ctx else None,
        request_id=ctx.request_id if ctx else None,
        details=redact_mapping(details or {}),
    )
    publish(session, AuditEntry.TYPE, entry)
    if ctx is not None:

        async def _mark() -> None:
            ctx.audit_recorded = True

        after_commit(session, _mark)


def outcome_for(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403):
        return "denied"
    if status < 500:
        return "failure"
    return "error"


class AuditFallbackMiddleware:
    """Records a generic entry for a state-changing request or a 403 that recorded none, and
    the security events of refused tokens and hidden projects (aggregated, see
    :mod:`armillary.kit.security_events`)."""

    def __init__(self, app: ASGIApp, sampler: SecurityEventSampler | None = None) -> None:
        self.app = app
        self.sampler = sampler  # None: security events are not this app's to record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self._maybe_record(scope, message["status"])
            await send(message)

        await self.app(scope, receive, send_wrapper)

    async def _maybe_record(self, scope: Scope, status: int) -> None:
        ctx = context.current()
        route = scope.get("route")
        if ctx is None or ctx.audit_recorded or route is None:
            return
        event = security_events.event_of(status, _presented_token(scope))
        if event is not None:
            if self.sampler is not None:
                await self._record_security_event(scope, event, self.sampler, status)
            return
        if scope["method"] not in WRITE_METHODS and status != 403:
            return
        runtime = scope["app"].state.runtime
        action = getattr(route, "name", None) or scope["path"]
        params = {
            k: _printable(str(v))
            for k, v in (scope.get("path_params") or {}).items()
            if not is_secret_key(k)  # a download token is a credential, not an identifier
        }
        try:
            async with runtime.db.unit_of_work() as session:
                record(
                    session,
                    action=action,
                    resource_type=_resource_type(getattr(route, "path", "")),
                    resource_id=next(reversed(params.values()), None) if params else None,
                    outcome=outcome_for(status),
                    details={"status": status, "method": scope["method"], "params": params},
                )
        except Exception:
            # The response still goes out; the missing entry is loud in the logs.
            log.exception("audit_fallback_failed", action=action)

    async def _record_security_event(
        self,
        scope: Scope,
        event: security_events.SecurityEvent,
        sampler: SecurityEventSampler,
        status: int,
    ) -> None:
        suppressed = sampler.admit(event)
        if suppressed is None:
            return
        route = scope.get("route")
        try:
            async with scope["app"].state.runtime.db.unit_of_work() as session:
                record(
                    session,
                    action=event.action,
                    resource_type="project" if event.resource is not None else None,
                    resource_id=_printable(event.resource) if event.resource else None,
                    outcome="denied",
                    details={
                        "status": status,
                        "method": scope["method"],
                        "route": getattr(route, "path", None),
                        "suppressed_before": suppressed,
                        "window_seconds": sampler.window,
                    },
                )
        except Exception:
            log.exception("audit_security_event_failed", action=event.action)


def _presented_token(scope: Scope) -> bool:
    return any(
        key == b"authorization" and value[:7].lower() == b"bearer "
        for key, value in scope.get("headers", [])
    )


def _printable(value: str) -> str:
    """Path parameters come from attackers too: no NUL or control characters (PostgreSQL
    would refuse the entry), and a bounded length."""
    return _CONTROL.sub("?", value)[:_MAX_PARAM_LENGTH]


def _resource_type(route_path: str) -> str | None:
    parts = [p for p in route_path.split("/") if p and not p.startswith("{")]
    return parts[-1] if parts else None
