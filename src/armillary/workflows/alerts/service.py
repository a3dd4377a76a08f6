"""Alert channels and rules: create, change, delete (audited), secrets sealed at rest (or
referenced in a secret manager, :mod:`.secret_refs`), the test message, and queueing
deliveries for the consumers."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx
import orjson
import structlog
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit import audit
from armillary.kit.authz import ProjectAccess
from armillary.kit.db import after_commit, new_id, utcnow
from armillary.kit.errors import Conflict, NotFound, Unprocessable
from armillary.kit.secretbox import SecretBox, SecretBoxError, mask

from ..components import SERVICE
from ..settings import WorkflowSettings
from . import repository as repo
from . import secret_refs, senders
from .models import (
    TEST_EVENT,
    AlertChannel,
    AlertDelivery,
    AlertRule,
    ChannelKind,
    DeliveryStatus,
)
from .rules import dedup_key
from .schemas import CONFIG_MODELS, SECRET_FIELDS, ChannelIn, ChannelPatch, RuleIn

#: The secret box purpose of channel secrets (with the channel id as associated data).
CHANNEL_PURPOSE = "workflows.alerts.channel"

log = structlog.get_logger("armillary.workflows.alerts")


def split_config(kind: ChannelKind, config: BaseModel) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain settings, secret settings) of a validated channel config."""
    values = config.model_dump(mode="json")
    secret_names = SECRET_FIELDS[kind]
    plain = {k: v for k, v in values.items() if k not in secret_names}
    hidden = {k: v for k, v in values.items() if k in secret_names and v is not None}
    return plain, hidden


def seal(box: SecretBox, channel: AlertChannel, secrets: dict[str, Any]) -> None:
    """Encrypt ``secrets`` into the channel, bound to its id, and keep masked hints (a
    reference is its own hint: it names where the secret is, not what it is)."""
    channel.secrets_ciphertext = box.encrypt(
        orjson.dumps(secrets), associated_data=channel.id.bytes
    )
    refs = secret_refs.references(secrets)
    channel.secret_hints = {
        k: {"secret_ref": refs[k]} if k in refs else mask(str(v)) for k, v in secrets.items()
    }


def unseal(box: SecretBox, channel: AlertChannel) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(
        box.decrypt(channel.secrets_ciphertext, associated_data=channel.id.bytes)
    )
    return data


async def reseal_channels(session: AsyncSession, box: SecretBox) -> int:
    """Encrypt again under the current platform secret every channel's secrets that a
    previous secret encrypted (``armillary secrets rotate``); returns how many. Rows are
    locked, so concurrent runs re-encrypt each channel once."""
    channels = (
        await session.scalars(select(AlertChannel).order_by(AlertChannel.id).with_for_update())
    ).all()
    changed = 0
    for channel in channels:
        resealed = box.reseal(channel.secrets_ciphertext, associated_data=channel.id.bytes)
        if resealed is not None:
            channel.secrets_ciphertext = resealed
            changed += 1
    return changed


async def target_of(
    sealed: dict[str, Any], settings: WorkflowSettings, channel: AlertChannel, *, fresh: bool
) -> senders.Target:
    """The channel ready to send, its secret references read (``fresh``: past the cache)."""
    secrets = await secret_refs.resolve(
        sealed, settings.alert_secret_ref_prefixes, channel.project_slug, fresh=fresh
    )
    return senders.Target(ChannelKind(channel.kind), dict(channel.config), secrets)


async def send_now(
    box: SecretBox,
    settings: WorkflowSettings,
    http: httpx.AsyncClient,
    channel: AlertChannel,
    alert: senders.Alert,
) -> str | None:
    """Send ``alert`` through ``channel`` once: None when the receiver accepted it, else an
    error message fit for the delivery history (no secrets in it). When the receiver refuses
    and a secret given by reference has changed since it was cached (rotated), the send is
    tried again at once with the new value."""

    async def attempt(target: senders.Target) -> None:
        await senders.send(
            target,
            alert,
            http=http,
            timeout=settings.alert_send_timeout_seconds,
            allow_private=settings.alert_allow_private_targets,
        )

    try:
        sealed = unseal(box, channel)
        target = await target_of(sealed, settings, channel, fresh=False)
        try:
            await attempt(target)
        except senders.SendError:
            if not secret_refs.references(sealed):
                raise
            current = await target_of(sealed, settings, channel, fresh=True)
            if current.secrets == target.secrets:
                raise
            log.info("alert_channel_secret_reread", channel_id=str(channel.id))
            await attempt(current)
    except senders.SendError as exc:
        return str(exc)
    except SecretBoxError:
        return "the channel's secrets do not decrypt (was the platform secret changed?)"
    except Exception as exc:
        log.exception("alert_send_crashed", channel_id=str(channel.id))
        return f"internal error ({type(exc).__name__})"
    return None


