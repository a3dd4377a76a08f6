"""Every job and task-run status change, as ordered rules (the way Prefect's orchestration
policies work).

:func:`apply` runs each rule that governs the requested ``from -> to`` pair, in order: a rule
may reject the change with :class:`TransitionRejected` (409) or add side effects (timestamps,
attempt counting, fencing tokens). Then the status is written and a status-changed event goes
to the outbox in the caller's transaction. Nothing else writes ``status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.events import JobStatusChanged, TaskRunStatusChanged
from armillary.kit import tracing
from armillary.kit.db import after_commit, utcnow
from armillary.kit.errors import Conflict
from armillary.kit.events import publish

from .. import metrics
from .models import Job, JobState, TaskRun, TaskState

JOB_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
TASK_TERMINAL = frozenset(
    {
        TaskState.SUCCEEDED,
        TaskState.FAILED,
        TaskState.SKIPPED,
        TaskState.UPSTREAM_FAILED,
        TaskState.CANCELLED,
    }
)

# The state graphs; anything not listed is refused.
JOB_EDGES: dict[str, frozenset[str]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}),
}
TASK_EDGES: dict[str, frozenset[str]] = {
    # pending -> succeeded: a cache hit reuses an earlier run's outputs without running.
    TaskState.PENDING: frozenset(
        {
            TaskState.QUEUED,
            TaskState.SUCCEEDED,
            TaskState.SKIPPED,
            TaskState.UPSTREAM_FAILED,
            TaskState.CANCELLED,
        }
    ),
    TaskState.QUEUED: frozenset({TaskState.RUNNING, TaskState.CANCELLED}),
    # running -> queued: the scheduler re-queues a task whose worker was lost.
    TaskState.RUNNING: frozenset(
        {
            TaskState.SUCCEEDED,
            TaskState.FAILED,
            TaskState.RETRYING,
            TaskState.QUEUED,
            TaskState.CANCELLED,
        }
    ),
    TaskState.RETRYING: frozenset({TaskState.QUEUED, TaskState.FAILED, TaskState.CANCELLED}),
}
# A worker's report of how an attempt ended: it must carry the attempt's fencing token.
TASK_RESULTS = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.RETRYING})
# How often a task may be re-queued because its worker was lost, on top of its retries: a task
# that keeps killing its workers must end.
MAX_LOST_ATTEMPTS = 3

Subject = Job | TaskRun


class TransitionRejected(Conflict):
    """The requested status change is not allowed (409)."""

    title = "Transition rejected"


@dataclass
class Transition:
    """One requested change, as the rules see it."""

    session: AsyncSession
    obj: Subject
    from_state: str
    to_state: str
    reason: str | None
    fencing_token: int | None
    now: datetime
    # Who takes the task and until when (queued -> running).
    lease: tuple[str, datetime] | None = None


class Rule:
    """Governs ``kind`` objects moving from ``from_states`` to ``to_states`` (None: any)."""

    kind: ClassVar[type[Job] | type[TaskRun]]
    from_states: ClassVar[frozenset[str] | None] = None
    to_states: ClassVar[frozenset[str] | None] = None

    def governs(self, t: Transition) -> bool:
        """Whether this rule applies to ``t``."""
        return (
            isinstance(t.obj, self.kind)
            and (self.from_states is None or t.from_state in self.from_states)
            and (self.to_states is None or t.to_state in self.to_states)
        )

    def check(self, t: Transition) -> None:
        """Raise :class:`TransitionRejected` to refuse the change."""

    def effect(self, t: Transition) -> None:
        """Side effects, applied once every rule has accepted the change."""


class JobTerminalIsFinal(Rule):
    kind = Job
    from_states = frozenset(JOB_TERMINAL)

    def check(self, t: Transition) -> None:
        raise TransitionRejected(f"The job is {t.from_state}; a finished job cannot change")


class TaskTerminalIsFinal(Rule):
    kind = TaskRun
    from_states = frozenset(TASK_TERMINAL)

    def check(self, t: Transition) -> None:
        raise TransitionRejected(f"The task is {t.from_state}; a finished task cannot change")


class JobEdges(Rule):
    kind = Job

    def check(self, t: Transition) -> None:
        if t.to_state not in JOB_EDGES.get(t.from_state, frozenset()):
            raise TransitionRejected(f"A job cannot go from {t.from_state} to {t.to_state}")


class TaskEdges(Rule):
    kind = TaskRun

    def check(self, t: Transition) -> None:
        if t.to_state not in TASK_EDGES.get(t.from_state, frozenset()):
            raise TransitionRejected(f"A task cannot go from {t.from_state} to {t.to_state}")


class FencedResult(Rule):
    """A result from an attempt whose lease has moved on is refused. A worker stopping its
    own attempt (cancelled) carries the attempt's token too, and is held to it."""

    kind = TaskRun

    def governs(self, t: Transition) -> bool:
        if not isinstance(t.obj, TaskRun):
            return False
        if t.to_state in TASK_RESULTS:
            return t.from_state == TaskState.RUNNING
        return t.to_state == TaskState.CANCELLED and t.fencing_token is not None

    def check(self, t: Transition) -> None:
        assert isinstance(t.obj, TaskRun)  # noqa: S101 - governs() checked the kind
        if t.fencing_token is None:
            raise TransitionRejected("A task result must carry its fencing token")
        if t.from_state != TaskState.RUNNING:
            raise TransitionRejected(f"The attempt is over: the task is {t.from_state}")
        if t.fencing_token != t.obj.fencing_token:
            raise TransitionRejected(
                f"Stale fencing token {t.fencing_token}; the task is at {t.obj.fencing_token}"
            )


