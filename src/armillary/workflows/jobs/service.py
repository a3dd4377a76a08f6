"""Jobs: start one from a workflow's latest version, read, cancel; progress its tasks report."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit import audit, tracing
from armillary.kit.authz import AccessControl, Principal, ProjectAccess
from armillary.kit.db import Database, utcnow
from armillary.kit.errors import Conflict, Forbidden, NotFound, Unprocessable
from armillary.kit.ids import parse_uuid

from ..components import SERVICE
from ..definitions import repository as workflows_repo
from ..definitions import service as workflows
from ..definitions.models import Workflow
from ..scheduling import signals
from ..specs.schema import SANDBOX
from . import repository as repo
from . import transitions
from .models import Job, JobState, TaskRun, TaskState, Trigger
from .schemas import ProgressIn
from .transitions import JOB_TERMINAL

# Not yet running: cancelling them needs no executor.
_IDLE_TASKS = frozenset({TaskState.PENDING, TaskState.QUEUED, TaskState.RETRYING})
# Progress reports closer together than this are acknowledged but not written: a task that
# reports every batch must not turn into a stream of database writes.
PROGRESS_MIN_INTERVAL = timedelta(seconds=0.2)


def job_parameters(declared: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The job's parameters: the declared defaults overridden by ``given``. An undeclared
    name is refused (422) with the path of each."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise Unprocessable(
            f"Unknown parameter(s): {', '.join(unknown)}",
            extra={
                "errors": [
                    {
                        "path": f"parameters.{name}",
                        "message": "not a parameter of this workflow",
                        "kind": "unknown_parameter",
                    }
                    for name in unknown
                ]
            },
        )
    return {**declared, **given}


async def start_job(
    session: AsyncSession,
    access: ProjectAccess,
    workflow_ref: str,
    given: dict[str, Any],
    *,
    trigger: Trigger,
    idempotency_key: str | None = None,
) -> tuple[Job, str, bool]:
    """Create a queued job of the workflow's latest version, with one pending task run per
    task. Returns ``(job, workflow name, created)``; an idempotency key already used on this
    workflow returns that job instead."""
    workflow = await workflows.get_workflow(session, access, workflow_ref)
    job, created = await create_job(
        session,
        workflow,
        given,
        trigger=trigger,
        idempotency_key=idempotency_key,
        created_by=access.principal.user_id,
    )
    if created:
        audit.record(
            session,
            action="jobs.create",
            resource_type="job",
            resource_id=job.id,
            details={
                "project": access.project_slug,
                "workflow": workflow.name,
                "version": job.version_number,
                "trigger": str(trigger),
            },
            service=SERVICE,
        )
    return job, workflow.name, created


def task_runs(spec: dict[str, Any]) -> list[TaskRun]:
    """One pending run per task of the spec, carrying the task's execution settings."""
    return [
        TaskRun(
            position=position,
            name=task["name"],
            type=task["type"],
            status=TaskState.PENDING,
            attempt=0,
            max_attempts=int(task.get("retries", 0)) + 1,
            lost_attempts=0,
            needs=list(task.get("needs", [])),
            params=dict(task.get("params", {})),
            declared_outputs=list(task.get("outputs", [])),
            timeout_seconds=task.get("timeout_seconds"),
            retry_backoff_seconds=float(task.get("retry_backoff_seconds", 10.0)),
            cache=bool(task.get("cache", False)),
            isolation=str(task.get("isolation", SANDBOX)),
            fencing_token=0,
            attempts=[],
        )
        for position, task in enumerate(spec["tasks"])
    ]


async def create_job(
    session: AsyncSession,
    workflow: Workflow,
    given: dict[str, Any],
    *,
    trigger: Trigger,
    idempotency_key: str | None,
    created_by: uuid.UUID | None,
) -> tuple[Job, bool]:
    """The job of ``workflow``'s latest version (no access check: callers make it). With an
    idempotency key already used on the workflow, that job and ``False``."""
    if idempotency_key is not None:
        existing = await repo.job_by_key(session, workflow.id, idempotency_key)
        if existing is not None:
            return existing, False
    version = await workflows_repo.version(session, workflow.id, workflow.latest_version)
    if version is None:  # pragma: no cover - a workflow always has its latest version
        raise NotFound("Workflow version not found")
    spec = version.spec
    job = Job(
        id=uuid.uuid4(),
        project_id=workflow.project_id,
        workflow_id=workflow.id,
        version_id=version.id,
        version_number=version.number,
        status=JobState.QUEUED,
        trigger=trigger,
        parameters=job_parameters(spec.get("parameters", {}), given),
        idempotency_key=idempotency_key,
        created_by=created_by,
        created_at=utcnow(),
        traceparent=tracing.traceparent(),
    )
    runs = task_runs(spec)
    try:
        # A concurrent request with the same key may win the insert: answer with its job.
        async with session.begin_nested():
            job.task_runs = runs
            session.add(job)
            await session.flush()
    except IntegrityError as exc:
        if idempotency_key is None:  # pragma: no cover - only the key is unique
            raise
        existing = await repo.job_by_key(session, workflow.id, idempotency_key)
        if existing is None:  # pragma: no cover
            raise Conflict("The job was created concurrently; try again") from exc
        return existing, False
    await signals.notify(session, signals.SCHEDULER_WANTED)
    return job, True


