"""The scheduler's steps, each one short transaction: start queued jobs, queue the tasks whose
upstream tasks succeeded (or reuse a cached result), re-queue retries that are due and tasks
whose worker was lost, and finish jobs with nothing left to run.

Reads that only select candidates are Core queries; rows are loaded as ORM objects only to be
moved through :mod:`armillary.workflows.jobs.transitions`, under a row lock where the database
has them (``SKIP LOCKED``) and the task run's row version everywhere.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.db import after_commit

from .. import metrics
from ..code import repository as bundles
from ..jobs import repository as jobs_repo
from ..jobs import transitions
from ..jobs.models import Job, JobState, TaskAttempt, TaskRun, TaskState
from ..jobs.transitions import TASK_TERMINAL, TransitionRejected
from ..specs.references import UnresolvedReference, resolve

# How many rows one step handles per transaction; the next tick takes the rest.
BATCH = 2_000
_BLOCKING = frozenset({TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED})
_DONE_OK = frozenset({TaskState.SUCCEEDED, TaskState.SKIPPED})


@dataclass
class StepResult:
    """What a step changed: whether workers must be woken, and whether to look again soon."""

    queued: int = 0
    changed: int = 0
    more: bool = False


async def start_queued_jobs(session: AsyncSession, now: datetime) -> StepResult:
    """Queued jobs start running (their first tasks are queued by :func:`promote_ready`)."""
    jobs = (
        await session.scalars(
            select(Job)
            .where(Job.status == JobState.QUEUED)
            .order_by(Job.created_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for job in jobs:
        await transitions.apply(session, job, JobState.RUNNING, now=now)
    return StepResult(changed=len(jobs), more=len(jobs) == BATCH)


@dataclass(frozen=True)
class _Pending:
    id: uuid.UUID
    job_id: uuid.UUID
    needs: list[str]


async def promote_ready(
    session: AsyncSession,
    now: datetime,
    *,
    job_id: uuid.UUID | None = None,
    run_ids: Collection[uuid.UUID] | None = None,
) -> StepResult:
    """Pending tasks of running jobs (or of job ``job_id``) whose needs all succeeded are
    queued (or succeed from the cache); those with a failed, cancelled or upstream-failed need
    become upstream_failed."""
    candidates = (
        select(TaskRun.id, TaskRun.job_id, TaskRun.needs)
        .join(Job, Job.id == TaskRun.job_id)
        .where(
            Job.status == JobState.RUNNING,
            Job.cancel_requested_at.is_(None),
            TaskRun.status == TaskState.PENDING,
        )
        .limit(BATCH)
    )
    if job_id is not None:
        candidates = candidates.where(TaskRun.job_id == job_id)
    if run_ids is not None:
        candidates = candidates.where(TaskRun.id.in_(run_ids))
    rows = await session.execute(candidates)
    pending = [_Pending(r.id, r.job_id, list(r.needs or [])) for r in rows]
    if not pending:
        return StepResult()
    job_ids = {p.job_id for p in pending}
    statuses: dict[uuid.UUID, dict[str, str]] = defaultdict(dict)
    for job_id, name, status in await session.execute(
        select(TaskRun.job_id, TaskRun.name, TaskRun.status).where(TaskRun.job_id.in_(job_ids))
    ):
        statuses[job_id][name] = status
    ready: list[uuid.UUID] = []
    blocked: dict[uuid.UUID, str] = {}
    for p in pending:
        states = statuses[p.job_id]
        failed = [n for n in p.needs if states.get(n) in _BLOCKING]
        if failed:
            blocked[p.id] = f"upstream task {failed[0]} {states[failed[0]]}"
        elif all(states.get(n) in _DONE_OK for n in p.needs):
            ready.append(p.id)
    if not ready and not blocked:
        return StepResult()
    runs = (
        await session.scalars(
            select(TaskRun)
            .where(TaskRun.id.in_([*ready, *blocked]), TaskRun.status == TaskState.PENDING)
            .with_for_update(skip_locked=True)
        )
    ).all()
    result = StepResult(more=len(pending) == BATCH)
    context = await _JobContext.load(session, [r for r in runs if r.id not in blocked])
    for run in runs:
        if run.id in blocked:
            await transitions.apply(
                session, run, TaskState.UPSTREAM_FAILED, reason=blocked[run.id], now=now
            )
        else:
            await _queue_or_reuse(session, run, context, now, result)
        result.changed += 1
    return result


@dataclass
class _JobContext:
    """Job parameters and upstream outputs of the jobs whose tasks are being queued."""

    parameters: dict[uuid.UUID, dict[str, Any]]
    project: dict[uuid.UUID, uuid.UUID]
    outputs: dict[uuid.UUID, dict[str, dict[str, Any]]]

    @classmethod
    async def load(cls, session: AsyncSession, runs: Iterable[TaskRun]) -> _JobContext:
        runs = list(runs)
        job_ids = {r.job_id for r in runs}
        context = cls({}, {}, defaultdict(dict))
        if not job_ids:
            return context
        for job_id, project_id, parameters in await session.execute(
            select(Job.id, Job.project_id, Job.parameters).where(Job.id.in_(job_ids))
        ):
            context.parameters[job_id] = parameters or {}
            context.project[job_id] = project_id
        for (job_id, name), outputs in (await jobs_repo.upstream_outputs(session, runs)).items():
            context.outputs[job_id][name] = outputs
        return context


def cache_key(task_type: str, params: dict[str, Any], inputs: dict[str, Any], code: str) -> str:
    """SHA-256 over the task type, its resolved parameters, its inputs and its code's hash."""
    document = {"type": task_type, "params": params, "inputs": inputs, "code": code}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _queue_or_reuse(
    session: AsyncSession, run: TaskRun, context: _JobContext, now: datetime, result: StepResult
) -> None:
    inputs = {need: context.outputs[run.job_id].get(need, {}) for need in run.needs or []}
    try:
        run.resolved_params = resolve(
            run.params or {}, context.outputs[run.job_id], context.parameters[run.job_id]
        )
    except UnresolvedReference as exc:
        await transitions.apply(session, run, TaskState.UPSTREAM_FAILED, reason=str(exc), now=now)
        return
    if run.cache:
        code = ""
        bundle_name = (run.resolved_params or {}).get("bundle")
        if run.type == "python" and isinstance(bundle_name, str):
            bundle = await bundles.latest_bundle(session, context.project[run.job_id], bundle_name)
            code = bundle.sha256 if bundle is not None else ""
        run.cache_key = cache_key(run.type, run.resolved_params or {}, inputs, code)
        hit = (
            await session.execute(
                select(TaskRun.id, TaskRun.outputs, TaskRun.artifacts)
                .join(Job, Job.id == TaskRun.job_id)
                .where(
                    Job.project_id == context.project[run.job_id],
                    TaskRun.cache_key == run.cache_key,
                    TaskRun.status == TaskState.SUCCEEDED,
                    TaskRun.id != run.id,
                )
                .order_by(TaskRun.finished_at.desc())
                .limit(1)
                # Shared lock: retention, which locks a run before deleting its objects,
                # cannot delete the reused run's artifacts while this run starts recording
                # them (it waits, then sees this run as one that still records them).
                .with_for_update(read=True, of=TaskRun)
            )
        ).first()
        if hit is not None:
            run.cached_from, run.outputs, run.artifacts = hit.id, hit.outputs, hit.artifacts
            await transitions.apply(
                session, run, TaskState.SUCCEEDED, reason=f"cache hit: reused {hit.id}", now=now
            )
            return
    await transitions.apply(session, run, TaskState.QUEUED, now=now)
    result.queued += 1


