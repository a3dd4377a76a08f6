"""The worker's side of the database: take queued tasks under a lease, renew the leases, and
report how an attempt ended (fenced by the attempt's token)."""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.events import QualityGateFailed
from armillary.contracts.tasks import declared_datasets
from armillary.kit.events import publish
from armillary.kit.redaction import redact_tokens

from ..code import repository as bundles
from ..jobs import repository as jobs_repo
from ..jobs import transitions
from ..jobs.models import Job, TaskAttempt, TaskRun, TaskState
from ..jobs.transitions import TransitionRejected, failed_attempts
from .protocol import AttemptResult, Outcome

_random = secrets.SystemRandom()
MAX_BACKOFF_SECONDS = 3_600.0


@dataclass(frozen=True)
class BundleRef:
    id: uuid.UUID
    sha256: str
    kind: str
    object_key: str


@dataclass(frozen=True)
class Claim:
    """One task attempt a worker holds: what to run, and the token its result must carry."""

    run_id: uuid.UUID
    job_id: uuid.UUID
    project_id: uuid.UUID
    started_by: uuid.UUID | None
    task: str
    task_type: str
    attempt: int
    fencing_token: int
    params: dict[str, Any]
    inputs: dict[str, dict[str, Any]]
    declared_outputs: list[str]
    timeout_seconds: float | None
    bundle: BundleRef | None
    # The attempt's row: a running task names it when it reports progress.
    attempt_id: uuid.UUID
    # The datasets the job's tasks name, read and written: all its tokens may touch.
    datasets_read: frozenset[str] = frozenset()
    datasets_write: frozenset[str] = frozenset()
    # The job's submission's trace context (ADR 0031): the attempt's span is its child.
    traceparent: str | None = None
    # What the spec asked: "sandbox", or "in_process" for a trusted built-in type (ADR 0047).
    isolation: str = "sandbox"


class LateResult(Exception):
    """The attempt's lease moved on (it was re-queued or cancelled): its result is refused."""


