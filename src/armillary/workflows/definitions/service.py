"""Workflows and their immutable versions: apply a spec, read, soft delete."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.tasks import TaskTypeContract
from armillary.kit import audit
from armillary.kit.authz import ProjectAccess
from armillary.kit.db import next_number, utcnow
from armillary.kit.errors import Conflict, NotFound, Unprocessable
from armillary.kit.ids import parse_uuid

from ..components import SERVICE
from ..specs.schema import NAME_PATTERN, SANDBOX, WorkflowSpec
from ..specs.validation import validate_spec
from . import repository as repo
from .models import Workflow, WorkflowVersion


def checked_spec(document: Any, task_types: Mapping[str, TaskTypeContract]) -> WorkflowSpec:
    """The validated spec, or 422 with every error (path, message, kind)."""
    result = validate_spec(document, task_types)
    if result.spec is None:
        raise Unprocessable(
            f"The workflow spec has {len(result.errors)} error(s)",
            extra={
                "errors": [e.model_dump(mode="json") for e in result.errors],
                "skipped": [s.model_dump(mode="json") for s in result.skipped],
            },
        )
    return result.spec


def canonical(spec: WorkflowSpec) -> tuple[dict[str, Any], str]:
    """The spec as stored (defaults filled in) and the SHA-256 of its canonical JSON.

    A task's ``isolation`` is stored only when it opts out of the sandbox: a spec written
    before the field existed keeps its hash, and an opt-in stands out in the version."""
    data = spec.model_dump(mode="json")
    for task in data["tasks"]:
        if task.get("isolation") == SANDBOX:
            del task["isolation"]
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return data, hashlib.sha256(text.encode()).hexdigest()


async def apply_spec(
    session: AsyncSession, access: ProjectAccess, spec: WorkflowSpec
) -> tuple[Workflow, WorkflowVersion, bool]:
    """Create the workflow, or add a version when the spec changed. Returns ``(workflow,
    version, created)``; an unchanged spec returns the latest version."""
    data, sha256 = canonical(spec)
    workflow = await repo.workflow(session, access.project_id, spec.name, for_update=True)
    if workflow is None:
        workflow = Workflow(
            project_id=access.project_id,
            name=spec.name,
            created_by=access.principal.user_id,
            latest_version=0,
        )
        try:
            async with session.begin_nested():
                session.add(workflow)
                await session.flush()
        except IntegrityError as exc:
            raise Conflict("The workflow was created concurrently; apply again") from exc
        audit.record(
            session,
            action="workflows.create",
            resource_type="workflow",
            resource_id=workflow.id,
            details={"project": access.project_slug, "name": spec.name},
            service=SERVICE,
        )
    else:
        latest = await repo.version(session, workflow.id, workflow.latest_version)
        if latest is not None and latest.spec_sha256 == sha256:
            audit.record(
                session,
                action="workflows.apply_unchanged",
                resource_type="workflow",
                resource_id=workflow.id,
                details={"version": latest.number},
                service=SERVICE,
            )
            return workflow, latest, False
    await next_number(session, workflow, Workflow.latest_version)
    workflow.description = spec.description
    schedule = spec.schedule
    workflow.schedule_cron = schedule.cron if schedule else None
    workflow.schedule_catchup = schedule.catchup if schedule else None
    workflow.schedule_max_catchup_runs = schedule.max_catchup_runs if schedule else None
    workflow.updated_at = utcnow()
    version = WorkflowVersion(
        workflow_id=workflow.id,
        number=workflow.latest_version,
        spec=data,
        spec_sha256=sha256,
        created_by=access.principal.user_id,
    )
    session.add(version)
    await session.flush()
    audit.record(
        session,
        action="workflows.version_create",
        resource_type="workflow_version",
        resource_id=version.id,
        details={"workflow": workflow.name, "version": version.number, "sha256": sha256},
        service=SERVICE,
    )
    return workflow, version, True


async def get_workflow(session: AsyncSession, access: ProjectAccess, ref: str) -> Workflow:
    if parse_uuid(ref) is None and not _is_name(ref):
        raise NotFound("Workflow not found")
    workflow = await repo.workflow(session, access.project_id, ref)
    if workflow is None:
        raise NotFound("Workflow not found")
    return workflow


async def get_version(
    session: AsyncSession, access: ProjectAccess, ref: str, number: int
) -> tuple[Workflow, WorkflowVersion]:
    workflow = await get_workflow(session, access, ref)
    version = await repo.version(session, workflow.id, number)
    if version is None:
        raise NotFound("Workflow version not found")
    return workflow, version


async def delete_workflow(session: AsyncSession, access: ProjectAccess, ref: str) -> None:
    """Soft delete: versions stay, for the jobs that ran them and for audit."""
    workflow = await get_workflow(session, access, ref)
    workflow.deleted_at = utcnow()
    workflow.deleted_by = access.principal.user_id
    audit.record(
        session,
        action="workflows.delete",
        resource_type="workflow",
        resource_id=workflow.id,
        details={"name": workflow.name},
        service=SERVICE,
    )


def _is_name(value: str) -> bool:
    return re.fullmatch(NAME_PATTERN, value) is not None