async def visible_job(
    session: AsyncSession,
    control: AccessControl,
    principal: Principal,
    job_ref: str,
    action: str,
    *,
    claims: dict[str, Any] | None = None,
    for_update: bool = False,
) -> tuple[Job, str]:
    """The job with its workflow name, if the caller may see its project: an unknown job and
    one of a project the caller is not in are the same 404; a member without ``action``
    gets 403."""
    try:
        job_id = uuid.UUID(job_ref)
    except ValueError:
        raise NotFound("Job not found") from None
    found = await repo.job_with_tasks(session, job_id, for_update=for_update)
    if found is None:
        raise NotFound("Job not found")
    try:
        access = await control.project_access(principal.token, str(found[0].project_id), claims)
    except NotFound:
        raise NotFound("Job not found") from None
    if not access.allows(action):
        raise Forbidden(f"Your role in this project does not allow {action}")
    return found


async def visible_task_run(
    db: Database,
    control: AccessControl,
    principal: Principal,
    job_ref: str,
    task: str,
    *,
    claims: dict[str, Any] | None = None,
) -> tuple[Job, TaskRun | None]:
    """The job (``job:read``, as :func:`visible_job`) and its run of ``task`` if there is one,
    read in a short session of its own: for routes that stream their answer afterwards."""
    async with db.read_only() as session:
        job, _ = await visible_job(session, control, principal, job_ref, "job:read", claims=claims)
    return job, next((run for run in job.task_runs if run.name == task), None)


async def cancel_job(session: AsyncSession, job: Job) -> Job:
    """Cancel the tasks that are not running; the job is cancelled when nothing runs, and
    otherwise marked for the executor to stop its running tasks. 409 for a finished job."""
    if job.status in JOB_TERMINAL:
        raise transitions.TransitionRejected(f"The job is already {job.status}")
    now = utcnow()
    for run in job.task_runs:
        if run.status in _IDLE_TASKS:
            await transitions.apply(session, run, TaskState.CANCELLED, reason="job cancelled")
    if any(run.status == TaskState.RUNNING for run in job.task_runs):
        job.cancel_requested_at = now
        await signals.notify(session, signals.SCHEDULER_WANTED)
    else:
        await transitions.apply(session, job, JobState.CANCELLED, reason="cancelled", now=now)
    audit.record(
        session,
        action="jobs.cancel",
        resource_type="job",
        resource_id=job.id,
        details={"status": str(job.status)},
        service=SERVICE,
    )
    await session.flush()
    return job


class AttemptSuperseded(Conflict):
    title = "Attempt superseded"


async def report_progress(
    session: AsyncSession,
    control: AccessControl,
    principal: Principal,
    job_ref: str,
    task: str,
    body: ProgressIn,
    *,
    claims: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """Record what attempt ``body.attempt_id`` of ``task`` reports about its progress.

    Only the job's own token may (a user's token: 403; another job's: 404, as for a job it
    cannot see). The attempt must be the task's current running one (409 otherwise, so a
    late or lost attempt never overwrites its successor's). Reports closer together than
    :data:`PROGRESS_MIN_INTERVAL` are dropped; returns whether this one was written."""
    if not principal.is_job:
        raise Forbidden("Only the job's own tasks report its progress")
    job_id = parse_uuid(job_ref)
    if job_id is None or job_id != principal.job_id:
        raise NotFound("Job not found")
    found = await repo.task_run_ref(session, job_id, task)
    if found is None:
        raise NotFound("Job not found")
    project_id, run_id = found
    try:
        access = await control.project_access(principal.token, str(project_id), claims)
    except NotFound:
        raise NotFound("Job not found") from None
    if not access.allows("job:report"):
        raise Forbidden("Your role in this project does not allow job:report")
    if run_id is None:
        raise NotFound("Task not found")
    superseded = AttemptSuperseded("This attempt is not the task's running attempt")
    attempt_id = parse_uuid(body.attempt_id)
    fence = None if attempt_id is None else await repo.attempt_fence(session, run_id, attempt_id)
    if attempt_id is None or fence is None or not fence.current:
        raise superseded
    now = now or utcnow()
    not_after = now - PROGRESS_MIN_INTERVAL
    if fence.progress_at is not None and fence.progress_at > not_after:
        return False
    progress = body.model_dump(exclude={"attempt_id"}, mode="json")
    if await repo.write_progress(session, run_id, attempt_id, progress, now, not_after):
        return True
    # Nothing written: a concurrent report came first, or the attempt ended meanwhile.
    again = await repo.attempt_fence(session, run_id, attempt_id)
    if again is None or not again.current:
        raise superseded
    return False
