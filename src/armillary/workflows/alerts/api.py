"""Routes of alert channels, their delivery history, and alert rules."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from armillary.kit.authz import ProjectAccess, project_permission
from armillary.kit.deps import ReadSession, Session
from armillary.kit.pagination import Page, Paging

from . import repository, service
from .delivery import Alerts, alerts_of
from .models import AlertChannel, AlertDelivery, AlertRule, ChannelKind, DeliveryStatus, RuleKind
from .schemas import ChannelIn, ChannelOut, ChannelPatch, DeliveryOut, RuleIn, RuleOut

router = APIRouter(prefix="/api/v1/projects/{project}/alerts", tags=["alerts"])

Reader = Annotated[ProjectAccess, Depends(project_permission("workflow:read"))]
Writer = Annotated[ProjectAccess, Depends(project_permission("workflow:write"))]


async def _alerts(request: Request) -> Alerts:
    return alerts_of(request.app.state.runtime)


CurrentAlerts = Annotated[Alerts, Depends(_alerts)]


def channel_out(channel: AlertChannel) -> ChannelOut:
    return ChannelOut(
        id=channel.id,
        name=channel.name,
        kind=ChannelKind(channel.kind),
        enabled=channel.enabled,
        config=dict(channel.config),
        secrets=dict(channel.secret_hints),
        created_at=channel.created_at,
        updated_at=channel.updated_at,
    )


def rule_out(rule: AlertRule) -> RuleOut:
    return RuleOut(
        id=rule.id,
        name=rule.name,
        kind=RuleKind(rule.kind),
        enabled=rule.enabled,
        channel_ids=[uuid.UUID(c) for c in rule.channel_ids],
        workflow=rule.workflow,
        task=rule.task,
        factor=rule.factor,
        min_samples=rule.min_samples,
        max_minutes=rule.max_minutes,
        created_at=rule.created_at,
    )


def delivery_out(delivery: AlertDelivery) -> DeliveryOut:
    pending = delivery.status == DeliveryStatus.PENDING
    return DeliveryOut(
        id=delivery.id,
        channel_id=delivery.channel_id,
        event=delivery.event,
        rule_id=delivery.rule_id,
        rule_name=delivery.rule_name,
        job_id=delivery.job_id,
        task_run_id=delivery.task_run_id,
        summary=str(delivery.payload.get("summary", "")),
        status=DeliveryStatus(delivery.status),
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        updated_at=delivery.updated_at,
        next_attempt_at=delivery.next_attempt_at if pending else None,
        sent_at=delivery.sent_at,
    )


@router.post(
    "/channels",
    name="alerts.channel_create",
    status_code=status.HTTP_201_CREATED,
    responses={409: {}},
)
async def create_channel(
    body: ChannelIn, access: Writer, session: Session, alerts: CurrentAlerts
) -> ChannelOut:
    """Add a notification channel (email, Slack, PagerDuty or signed webhook). Its secrets are
    encrypted at rest and answered only as masked hints; each may instead be a reference,
    ``{"secret_ref": "aws-secretsmanager:NAME_OR_ARN#key"}`` or ``{"secret_ref":
    "file:/path"}``, read at each send from where the operator allows."""
    return channel_out(
        await service.create_channel(session, alerts.box, alerts.settings, access, body)
    )


@router.get("/channels", name="alerts.channel_list")
async def list_channels(access: Reader, session: ReadSession, paging: Paging) -> Page[ChannelOut]:
    rows, total = await repository.channels_page(
        session, access.project_id, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[channel_out(c) for c in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/channels/{channel_id}", name="alerts.channel_get")
async def get_channel(channel_id: uuid.UUID, access: Reader, session: ReadSession) -> ChannelOut:
    return channel_out(await service.get_channel(session, access, channel_id))


@router.patch("/channels/{channel_id}", name="alerts.channel_update", responses={409: {}})
async def update_channel(
    channel_id: uuid.UUID,
    body: ChannelPatch,
    access: Writer,
    session: Session,
    alerts: CurrentAlerts,
) -> ChannelOut:
    """Rename, enable or disable, or change settings; ``config`` is merged into the current
    settings, so secrets not given stay as they are."""
    channel = await service.update_channel(
        session, alerts.box, alerts.settings, access, channel_id, body
    )
    return channel_out(channel)


@router.delete(
    "/channels/{channel_id}",
    name="alerts.channel_delete",
    status_code=status.HTTP_204_NO_CONTENT,
)
async def delete_channel(channel_id: uuid.UUID, access: Writer, session: Session) -> None:
    """Delete the channel and its delivery history; rules stop notifying it."""
    await service.delete_channel(session, access, channel_id)


@router.post("/channels/{channel_id}/test", name="alerts.channel_test")
async def test_channel(
    channel_id: uuid.UUID, access: Writer, session: Session, alerts: CurrentAlerts
) -> DeliveryOut:
    """Send a test message through the channel now; the answer is its delivery record
    (``sent``, or ``failed`` with the error)."""
    delivery = await service.test_channel(session, alerts.box, alerts.settings, access, channel_id)
    return delivery_out(delivery)


@router.get("/channels/{channel_id}/deliveries", name="alerts.delivery_list")
async def list_deliveries(
    channel_id: uuid.UUID,
    access: Reader,
    session: ReadSession,
    paging: Paging,
    status_filter: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
) -> Page[DeliveryOut]:
    """The channel's deliveries, newest first."""
    channel = await service.get_channel(session, access, channel_id)
    rows, total = await repository.deliveries_page(
        session, channel.id, status=status_filter, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[delivery_out(d) for d in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post("/rules", name="alerts.rule_create", status_code=status.HTTP_201_CREATED)
async def create_rule(body: RuleIn, access: Writer, session: Session) -> RuleOut:
    """Add a rule: ``job_failed``, ``quality_gate_failed``, ``task_duration_p95`` (a task run
    slower than ``factor`` x the p95 of its recent runs) or ``job_deadline`` (a job not
    succeeded ``max_minutes`` after creation); it notifies ``channel_ids``."""
    return rule_out(await service.create_rule(session, access, body))


@router.get("/rules", name="alerts.rule_list")
async def list_rules(access: Reader, session: ReadSession, paging: Paging) -> Page[RuleOut]:
    rows, total = await repository.rules_page(
        session, access.project_id, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[rule_out(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.get("/rules/{rule_id}", name="alerts.rule_get")
async def get_rule(rule_id: uuid.UUID, access: Reader, session: ReadSession) -> RuleOut:
    return rule_out(await service.get_rule(session, access, rule_id))


@router.delete(
    "/rules/{rule_id}", name="alerts.rule_delete", status_code=status.HTTP_204_NO_CONTENT
)
async def delete_rule(rule_id: uuid.UUID, access: Writer, session: Session) -> None:
    await service.delete_rule(session, access, rule_id)