def failed_attempts(run: TaskRun) -> int:
    """Attempts that ended in failure so far: the lost ones do not count against retries."""
    return run.attempt - (run.lost_attempts or 0)


class BoundedRetries(Rule):
    """A retry needs an attempt left; a lost worker's task is re-queued a bounded number of
    times (its own budget, so a crash of the platform does not use up the task's retries)."""

    kind = TaskRun
    from_states = frozenset({TaskState.RUNNING, TaskState.RETRYING})
    to_states = frozenset({TaskState.QUEUED, TaskState.RETRYING})

    def check(self, t: Transition) -> None:
        assert isinstance(t.obj, TaskRun)  # noqa: S101 - governs() checked the kind
        if t.from_state == TaskState.RUNNING and t.to_state == TaskState.QUEUED:
            if (t.obj.lost_attempts or 0) >= MAX_LOST_ATTEMPTS:
                raise TransitionRejected(
                    f"The task was lost with its worker {MAX_LOST_ATTEMPTS} times"
                )
        elif failed_attempts(t.obj) >= t.obj.max_attempts:
            raise TransitionRejected(f"The task has used all {t.obj.max_attempts} attempt(s)")

    def effect(self, t: Transition) -> None:
        assert isinstance(t.obj, TaskRun)  # noqa: S101 - governs() checked the kind
        if t.from_state == TaskState.RUNNING and t.to_state == TaskState.QUEUED:
            t.obj.lost_attempts = (t.obj.lost_attempts or 0) + 1


class CacheHitOnly(Rule):
    """A task succeeds without running only by reusing a cached run's outputs."""

    kind = TaskRun
    from_states = frozenset({TaskState.PENDING})
    to_states = frozenset({TaskState.SUCCEEDED})

    def check(self, t: Transition) -> None:
        assert isinstance(t.obj, TaskRun)  # noqa: S101 - governs() checked the kind
        if t.obj.cached_from is None:
            raise TransitionRejected("A pending task succeeds only from the cache")


class QueueTask(Rule):
    """Each queueing starts a new attempt under a new fencing token, so a result from the
    previous holder of the task can be told apart and refused."""

    kind = TaskRun
    to_states = frozenset({TaskState.QUEUED})

    def effect(self, t: Transition) -> None:
        assert isinstance(t.obj, TaskRun)  # noqa: S101 - governs() checked the kind
        t.obj.attempt += 1
        t.obj.fencing_token += 1
        t.obj.queued_at = t.now
        t.obj.started_at = None
        t.obj.next_attempt_at = None
        t.obj.lease_owner = None
        t.obj.lease_expires_at = None


class StartTask(Rule):
    """A task runs only under a lease: a worker and the time it must renew it by."""

    kind = TaskRun
    to_states = frozenset({TaskState.RUNNING})

    def check(self, t: Transition) -> None:
        if t.lease is None:
            raise TransitionRejected("A task starts only under a worker's lease")

    def effect(self, t: Transition) -> None:
        assert isinstance(t.obj, TaskRun)  # noqa: S101 - governs() checked the kind
        assert t.lease is not None  # noqa: S101 - check() refused a change without one
        t.obj.started_at = t.now
        t.obj.lease_owner, t.obj.lease_expires_at = t.lease


