"""Jobs over HTTP: start one, list a project's history, show one, cancel; task progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status

from armillary.kit import context
from armillary.kit.authz import AccessControl, Caller, ProjectAccess, project_permission
from armillary.kit.deps import ReadSession, Session
from armillary.kit.edge import TASK_ROUTE
from armillary.kit.pagination import Instant, Page, Paging

from . import repository, service
from .models import Job, JobState, TaskAttempt, TaskRun, Trigger
from .schemas import (
    JobDetail,
    JobIn,
    JobOut,
    ProgressIn,
    ProgressOut,
    TaskAttemptOut,
    TaskRunOut,
)

router = APIRouter(tags=["jobs"])

Reader = Annotated[ProjectAccess, Depends(project_permission("job:read"))]
Runner = Annotated[ProjectAccess, Depends(project_permission("job:run"))]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=255),
]
TriggerHeader = Annotated[str | None, Header(alias="X-Armillary-Trigger", max_length=32)]


def job_out(job: Job, workflow: str) -> JobOut:
    """A job without its task runs, for lists."""
    return JobOut(
        id=job.id,
        project_id=job.project_id,
        workflow=workflow,
        workflow_id=job.workflow_id,
        version=job.version_number,
        status=job.status,
        trigger=job.trigger,
        parameters=job.parameters,
        created_by=job.created_by,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        cancel_requested_at=job.cancel_requested_at,
        error=job.error,
    )


def progress_out(attempt: TaskAttempt) -> ProgressOut | None:
    if not attempt.progress:
        return None
    return ProgressOut.model_validate({**attempt.progress, "updated_at": attempt.progress_at})


def task_run_out(run: TaskRun) -> TaskRunOut:
    """One task run with its timings, attempt, error, outputs and latest progress."""
    attempts = [
        TaskAttemptOut(
            number=a.number,
            worker=a.worker_id,
            started_at=a.started_at,
            finished_at=a.finished_at,
            outcome=a.outcome,
            reason=a.reason,
            progress=progress_out(a),
        )
        for a in run.attempts
    ]
    return TaskRunOut(
        id=run.id,
        name=run.name,
        type=run.type,
        status=run.status,
        attempt=run.attempt,
        max_attempts=run.max_attempts,
        needs=run.needs,
        queued_at=run.queued_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        error=run.error,
        outputs=run.outputs,
        artifacts=run.artifacts,
        report=run.report,
        cached_from=run.cached_from,
        isolation=run.isolation,
        attempts=attempts,
        # Attempts come ordered by number: the last is the latest.
        progress=attempts[-1].progress if attempts else None,
    )


def job_detail(job: Job, workflow: str) -> JobDetail:
    """A job with its task runs (loaded by the caller)."""
    return JobDetail(
        **job_out(job, workflow).model_dump(), tasks=[task_run_out(r) for r in job.task_runs]
    )


def _control(request: Request) -> AccessControl:
    control: AccessControl = request.app.state.runtime.access
    return control


@router.post(
    "/api/v1/projects/{project}/workflows/{workflow}/jobs",
    name="jobs.create",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "The job this Idempotency-Key already started"}, 422: {}},
)
async def create_job(
    workflow: str,
    body: JobIn,
    response: Response,
    access: Runner,
    session: Session,
    idempotency_key: IdempotencyKey = None,
    trigger: TriggerHeader = None,
) -> JobDetail:
    """Start a job of the workflow's latest version (201). The same ``Idempotency-Key`` on
    the same workflow returns the job it started (200)."""
    job, name, created = await service.start_job(
        session,
        access,
        workflow,
        body.parameters,
        trigger=Trigger.CLI if (trigger or "").lower() == "cli" else Trigger.API,
        idempotency_key=idempotency_key,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return job_detail(job, name)


@router.get("/api/v1/projects/{project}/jobs", name="jobs.list")
async def list_jobs(
    access: Reader,
    session: ReadSession,
    paging: Paging,
    status_: Annotated[JobState | None, Query(alias="status")] = None,
    workflow: Annotated[str | None, Query(max_length=64)] = None,
    trigger: Trigger | None = None,
    since: Annotated[Instant | None, Query(description="Created at or after")] = None,
    until: Annotated[Instant | None, Query(description="Created before")] = None,
) -> Page[JobOut]:
    """The project's jobs, newest first."""
    filters = repository.JobFilters(
        status=status_, workflow=workflow, trigger=trigger, since=since, until=until
    )
    rows, total = await repository.jobs_page(
        session, access.project_id, filters, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[job_out(job, name) for job, name in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get(
    "/api/v1/jobs/{job_id}", name="jobs.get", responses={404: {}}, dependencies=[TASK_ROUTE]
)
async def get_job(job_id: str, request: Request, caller: Caller, session: ReadSession) -> JobDetail:
    """A job with its version, timings and task runs (404 unless the caller is a member of
    its project)."""
    job, name = await service.visible_job(
        session,
        _control(request),
        caller,
        job_id,
        "job:read",
        claims=getattr(request.state, "token_claims", None),
    )
    return job_detail(job, name)


@router.get(
    "/api/v1/jobs/{job_id}/tasks",
    name="jobs.tasks",
    responses={404: {}},
    dependencies=[TASK_ROUTE],
)
async def get_job_tasks(
    job_id: str, request: Request, caller: Caller, session: ReadSession
) -> list[TaskRunOut]:
    """The job's task runs, in the order the spec lists them, with their attempts."""
    job, _ = await service.visible_job(
        session,
        _control(request),
        caller,
        job_id,
        "job:read",
        claims=getattr(request.state, "token_claims", None),
    )
    return [task_run_out(r) for r in job.task_runs]


@router.post("/api/v1/jobs/{job_id}/cancel", name="jobs.cancel", responses={404: {}, 409: {}})
async def cancel_job(job_id: str, request: Request, caller: Caller, session: Session) -> JobDetail:
    """Cancel a job: tasks not yet running are cancelled; running ones are stopped by the
    executor (``cancel_requested_at``). 409 when the job has already finished."""
    job, name = await service.visible_job(
        session,
        _control(request),
        caller,
        job_id,
        "job:run",
        claims=getattr(request.state, "token_claims", None),
        for_update=True,
    )
    return job_detail(await service.cancel_job(session, job), name)


@router.put(
    "/api/v1/jobs/{job_id}/tasks/{task}/progress",
    name="jobs.task_progress",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[TASK_ROUTE],
    responses={403: {}, 404: {}, 409: {}},
)
async def report_progress(
    job_id: str,
    task: Annotated[str, Path(max_length=64)],
    body: ProgressIn,
    request: Request,
    caller: Caller,
    session: Session,
) -> None:
    """How far a running attempt has got, from the job's own token (a user's token: 403).
    409 when ``attempt_id`` is not the task's current running attempt. Reports closer than
    0.2 s apart are accepted (204) but not stored."""
    await service.report_progress(
        session,
        _control(request),
        caller,
        job_id,
        task,
        body,
        claims=getattr(request.state, "token_claims", None),
    )
    ctx = context.current()
    if ctx is not None:
        # Telemetry, several times a second: not an audited change (refusals still are).
        ctx.audit_recorded = True