async def requeue_due_retries(session: AsyncSession, now: datetime) -> StepResult:
    """Tasks waiting out their retry backoff are queued again once it is over."""
    runs = (
        await session.scalars(
            select(TaskRun)
            .where(TaskRun.status == TaskState.RETRYING, TaskRun.next_attempt_at <= now)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for run in runs:
        await transitions.apply(session, run, TaskState.QUEUED, reason="retry", now=now)
    return StepResult(queued=len(runs), changed=len(runs), more=len(runs) == BATCH)


async def reclaim_lost(session: AsyncSession, now: datetime) -> StepResult:
    """A running task whose lease expired lost its worker: its attempt is closed as lost and
    the task queued again under a new fencing token (or failed once it was lost too often;
    cancelled if its job is being cancelled)."""
    runs = (
        await session.scalars(
            select(TaskRun)
            .where(TaskRun.status == TaskState.RUNNING, TaskRun.lease_expires_at < now)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
    ).all()
    result = StepResult(changed=len(runs), more=len(runs) == BATCH)
    if not runs:
        return result
    cancelling = set(
        (
            await session.scalars(
                select(Job.id).where(
                    Job.id.in_({r.job_id for r in runs}), Job.cancel_requested_at.is_not(None)
                )
            )
        ).all()
    )
    lost_types = [run.type for run in runs]

    async def count_lost() -> None:
        for task_type in lost_types:
            metrics.LEASES_LOST.labels(task_type).inc()

    after_commit(session, count_lost)
    for run in runs:
        reason = f"lease expired: worker {run.lease_owner} missed its heartbeat"
        await _close_attempt(session, run, now, outcome="lost", reason=reason)
        if run.job_id in cancelling:
            await transitions.apply(session, run, TaskState.CANCELLED, reason=reason, now=now)
            continue
        try:
            await transitions.apply(session, run, TaskState.QUEUED, reason=reason, now=now)
            result.queued += 1
        except TransitionRejected as refused:
            await transitions.apply(
                session,
                run,
                TaskState.FAILED,
                reason=f"{reason}; {refused.detail}",
                fencing_token=run.fencing_token,
                now=now,
            )
    return result


async def _close_attempt(
    session: AsyncSession, run: TaskRun, now: datetime, *, outcome: str, reason: str
) -> None:
    attempt = await session.scalar(
        select(TaskAttempt).where(
            TaskAttempt.task_run_id == run.id, TaskAttempt.fencing_token == run.fencing_token
        )
    )
    if attempt is not None and attempt.finished_at is None:
        attempt.finished_at = now
        attempt.outcome = outcome
        attempt.reason = reason


async def finish_jobs(session: AsyncSession, now: datetime) -> StepResult:
    """Running jobs with no task left to run end: cancelled when a cancel was requested,
    succeeded when every task succeeded (or was skipped), failed otherwise."""
    active = func.sum(case((TaskRun.status.not_in(TASK_TERMINAL), 1), else_=0))
    unsuccessful = func.sum(case((TaskRun.status.not_in(_DONE_OK), 1), else_=0))
    rows = (
        await session.execute(
            select(TaskRun.job_id, unsuccessful)
            .join(Job, Job.id == TaskRun.job_id)
            .where(Job.status == JobState.RUNNING)
            .group_by(TaskRun.job_id)
            .having(active == 0)
            .limit(BATCH)
        )
    ).all()
    if not rows:
        return StepResult()
    failures = {job_id: int(count or 0) for job_id, count in rows}
    jobs = (
        await session.scalars(
            select(Job)
            .where(Job.id.in_(failures), Job.status == JobState.RUNNING)
            .with_for_update(skip_locked=True)
        )
    ).all()
    failed_names = await _failed_task_names(session, [j.id for j in jobs if failures[j.id]])
    for job in jobs:
        if job.cancel_requested_at is not None:
            await transitions.apply(session, job, JobState.CANCELLED, reason="cancelled", now=now)
        elif failures[job.id] == 0:
            await transitions.apply(session, job, JobState.SUCCEEDED, now=now)
        else:
            names = ", ".join(failed_names.get(job.id, [])) or "a task"
            await transitions.apply(
                session, job, JobState.FAILED, reason=f"failed: {names}", now=now
            )
    return StepResult(changed=len(jobs), more=len(rows) == BATCH)


async def _failed_task_names(
    session: AsyncSession, job_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    names: dict[uuid.UUID, list[str]] = defaultdict(list)
    if not job_ids:
        return names
    for job_id, name in await session.execute(
        select(TaskRun.job_id, TaskRun.name)
        .where(TaskRun.job_id.in_(job_ids), TaskRun.status == TaskState.FAILED)
        .order_by(TaskRun.position)
    ):
        names[job_id].append(name)
    return names


# A worker continues a job itself only into tasks with at most this many needs: checking a
# wide fan-in after every one of its inputs would cost more than it saves (the scheduler
# promotes those once, when their last input is done).
CONTINUATION_MAX_NEEDS = 16


async def narrow_dependents(session: AsyncSession, job_id: uuid.UUID, task: str) -> list[uuid.UUID]:
    """Pending runs of the job that need ``task`` and few other tasks."""
    rows = await session.execute(
        select(TaskRun.id, TaskRun.needs).where(
            TaskRun.job_id == job_id, TaskRun.status == TaskState.PENDING
        )
    )
    return [
        run_id
        for run_id, needs in rows
        if needs and task in needs and len(needs) <= CONTINUATION_MAX_NEEDS
    ]