def _validated(kind: ChannelKind, values: dict[str, Any]) -> BaseModel:
    try:
        return CONFIG_MODELS[kind].model_validate(values)
    except ValidationError as exc:
        # Rendered like any body error: where and what, never the value (it may be secret).
        raise RequestValidationError(
            [{**e, "loc": ("body", "config", *e["loc"])} for e in exc.errors(include_input=False)]
        ) from None


async def _check_name_free(
    session: AsyncSession, access: ProjectAccess, name: str, other_than: uuid.UUID | None = None
) -> None:
    if await repo.channel_name_taken(session, access.project_id, name, other_than=other_than):
        raise Conflict("The project has a channel of that name already")


def _audit(
    session: AsyncSession, action: str, kind: str, resource_id: uuid.UUID, details: dict[str, Any]
) -> None:
    audit.record(
        session,
        action=action,
        resource_type=kind,
        resource_id=resource_id,
        details=details,
        service=SERVICE,
    )


def _referenced(hidden: dict[str, Any]) -> dict[str, Any]:
    """Audit details of the secrets given by reference: where they are (never a value). A
    list of pairs, since the audit log hides values under secret-looking keys."""
    refs = secret_refs.references(hidden)
    pairs = [{"setting": name, "reference": ref} for name, ref in sorted(refs.items())]
    return {"referenced": pairs} if pairs else {}


async def create_channel(
    session: AsyncSession,
    box: SecretBox,
    settings: WorkflowSettings,
    access: ProjectAccess,
    body: ChannelIn,
) -> AlertChannel:
    await _check_name_free(session, access, body.name)
    kind = ChannelKind(body.kind)
    plain, hidden = split_config(kind, body.config)
    secret_refs.check_allowed(hidden, settings.alert_secret_ref_prefixes, access.project_slug)
    channel = AlertChannel(
        id=new_id(),
        project_id=access.project_id,
        project_slug=access.project_slug,
        name=body.name,
        kind=kind,
        enabled=body.enabled,
        config=plain,
        created_by=access.principal.user_id,
    )
    seal(box, channel, hidden)
    session.add(channel)
    await session.flush()
    _audit(
        session,
        "alerts.channel_create",
        "alert_channel",
        channel.id,
        {"project": access.project_slug, "name": channel.name, "kind": kind, **_referenced(hidden)},
    )
    return channel


async def get_channel(
    session: AsyncSession, access: ProjectAccess, channel_id: uuid.UUID
) -> AlertChannel:
    channel = await repo.channel(session, access.project_id, channel_id)
    if channel is None:
        raise NotFound("Alert channel not found")
    return channel


async def update_channel(
    session: AsyncSession,
    box: SecretBox,
    settings: WorkflowSettings,
    access: ProjectAccess,
    channel_id: uuid.UUID,
    patch: ChannelPatch,
) -> AlertChannel:
    channel = await get_channel(session, access, channel_id)
    changed: list[str] = []
    referenced: dict[str, Any] = {}
    if patch.name is not None and patch.name != channel.name:
        await _check_name_free(session, access, patch.name, channel.id)
        channel.name = patch.name
        changed.append("name")
    if patch.enabled is not None and patch.enabled != channel.enabled:
        channel.enabled = patch.enabled
        changed.append("enabled")
    if patch.config is not None:
        kind = ChannelKind(channel.kind)
        merged = {**channel.config, **unseal(box, channel), **patch.config}
        plain, hidden = split_config(kind, _validated(kind, merged))
        prefixes = settings.alert_secret_ref_prefixes
        secret_refs.check_allowed(hidden, prefixes, access.project_slug)
        referenced = _referenced(hidden)
        channel.config = plain
        seal(box, channel, hidden)
        changed.extend(f"config.{k}" for k in sorted(patch.config))
    channel.updated_at = utcnow()
    _audit(
        session,
        "alerts.channel_update",
        "alert_channel",
        channel.id,
        {
            "project": access.project_slug,
            "name": channel.name,
            "changed": changed,
            **referenced,
        },
    )
    return channel


async def delete_channel(
    session: AsyncSession, access: ProjectAccess, channel_id: uuid.UUID
) -> None:
    """Delete the channel with its delivery history; rules that named it stop naming it (a
    rule left with no channel is deleted too)."""
    channel = await get_channel(session, access, channel_id)
    for rule in await repo.rules_naming_channel(session, access.project_id, channel.id):
        remaining = [c for c in rule.channel_ids if c != str(channel.id)]
        if remaining:
            rule.channel_ids = remaining
        else:
            await repo.delete_rule(session, rule.id)
    await repo.delete_channel(session, channel.id)
    _audit(
        session,
        "alerts.channel_delete",
        "alert_channel",
        channel.id,
        {"project": access.project_slug, "name": channel.name, "kind": channel.kind},
    )