async def claim(
    session: AsyncSession,
    worker_id: str,
    limit: int,
    now: datetime,
    lease_seconds: float,
    *,
    job_id: uuid.UUID | None = None,
) -> list[Claim]:
    """Take up to ``limit`` queued tasks (of job ``job_id`` only, if given), oldest first:
    each starts running under this worker's lease, with a new attempt record."""
    queued = (
        select(TaskRun)
        .where(TaskRun.status == TaskState.QUEUED)
        .order_by(TaskRun.queued_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if job_id is not None:
        queued = queued.where(TaskRun.job_id == job_id)
    runs = (await session.scalars(queued)).all()
    if not runs:
        return []
    lease = (worker_id, now + timedelta(seconds=lease_seconds))
    attempt_ids: dict[uuid.UUID, uuid.UUID] = {}
    for run in runs:
        await transitions.apply(session, run, TaskState.RUNNING, lease=lease, now=now)
        attempt_ids[run.id] = uuid.uuid4()
        session.add(
            TaskAttempt(
                id=attempt_ids[run.id],
                task_run_id=run.id,
                number=run.attempt,
                fencing_token=run.fencing_token,
                worker_id=worker_id,
                started_at=now,
            )
        )
    await session.flush()
    job_ids = {run.job_id for run in runs}
    jobs = {
        row.id: row
        for row in await session.execute(
            select(Job.id, Job.project_id, Job.created_by, Job.traceparent).where(
                Job.id.in_(job_ids)
            )
        )
    }
    outputs = await jobs_repo.upstream_outputs(session, runs)
    named = await _declared_datasets(session, job_ids)
    claims = []
    for run in runs:
        job = jobs[run.job_id]
        params = dict(run.resolved_params or run.params or {})
        claims.append(
            Claim(
                run_id=run.id,
                job_id=run.job_id,
                project_id=job.project_id,
                started_by=job.created_by,
                task=run.name,
                task_type=run.type,
                attempt=run.attempt,
                fencing_token=run.fencing_token,
                params=params,
                inputs={need: outputs.get((run.job_id, need), {}) for need in run.needs or []},
                declared_outputs=list(run.declared_outputs or []),
                timeout_seconds=run.timeout_seconds,
                bundle=await _bundle(session, run, job.project_id, params),
                attempt_id=attempt_ids[run.id],
                isolation=run.isolation,
                datasets_read=named[run.job_id][0],
                datasets_write=named[run.job_id][1],
                traceparent=job.traceparent,
            )
        )
    return claims


async def _declared_datasets(
    session: AsyncSession, job_ids: set[uuid.UUID]
) -> dict[uuid.UUID, tuple[frozenset[str], frozenset[str]]]:
    """Per job, the datasets its tasks name as read and as written."""
    tasks: dict[uuid.UUID, list[tuple[str, dict[str, Any]]]] = {job: [] for job in job_ids}
    rows = await session.execute(
        select(TaskRun.job_id, TaskRun.type, TaskRun.params).where(TaskRun.job_id.in_(job_ids))
    )
    for job_id, task_type, params in rows:
        tasks[job_id].append((task_type, params or {}))
    return {job: declared_datasets(found) for job, found in tasks.items()}


async def _bundle(
    session: AsyncSession, run: TaskRun, project_id: uuid.UUID, params: dict[str, Any]
) -> BundleRef | None:
    name = params.get("bundle")
    if run.type != "python" or not isinstance(name, str):
        return None
    bundle = await bundles.latest_bundle(session, project_id, name)
    if bundle is None:
        return None
    return BundleRef(bundle.id, bundle.sha256, bundle.kind, bundle.object_key)


async def renew(
    session: AsyncSession,
    worker_id: str,
    held: dict[uuid.UUID, int],
    now: datetime,
    lease_seconds: float,
) -> set[uuid.UUID]:
    """Extend this worker's leases on ``held`` (run id -> fencing token); returns the runs it
    no longer holds (re-queued or finished by someone else: their attempts must stop). The row
    version moves too, so a scheduler that read the lease as expired cannot act on it."""
    if not held:
        return set()
    await session.execute(
        update(TaskRun)
        .where(
            TaskRun.id.in_(held),
            TaskRun.lease_owner == worker_id,
            TaskRun.status == TaskState.RUNNING,
        )
        .values(
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            row_version=TaskRun.row_version + 1,
        )
        .execution_options(synchronize_session=False)
    )
    still = {
        run_id: token
        for run_id, token in await session.execute(
            select(TaskRun.id, TaskRun.fencing_token).where(
                TaskRun.id.in_(held),
                TaskRun.lease_owner == worker_id,
                TaskRun.status == TaskState.RUNNING,
            )
        )
    }
    return {run_id for run_id, token in held.items() if still.get(run_id) != token}


async def active_runs(session: AsyncSession, job_id: uuid.UUID) -> int:
    """How many of the job's tasks are queued, running or waiting to retry."""
    count = await session.scalar(
        select(func.count())
        .select_from(TaskRun)
        .where(
            TaskRun.job_id == job_id,
            TaskRun.status.in_([TaskState.QUEUED, TaskState.RUNNING, TaskState.RETRYING]),
        )
    )
    return int(count or 0)


async def cancelling_jobs(session: AsyncSession, job_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``job_ids`` are being cancelled."""
    if not job_ids:
        return set()
    rows = await session.scalars(
        select(Job.id).where(Job.id.in_(job_ids), Job.cancel_requested_at.is_not(None))
    )
    return set(rows.all())


def backoff_seconds(base: float, failures: int) -> float:
    """Exponential backoff with jitter: ``base * 2**(failures-1)``, then a random point in its
    upper half, so retries of many tasks failing together spread out."""
    delay = min(base * 2 ** max(failures - 1, 0), MAX_BACKOFF_SECONDS)
    return float(delay / 2 + _random.uniform(0, delay / 2))


async def report(
    session: AsyncSession,
    claimed: Claim,
    result: AttemptResult,
    now: datetime,
    *,
    artifacts: dict[str, str] | None = None,
) -> str:
    """Record how the attempt ended; returns the task's new state. Raises :class:`LateResult`
    when the attempt's fencing token is no longer the task's."""
    result = _without_tokens(result)
    run = await session.scalar(
        select(TaskRun).where(TaskRun.id == claimed.run_id).with_for_update()
    )
    if run is None:  # the job was deleted meanwhile
        raise LateResult("the task no longer exists")
    reason = result.error
    try:
        if result.outcome is Outcome.SUCCEEDED:
            await transitions.apply(
                session, run, TaskState.SUCCEEDED, fencing_token=claimed.fencing_token, now=now
            )
            # Only once the fence let the result through.
            run.outputs = result.outputs or {}
            run.artifacts = artifacts or None
            report = run.outputs.get("report")
            run.report = report if isinstance(report, dict) else None
        elif result.outcome is Outcome.CANCELLED:
            await transitions.apply(
                session,
                run,
                TaskState.CANCELLED,
                fencing_token=claimed.fencing_token,
                reason="job cancelled",
                now=now,
            )
        elif failed_attempts(run) < run.max_attempts:
            await transitions.apply(
                session,
                run,
                TaskState.RETRYING,
                fencing_token=claimed.fencing_token,
                reason=reason,
                now=now,
            )
            delay = backoff_seconds(run.retry_backoff_seconds, failed_attempts(run))
            run.next_attempt_at = now + timedelta(seconds=delay)
        else:
            await transitions.apply(
                session,
                run,
                TaskState.FAILED,
                fencing_token=claimed.fencing_token,
                reason=reason,
                now=now,
            )
    except TransitionRejected as refused:
        raise LateResult(refused.detail) from refused
    if result.outcome is not Outcome.SUCCEEDED and result.report is not None:
        run.report = result.report
        if run.status == TaskState.FAILED:
            await _gate_failed(session, run, claimed, result.report, now)
    attempt = await session.scalar(
        select(TaskAttempt).where(
            TaskAttempt.task_run_id == run.id, TaskAttempt.fencing_token == claimed.fencing_token
        )
    )
    if attempt is not None:
        attempt.finished_at = now
        attempt.outcome = str(result.outcome)
        attempt.reason = reason
    return str(run.status)


def _without_tokens(result: AttemptResult) -> AttemptResult:
    """What user code returned or raised, with token-shaped strings masked: outputs, errors and
    reports are stored where every viewer of the project reads them."""
    return dataclasses.replace(
        result,
        outputs=redact_tokens(result.outputs),
        error=redact_tokens(result.error),
        report=redact_tokens(result.report),
    )


async def _gate_failed(
    session: AsyncSession, run: TaskRun, claimed: Claim, report: dict[str, Any], now: datetime
) -> None:
    """A task that failed with a report whose `error` checks failed is a failed quality gate:
    say so on the bus (alerts subscribe)."""
    failed = [
        str(check.get("name") or check.get("type"))
        for check in report.get("checks") or []
        if isinstance(check, dict) and not check.get("passed") and check.get("severity") == "error"
    ]
    if not failed:
        return
    workflow_id = await session.scalar(select(Job.workflow_id).where(Job.id == run.job_id))
    score = report.get("score")
    publish(
        session,
        QualityGateFailed.TYPE,
        QualityGateFailed(
            job_id=run.job_id,
            project_id=claimed.project_id,
            workflow_id=workflow_id or uuid.UUID(int=0),
            task=run.name,
            task_run_id=run.id,
            failed_checks=failed,
            score=float(score) if isinstance(score, int | float) else None,
            occurred_at=now,
        ),
    )
