"""The engine's gauges as the scheduler sees them in the database: queue depth and age,
running task runs, and workers' heartbeats.

A worker is known by the leases it renews (every heartbeat sets ``lease_expires_at`` to
``now + lease_seconds``), so its last heartbeat is its latest lease expiry less the lease
length. A worker whose lease expired and was reclaimed (an attempt closed as ``lost``) keeps
its series for :data:`LOST_WORKER_WINDOW`, its age growing from the last heartbeat it could
have sent: that is what the lost-heartbeat alert reads. A worker that simply has nothing to
run holds no lease and has no series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from armillary.kit.db import Database

from .. import metrics
from ..jobs.models import TaskAttempt, TaskRun, TaskState

LOST_WORKER_WINDOW = timedelta(minutes=15)


@dataclass
class QueueGauges:
    queued: int = 0
    running: int = 0
    queue_age_seconds: float = 0.0
    heartbeat_age_seconds: dict[str, float] = field(default_factory=dict)
    live_workers: int = 0


async def measure(db: Database, now: datetime, lease_seconds: float) -> QueueGauges:
    """Read the gauges from the database and set them."""
    found = await read(db, now, lease_seconds)
    _set(found)
    return found


async def read(db: Database, now: datetime, lease_seconds: float) -> QueueGauges:
    """The gauges as the database holds them at ``now`` (nothing is set)."""
    lease = timedelta(seconds=lease_seconds)
    async with db.read_connection() as connection:
        counts = dict(
            (
                await connection.execute(
                    select(TaskRun.status, func.count())
                    .where(TaskRun.status.in_([TaskState.QUEUED, TaskState.RUNNING]))
                    .group_by(TaskRun.status)
                )
            ).all()
        )
        oldest = await connection.scalar(
            select(func.min(TaskRun.queued_at)).where(TaskRun.status == TaskState.QUEUED)
        )
        holding = (
            await connection.execute(
                select(TaskRun.lease_owner, func.max(TaskRun.lease_expires_at))
                .where(TaskRun.status == TaskState.RUNNING, TaskRun.lease_owner.is_not(None))
                .group_by(TaskRun.lease_owner)
            )
        ).all()
        lost = (
            await connection.execute(
                select(TaskAttempt.worker_id, func.max(TaskAttempt.finished_at))
                .where(
                    TaskAttempt.outcome == "lost",
                    TaskAttempt.worker_id.is_not(None),
                    TaskAttempt.finished_at >= now - LOST_WORKER_WINDOW,
                )
                .group_by(TaskAttempt.worker_id)
            )
        ).all()
    found = QueueGauges(
        queued=counts.get(TaskState.QUEUED, 0),
        running=counts.get(TaskState.RUNNING, 0),
        queue_age_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
    )
    # Reclaimed when its lease had expired: its last heartbeat was a lease length before.
    for worker, reclaimed_at in lost:
        if worker is None or reclaimed_at is None:
            continue
        found.heartbeat_age_seconds[worker] = (now - (reclaimed_at - lease)).total_seconds()
    for worker, expires_at in holding:
        if worker is None or expires_at is None:
            continue
        found.heartbeat_age_seconds[worker] = max(0.0, (now - (expires_at - lease)).total_seconds())
        found.live_workers += expires_at > now
    return found


_known_workers: set[str] = set()


def _set(found: QueueGauges) -> None:
    metrics.QUEUE_DEPTH.set(found.queued)
    metrics.RUNNING.set(found.running)
    metrics.QUEUE_AGE.set(found.queue_age_seconds)
    metrics.WORKERS_LIVE.set(found.live_workers)
    for worker, age in found.heartbeat_age_seconds.items():
        metrics.WORKER_HEARTBEAT_AGE.labels(worker).set(age)
    for gone in _known_workers - set(found.heartbeat_age_seconds):
        metrics.WORKER_HEARTBEAT_AGE.remove(gone)
    _known_workers.clear()
    _known_workers.update(found.heartbeat_age_seconds)