async def test_channel(
    session: AsyncSession,
    box: SecretBox,
    settings: WorkflowSettings,
    access: ProjectAccess,
    channel_id: uuid.UUID,
) -> AlertDelivery:
    """Send a test message through the channel now (one attempt) and record it."""
    channel = await get_channel(session, access, channel_id)
    delivery_id = new_id()
    now = utcnow()
    alert = senders.Alert(
        event=TEST_EVENT,
        title="Test message",
        summary=f"Test message for alert channel {channel.name!r}: alerts of "
        f"project {access.project_slug} will arrive like this",
        project_id=str(access.project_id),
        project=access.project_slug,
        dedup_key=f"{TEST_EVENT}:{channel.id}:{delivery_id}",
        occurred_at=now.isoformat(),
    )
    timeout = settings.alert_send_timeout_seconds
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
        error = await send_now(box, settings, http, channel, alert)
    delivery = AlertDelivery(
        id=delivery_id,
        project_id=access.project_id,
        channel_id=channel.id,
        dedup_key=alert.dedup_key,
        event=TEST_EVENT,
        payload=alert.to_payload(),
        status=DeliveryStatus.FAILED if error else DeliveryStatus.SENT,
        attempts=1,
        last_error=error,
        next_attempt_at=now,
        created_at=now,
        updated_at=utcnow(),
        sent_at=None if error else utcnow(),
    )
    session.add(delivery)
    _audit(
        session,
        "alerts.channel_test",
        "alert_channel",
        channel.id,
        {"project": access.project_slug, "name": channel.name, "sent": error is None},
    )
    return delivery


async def create_rule(session: AsyncSession, access: ProjectAccess, body: RuleIn) -> AlertRule:
    found = await repo.channels_by_id(session, access.project_id, body.channel_ids)
    missing = [str(c) for c in body.channel_ids if c not in found]
    if missing:
        raise Unprocessable(
            "Some channels are not channels of this project", extra={"channel_ids": missing}
        )
    rule = AlertRule(
        id=new_id(),
        project_id=access.project_id,
        project_slug=access.project_slug,
        name=body.name,
        kind=body.kind,
        enabled=body.enabled,
        workflow=body.workflow,
        task=body.task,
        factor=body.factor,
        min_samples=body.min_samples,
        max_minutes=body.max_minutes,
        channel_ids=[str(c) for c in body.channel_ids],
        created_by=access.principal.user_id,
        created_at=utcnow(),
    )
    session.add(rule)
    _audit(
        session,
        "alerts.rule_create",
        "alert_rule",
        rule.id,
        {"project": access.project_slug, "name": rule.name, "kind": rule.kind},
    )
    return rule


async def get_rule(session: AsyncSession, access: ProjectAccess, rule_id: uuid.UUID) -> AlertRule:
    rule = await repo.rule(session, access.project_id, rule_id)
    if rule is None:
        raise NotFound("Alert rule not found")
    return rule


async def delete_rule(session: AsyncSession, access: ProjectAccess, rule_id: uuid.UUID) -> None:
    rule = await get_rule(session, access, rule_id)
    await repo.delete_rule(session, rule.id)
    _audit(
        session,
        "alerts.rule_delete",
        "alert_rule",
        rule.id,
        {"project": access.project_slug, "name": rule.name, "kind": rule.kind},
    )


async def enqueue(
    session: AsyncSession,
    rule: AlertRule,
    alert_for: Callable[[str], senders.Alert],
    *,
    event: str,
    subject: uuid.UUID,
    job_id: uuid.UUID | None,
    task_run_id: uuid.UUID | None = None,
    now: datetime | None = None,
    notify: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Queue one delivery per enabled channel of ``rule`` about ``subject``; a delivery with
    the same (rule, channel, event, subject) is never queued twice. ``alert_for(key)`` builds
    the alert. Returns how many were queued."""
    channels = await repo.channels_by_id(
        session, rule.project_id, [uuid.UUID(c) for c in rule.channel_ids]
    )
    queued = 0
    now = now or utcnow()
    for channel in channels.values():
        if not channel.enabled:
            continue
        key = dedup_key(rule.id, channel.id, event, subject)
        alert = alert_for(key)
        inserted = await repo.add_delivery(
            session,
            {
                "id": new_id(),
                "project_id": rule.project_id,
                "channel_id": channel.id,
                "rule_id": rule.id,
                "rule_name": rule.name,
                "dedup_key": key,
                "event": event,
                "job_id": job_id,
                "task_run_id": task_run_id,
                "payload": alert.to_payload(),
                "status": DeliveryStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            },
        )
        queued += int(inserted)
    if queued and notify is not None:
        after_commit(session, notify)
    return queued
