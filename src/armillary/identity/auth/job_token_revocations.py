"""When a job token stops working: when its job ends, and (for a token minted for one attempt)
when that attempt ends or loses its lease, so a task left running by a lost worker, or anyone
holding a leaked token, can no longer act through the API.

The workflow service says so in its status events; identity keeps the answer in its own table,
which every check of a job token (``deps.current_caller_uncached``) reads.
"""

from __future__ import annotations

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.events import JobStatusChanged, TaskRunStatusChanged
from armillary.kit.authz import TokenScope
from armillary.kit.events import Delivery

from .models import JobTokenRevocation

# The workflow service's job states after which nothing of the job runs.
JOB_ENDED = frozenset({"succeeded", "failed", "cancelled"})
_RUNNING = "running"
# Leaving "running" for "queued" starts a new attempt (its number already counted in the
# event), so the attempt that ended is the one before.
_REQUEUED = "queued"


async def is_revoked(session: AsyncSession, scope: TokenScope) -> bool:
    """Whether the job of ``scope`` has ended, or its attempt has."""
    this_job = JobTokenRevocation.job_id == scope.job_id
    whole_job = JobTokenRevocation.task.is_(None)
    if scope.task is None or scope.attempt is None:
        condition = this_job & whole_job
    else:
        this_attempt = (JobTokenRevocation.task == scope.task) & (
            JobTokenRevocation.through_attempt >= scope.attempt
        )
        condition = this_job & or_(whole_job, this_attempt)
    return bool(await session.scalar(select(exists().where(condition))))


async def job_status_changed(session: AsyncSession, delivery: Delivery) -> None:
    event = JobStatusChanged.model_validate(delivery.payload)
    if event.to_status in JOB_ENDED:
        session.add(JobTokenRevocation(job_id=event.job_id, reason=f"job {event.to_status}"))


async def task_run_status_changed(session: AsyncSession, delivery: Delivery) -> None:
    event = TaskRunStatusChanged.model_validate(delivery.payload)
    if event.from_status != _RUNNING or event.to_status == _RUNNING:
        return
    ended = event.attempt - 1 if event.to_status == _REQUEUED else event.attempt
    if ended < 1:
        return
    session.add(
        JobTokenRevocation(
            job_id=event.job_id,
            task=event.name,
            through_attempt=ended,
            reason=f"attempt {event.to_status}"[:64],
        )
    )


def wants_job_event(payload: dict[str, object]) -> bool:
    return payload.get("to_status") in JOB_ENDED


def wants_task_event(payload: dict[str, object]) -> bool:
    return payload.get("from_status") == _RUNNING
