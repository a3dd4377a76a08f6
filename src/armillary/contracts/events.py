"""Domain events that cross service boundaries. ``TYPE`` is the routing key."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    model_config = ConfigDict(frozen=True)
    TYPE: ClassVar[str]


class UserChanged(Event):
    """A user's role, active flag or profile changed: cached principals must be dropped."""

    TYPE: ClassVar[str] = "identity.user_changed"
    user_id: UUID


class MembershipChanged(Event):
    TYPE: ClassVar[str] = "identity.membership_changed"
    project_id: UUID
    project_slug: str
    user_id: UUID


class ProjectChanged(Event):
    """A project's name or description changed: cached access answers carry them."""

    TYPE: ClassVar[str] = "identity.project_changed"
    project_id: UUID
    project_slug: str


class ProjectDeleted(Event):
    TYPE: ClassVar[str] = "identity.project_deleted"
    project_id: UUID
    project_slug: str
    member_ids: list[UUID]


class SigningKeysChanged(Event):
    """Keys were rotated or retired: verifiers must refetch the JWKS."""

    TYPE: ClassVar[str] = "identity.signing_keys_changed"
    active_kid: str


class AuditEntry(Event):
    """One audit record, written by any service through ``kit.audit``; the identity service
    appends it to the hash-chained log."""

    TYPE: ClassVar[str] = "audit.entry"
    occurred_at: datetime
    service: str
    actor_id: UUID | None
    actor_label: str | None = None
    action: str
    resource_type: str | None
    resource_id: str | None
    outcome: str
    client_address: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any] = {}


class JobStatusChanged(Event):
    """A job moved from one state to another (queued, running, succeeded, failed, cancelled)."""

    TYPE: ClassVar[str] = "workflows.job_status_changed"
    job_id: UUID
    project_id: UUID
    workflow_id: UUID
    from_status: str
    to_status: str
    reason: str | None = None
    occurred_at: datetime


class TaskRunStatusChanged(Event):
    """A task run of a job moved from one state to another."""

    TYPE: ClassVar[str] = "workflows.task_run_status_changed"
    task_run_id: UUID
    job_id: UUID
    name: str
    from_status: str
    to_status: str
    attempt: int
    reason: str | None = None
    occurred_at: datetime


class QualityGateFailed(Event):
    """A validation task's `error` checks failed: the task failed closed, its dependents
    will not run. Carries enough to alert without reading the workflows service's tables."""

    TYPE: ClassVar[str] = "workflows.quality_gate_failed"
    job_id: UUID
    project_id: UUID
    workflow_id: UUID
    task: str
    task_run_id: UUID
    failed_checks: list[str]
    score: float | None = None
    occurred_at: datetime
