from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request

from armillary.kit import audit
from armillary.kit.authz import Principal, require_platform_role
from armillary.kit.deps import Session
from armillary.kit.pagination import Instant, Page, Paging

from ..components import SERVICE, current_identity
from . import repository
from .schemas import AuditRecordOut, VerifyOut

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

Admin = Annotated[Principal, Depends(require_platform_role())]


@router.get("", name="audit.query")
async def query_audit(
    admin: Admin,
    session: Session,
    paging: Paging,
    actor: Annotated[UUID | None, Query(description="Actor user id")] = None,
    action: Annotated[str | None, Query(max_length=120)] = None,
    resource_type: Annotated[str | None, Query(max_length=64)] = None,
    resource_id: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[Instant | None, Query(description="Inclusive, ISO 8601")] = None,
    until: Annotated[Instant | None, Query(description="Exclusive, ISO 8601")] = None,
) -> Page[AuditRecordOut]:
    """The audit log, newest first. Reading it is itself audited."""
    rows, total = await repository.page(
        session,
        actor_id=actor,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        since=since,
        until=until,
        limit=paging.limit,
        offset=paging.offset,
    )
    audit.record(
        session,
        action="audit.query",
        resource_type="audit",
        details={
            "actor": str(actor) if actor else None,
            "action": action,
            "resource_type": resource_type,
            "resource_id": resource_id,
        },
        service=SERVICE,
    )
    return Page(
        items=[AuditRecordOut.model_validate(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/verify", name="audit.verify")
async def verify_audit(request: Request, admin: Admin, session: Session) -> VerifyOut:
    """Recompute the hash chain and compare it with the checkpoint kept outside the database."""
    report = await current_identity(request).audit_log.verify(session)
    audit.record(
        session,
        action="audit.verify",
        resource_type="audit",
        outcome="success" if report.ok else "failure",
        details={"problems": len(report.problems)},
        service=SERVICE,
    )
    return VerifyOut(
        ok=report.ok,
        records_checked=report.records_checked,
        last_seq=report.last_seq,
        checkpoint_seq=report.checkpoint_seq,
        problems=report.problems,
    )
