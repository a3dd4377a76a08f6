"""The scheduler loop: while it holds leadership, run the dispatch steps whenever something
changed (a notification) or the poll interval passed; fire cron schedules; sweep old jobs.

State lives only in the database, so a restarted scheduler (or a standby taking over) carries
on where the last one stopped: nothing is lost, and since workers hold the leases and results
are fenced, no task runs twice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import asyncpg
import structlog
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from armillary.kit import audit
from armillary.kit.db import Database, utcnow
from armillary.kit.storage import ObjectStore

from ..components import SERVICE
from ..definitions.models import Workflow
from ..jobs.models import Trigger
from ..jobs.service import create_job
from ..jobs.transitions import TransitionRejected
from ..settings import WorkflowSettings
from . import dispatch, gauges, retention, signals
from .cron import due_times
from .leader import Leadership

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
Step = Callable[[AsyncSession, datetime], Awaitable[dispatch.StepResult]]

# Promotion first: it is what the latency from "ready" to "started" waits on.
STEPS: tuple[Step, ...] = (
    dispatch.promote_ready,
    dispatch.start_queued_jobs,
    dispatch.requeue_due_retries,
    dispatch.reclaim_lost,
    dispatch.finish_jobs,
)
# Conflicts another writer can cause; the step is simply tried again on the next tick.
GAUGE_INTERVAL_SECONDS = 5.0
CRON_INTERVAL_SECONDS = 1.0
RETRYABLE = (StaleDataError, TransitionRejected, OperationalError, DBAPIError)
# The database restarting, shutting down or not up yet, through SQLAlchemy or raw asyncpg
# (the leader lock and LISTEN connections are asyncpg's own).
DATABASE_AWAY = (OSError, DBAPIError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Scheduler:
    def __init__(
        self,
        db: Database,
        settings: WorkflowSettings,
        *,
        store: ObjectStore | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.db = db
        self.settings = settings
        self.store = store
        self.clock = clock
        dsn = signals.asyncpg_dsn(db.direct_url)
        self.leadership = Leadership(dsn, password_ref=db.password_ref, ssl=db.ssl)
        poll = settings.sqlite_poll_seconds if dsn is None else settings.poll_seconds
        self.listener = signals.Listener(
            dsn,
            signals.SCHEDULER_WANTED,
            poll_seconds=poll,
            password_ref=db.password_ref,
            ssl=db.ssl,
        )
        self._next_sweep = 0.0
        self._next_gauges = 0.0
        self._next_cron = 0.0
        self._stopping = asyncio.Event()

    async def tick(self, now: datetime | None = None) -> bool:
        """Run every step once. True when one of them has more to do right away."""
        now = now or self.clock()
        more = False
        queued = 0
        for step in STEPS:
            try:
                async with self.db.unit_of_work() as session:
                    result = await step(session, now)
                    if result.queued:
                        await signals.notify(session, signals.TASKS_QUEUED)
            except RETRYABLE as exc:
                log.info("scheduler.step_conflict", step=step.__name__, error=type(exc).__name__)
                more = True
                continue
            queued += result.queued
            # A step that changed something may have made work for the others (a finished
            # task frees its dependents; a started job has tasks to queue).
            more = more or result.more or (result.changed > 0 and step is not STEPS[-1])
        return more

    async def fire_schedules(self, now: datetime | None = None) -> int:
        """Start the jobs of cron schedules that are due. A schedule seen for the first time
        starts counting from now. Jobs carry the cron time in their idempotency key, so a time
        is never run twice, even by two schedulers racing after a failover."""
        now = now or self.clock()
        fired = 0
        async with self.db.unit_of_work() as session:
            workflows = (
                await session.scalars(
                    select(Workflow)
                    .where(Workflow.schedule_cron.is_not(None), Workflow.deleted_at.is_(None))
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for workflow in workflows:
                fired += await self._fire(session, workflow, now)
            if fired:
                await signals.notify(session, signals.SCHEDULER_WANTED)
        if fired:
            self.listener.wake()
        return fired

    async def _fire(self, session: AsyncSession, workflow: Workflow, now: datetime) -> int:
        last = workflow.schedule_last_fired_at
        if last is None:
            workflow.schedule_last_fired_at = now
            return 0
        assert workflow.schedule_cron is not None  # noqa: S101 - the query selected them
        times, newest = due_times(
            workflow.schedule_cron,
            last,
            now,
            catchup=workflow.schedule_catchup or "skip",
            max_catchup_runs=workflow.schedule_max_catchup_runs or 1,
        )
        workflow.schedule_last_fired_at = newest
        for moment in times:
            job, created = await create_job(
                session,
                workflow,
                {},
                trigger=Trigger.SCHEDULE,
                idempotency_key=f"schedule:{moment.isoformat()}",
                created_by=workflow.created_by,
            )
            if created:
                audit.record(
                    session,
                    action="jobs.create",
                    resource_type="job",
                    resource_id=job.id,
                    actor_label="scheduler",
                    details={
                        "workflow": workflow.name,
                        "version": job.version_number,
                        "trigger": "schedule",
                        "scheduled_for": moment.isoformat(),
                    },
                    service=SERVICE,
                )
        return len(times)

    async def measure_queue(self, now: datetime | None = None) -> tuple[int, int]:
        """Set the engine's gauges (queue depth and age, running, workers' heartbeats);
        returns (queued, running)."""
        found = await gauges.measure(self.db, now or self.clock(), self.settings.lease_seconds)
        return found.queued, found.running

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete jobs (with their logs and artifacts) finished before the retention period."""
        if self.settings.retention_days <= 0:
            return 0
        cutoff = (now or self.clock()) - timedelta(days=self.settings.retention_days)
        return await retention.delete_finished_before(self.db, self.store, cutoff)

    async def run(self) -> None:
        """Until :meth:`stop`: lead (or wait to), and tick on every wake-up. A database that
        is away (restarting, shutting down, not up yet) is waited for, never a reason to exit."""
        await self.listener.start_when_possible(self._stopping)
        leading = False
        try:
            while not self._stopping.is_set():
                try:
                    leader = await self.leadership.acquire()
                except DATABASE_AWAY as exc:
                    log.warning("scheduler.leadership_unavailable", error=type(exc).__name__)
                    leader = False
                if leader != leading:
                    # An operator running a standby sees which process leads, and when.
                    log.info("scheduler.leading" if leader else "scheduler.standing_by")
                    leading = leader
                if not leader:
                    await self._sleep(self.settings.poll_seconds)
                    continue
                try:
                    more = await self._cycle()
                except DATABASE_AWAY as exc:
                    log.warning("scheduler.tick_failed", error=type(exc).__name__)
                    await self._sleep(self.settings.poll_seconds)
                    continue
                if more:
                    self.listener.busy()
                else:
                    await self.listener.wait()
        finally:
            await self.listener.close()
            await self.leadership.release()

    async def _cycle(self) -> bool:
        more = await self.tick()
        # Cron has minute resolution: a busy engine's many wake-ups need not lock the
        # scheduled workflows each time.
        if time.monotonic() >= self._next_cron:
            self._next_cron = time.monotonic() + CRON_INTERVAL_SECONDS
            await self.fire_schedules()
        if time.monotonic() >= self._next_gauges:
            self._next_gauges = time.monotonic() + GAUGE_INTERVAL_SECONDS
            await self.measure_queue()
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.settings.retention_sweep_seconds
            await self.sweep()
        return more

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def stop(self) -> None:
        self._stopping.set()
        self.listener.wake()
