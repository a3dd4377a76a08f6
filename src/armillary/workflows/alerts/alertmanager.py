"""Prometheus Alertmanager → the platform's alert channels (issue 16, item 4; ADR 0033).

Alertmanager's webhook receiver posts its notification (payload version 4) to
``POST /api/v1/alerts/alertmanager?project=SLUG[&channel=NAME...]``; each alert in it becomes
one delivery per chosen channel of the project (every enabled channel when none is named),
sent by the delivery loop like any other alert: Slack, PagerDuty (a resolved alert resolves
the incident it triggered), email, or the signed webhook. So one set of receivers serves the
platform's own rules and Prometheus' alert rules.

Alertmanager holds no user session, so the route takes a shared bearer secret,
``ARMILLARY_WORKFLOWS_ALERTMANAGER_TOKEN`` (Alertmanager's ``http_config.authorization``);
without it every call is refused (401), like any route without credentials. A notification
resent by Alertmanager (its ``repeat_interval``, or a retry after a timeout) queues nothing
twice: a delivery is keyed by channel, alert fingerprint, status and start time.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.db import after_commit, new_id, utcnow
from armillary.kit.deps import Session
from armillary.kit.errors import NotFound, Unauthorized, Unprocessable

from . import repository as repo
from . import senders
from .delivery import Alerts, alerts_of
from .models import AlertChannel, DeliveryStatus

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

FIRING = "alertmanager_firing"
RESOLVED = "alertmanager_resolved"
MAX_ALERTS = 1000


class AlertmanagerAlert(BaseModel):
    """One alert of the notification; the field names are Alertmanager's."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict, max_length=100)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=100)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = Field(default="", max_length=4096)
    fingerprint: str = Field(default="", max_length=64)


class AlertmanagerPayload(BaseModel):
    """Alertmanager's webhook notification (``version`` "4")."""

    model_config = ConfigDict(extra="ignore")

    version: str = Field(max_length=8)
    groupKey: str = Field(default="", max_length=4096)
    status: Literal["firing", "resolved"]
    receiver: str = Field(default="", max_length=200)
    externalURL: str = Field(default="", max_length=4096)
    truncatedAlerts: int = Field(default=0, ge=0)
    alerts: list[AlertmanagerAlert] = Field(max_length=MAX_ALERTS)


class AlertmanagerAccepted(BaseModel):
    alerts: int
    channels: list[str]
    queued: int


async def _authenticated(request: Request) -> Alerts:
    alerts = alerts_of(request.app.state.runtime)
    expected = alerts.settings.alertmanager_token
    if expected is None:
        raise Unauthorized("The Alertmanager receiver is not enabled on this platform")
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    given = credentials.strip().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given, expected.get_secret_value().encode()
    ):
        raise Unauthorized("A valid Alertmanager bearer secret is required")
    return alerts


Receiver = Annotated[Alerts, Depends(_authenticated)]


def fingerprint_of(alert: AlertmanagerAlert) -> str:
    """Alertmanager's fingerprint, or one of the labels when a sender leaves it out."""
    if alert.fingerprint:
        return alert.fingerprint
    labels = "\x00".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
    return hashlib.sha256(labels.encode()).hexdigest()[:16]


def to_alert(
    payload: AlertmanagerPayload, alert: AlertmanagerAlert, channel: AlertChannel
) -> senders.Alert:
    name = alert.labels.get("alertname", "alert")
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or name
    details: dict[str, Any] = {
        "status": alert.status,
        "severity": alert.labels.get("severity"),
        "labels": alert.labels,
        "annotations": alert.annotations,
        "starts_at": alert.startsAt.isoformat(),
        "ends_at": alert.endsAt.isoformat() if alert.endsAt else None,
        "generator_url": alert.generatorURL or None,
        "alertmanager": payload.externalURL or None,
    }
    return senders.Alert(
        event=FIRING if alert.status == "firing" else RESOLVED,
        title=f"[{alert.status.upper()}] {name}",
        summary=summary[:2000],
        project_id=str(channel.project_id),
        project=channel.project_slug,
        # The same for an alert's firing and resolved notices: PagerDuty resolves by it.
        dedup_key=f"alertmanager:{channel.project_slug}:{fingerprint_of(alert)}",
        occurred_at=(
            alert.endsAt if alert.status == "resolved" and alert.endsAt else alert.startsAt
        ).isoformat(),
        rule=f"alertmanager/{payload.receiver}"[:100] if payload.receiver else "alertmanager",
        details={k: v for k, v in details.items() if v is not None},
    )


def delivery_key(channel_id: uuid.UUID, alert: AlertmanagerAlert) -> str:
    raw = f"{channel_id}:{fingerprint_of(alert)}:{alert.status}:{alert.startsAt.isoformat()}"
    return "am:" + hashlib.sha256(raw.encode()).hexdigest()


async def chosen_channels(
    session: AsyncSession, project: str, names: list[str]
) -> list[AlertChannel]:
    rows = list(
        await session.scalars(
            select(AlertChannel)
            .where(AlertChannel.project_slug == project)
            .order_by(AlertChannel.name)
        )
    )
    if not rows:
        raise NotFound(f"Project {project!r} has no alert channels")
    if names:
        unknown = sorted(set(names) - {c.name for c in rows})
        if unknown:
            raise Unprocessable(f"No such channel in {project!r}: {', '.join(unknown)}")
        rows = [c for c in rows if c.name in names]
    return [c for c in rows if c.enabled]


async def receive(
    session: AsyncSession,
    alerts: Alerts,
    payload: AlertmanagerPayload,
    project: str,
    names: list[str],
) -> AlertmanagerAccepted:
    channels = await chosen_channels(session, project, names)
    now = utcnow()
    queued = 0
    for channel in channels:
        for item in payload.alerts:
            alert = to_alert(payload, item, channel)
            queued += await repo.add_delivery(
                session,
                {
                    "id": new_id(),
                    "project_id": channel.project_id,
                    "channel_id": channel.id,
                    "rule_id": None,
                    "rule_name": alert.rule,
                    "dedup_key": delivery_key(channel.id, item),
                    "event": alert.event,
                    "job_id": None,
                    "task_run_id": None,
                    "payload": alert.to_payload(),
                    "status": DeliveryStatus.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                },
            )
    if queued:
        after_commit(session, alerts.notify)
    return AlertmanagerAccepted(
        alerts=len(payload.alerts), channels=[c.name for c in channels], queued=queued
    )


@router.post(
    "/alertmanager",
    name="alerts.alertmanager",
    status_code=status.HTTP_202_ACCEPTED,
    responses={401: {}, 404: {}, 422: {}},
)
async def alertmanager_webhook(
    payload: AlertmanagerPayload,
    alerts: Receiver,
    session: Session,
    project: Annotated[str, Query(min_length=1, max_length=64)],
    channel: Annotated[list[str] | None, Query(max_length=50)] = None,
) -> AlertmanagerAccepted:
    """Alertmanager's webhook receiver: each alert of the notification is queued to the
    project's channels (``channel``, repeatable; every enabled one when absent). Auth: the
    bearer secret ``ARMILLARY_WORKFLOWS_ALERTMANAGER_TOKEN``."""
    return await receive(session, alerts, payload, project, channel or [])