class ReleaseLease(Rule):
    """Once an attempt is over, nobody holds the task."""

    kind = TaskRun
    to_states = frozenset({TaskState.RETRYING, *TASK_TERMINAL})

    def effect(self, t: Transition) -> None:
        assert isinstance(t.obj, TaskRun)  # noqa: S101 - governs() checked the kind
        t.obj.lease_owner = None
        t.obj.lease_expires_at = None


class StartJob(Rule):
    kind = Job
    to_states = frozenset({JobState.RUNNING})

    def effect(self, t: Transition) -> None:
        t.obj.started_at = t.now


class FinishJob(Rule):
    kind = Job
    to_states = frozenset(JOB_TERMINAL)

    def effect(self, t: Transition) -> None:
        t.obj.finished_at = t.now


class FinishTask(Rule):
    kind = TaskRun
    to_states = frozenset(TASK_TERMINAL)

    def effect(self, t: Transition) -> None:
        t.obj.finished_at = t.now


class RecordError(Rule):
    """A failure keeps its reason, for the job's history."""

    to_states = frozenset({JobState.FAILED, TaskState.FAILED, TaskState.RETRYING})

    def governs(self, t: Transition) -> bool:
        return t.to_state in (self.to_states or ()) and t.reason is not None

    def effect(self, t: Transition) -> None:
        t.obj.error = t.reason


# Order matters: refusals first, so no side effect happens for a refused change.
RULES: Sequence[Rule] = (
    JobTerminalIsFinal(),
    TaskTerminalIsFinal(),
    JobEdges(),
    TaskEdges(),
    FencedResult(),
    BoundedRetries(),
    CacheHitOnly(),
    StartTask(),
    QueueTask(),
    ReleaseLease(),
    StartJob(),
    FinishJob(),
    FinishTask(),
    RecordError(),
)


async def apply(
    session: AsyncSession,
    obj: Subject,
    to: JobState | TaskState | str,
    *,
    reason: str | None = None,
    fencing_token: int | None = None,
    now: datetime | None = None,
    lease: tuple[str, datetime] | None = None,
) -> None:
    """Move ``obj`` (a job or a task run) to state ``to`` through the rules, and write the
    status-changed event to the outbox in the same transaction. Raises
    :class:`TransitionRejected` (409) when a rule refuses; nothing is changed then."""
    t = Transition(
        session=session,
        obj=obj,
        from_state=str(obj.status),
        to_state=str(to),
        reason=reason,
        fencing_token=fencing_token,
        now=now or utcnow(),
        lease=lease,
    )
    governing = [rule for rule in RULES if rule.governs(t)]
    for rule in governing:
        rule.check(t)
    for rule in governing:
        rule.effect(t)
    obj.status = t.to_state
    _count_after_commit(session, obj, t)
    if isinstance(obj, Job):
        # In the job's trace (ADR 0031): a scheduler's transition is a child of the submission.
        attributes = {"armillary.job_id": str(obj.id), "armillary.to_status": t.to_state}
        with tracing.span(f"job {t.to_state}", parent=obj.traceparent, attributes=attributes):
            publish(
                session,
                JobStatusChanged.TYPE,
                JobStatusChanged(
                    job_id=obj.id,
                    project_id=obj.project_id,
                    workflow_id=obj.workflow_id,
                    from_status=t.from_state,
                    to_status=t.to_state,
                    reason=reason,
                    occurred_at=t.now,
                ),
            )
    else:
        publish(
            session,
            TaskRunStatusChanged.TYPE,
            TaskRunStatusChanged(
                task_run_id=obj.id,
                job_id=obj.job_id,
                name=obj.name,
                from_status=t.from_state,
                to_status=t.to_state,
                attempt=obj.attempt,
                reason=reason,
                occurred_at=t.now,
            ),
        )


def _count_after_commit(session: AsyncSession, obj: Subject, t: Transition) -> None:
    """Finished jobs and tasks, counted once their change is committed."""
    terminal = JOB_TERMINAL if isinstance(obj, Job) else TASK_TERMINAL
    if t.to_state not in terminal:
        return
    started = obj.started_at
    seconds = (t.now - started).total_seconds() if started is not None else None
    status = t.to_state
    task_type = obj.type if isinstance(obj, TaskRun) else None

    async def record() -> None:
        if task_type is None:
            metrics.JOBS_FINISHED.labels(status).inc()
            if seconds is not None:
                metrics.JOB_DURATION.labels(status).observe(seconds)
        else:
            metrics.TASKS_FINISHED.labels(task_type, status).inc()
            if seconds is not None:
                metrics.TASK_DURATION.labels(task_type, status).observe(seconds)

    after_commit(session, record)
