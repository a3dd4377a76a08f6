"""A worker process: takes queued tasks under a lease, runs each attempt on its executor, keeps
the leases alive by heartbeat, streams logs to the object store and reports results.

The worker never decides that a task is lost: if it stops heartbeating, the scheduler notices
the expired lease and re-queues the task under a new fencing token, and whatever this worker
reports afterwards is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from armillary.contracts.identity import JOB_TOKEN_MAX_TTL_SECONDS, JobTokenRequest
from armillary.kit import tracing
from armillary.kit.database_unavailable import unavailable_reason
from armillary.kit.db import Database, utcnow
from armillary.kit.errors import ServiceUnavailable
from armillary.kit.storage import ObjectStore
from armillary.kit.storage.errors import InvalidObjectKey
from armillary.kit.storage.keys import attempt_artifact_key, validate_segment

from .. import metrics
from ..code.zipcheck import extract_bundle
from ..jobs.models import TaskState
from ..jobs.transitions import TransitionRejected
from ..logs.store import LogWriter
from ..scheduling import dispatch, signals
from ..settings import WorkflowSettings
from ..specs.schema import SANDBOX
from . import claims, in_process
from .claims import Claim, LateResult
from .protocol import AttemptResult, AttemptSpec, Executor, Outcome, ResourceLimits

log = structlog.get_logger(__name__)

# What identity mints an attempt's job token from (a JobTokenRequest) -> (token, expires at).
JobTokenIssuer = Callable[[JobTokenRequest], Awaitable[tuple[str, datetime]]]
RETRYABLE = (StaleDataError, TransitionRejected, DBAPIError)
# How long a finished attempt's result is retried while the database is away.
REPORT_PATIENCE_SECONDS = 120.0


def _span_attributes(claimed: Claim) -> dict[str, str | int]:
    return {
        "armillary.job_id": str(claimed.job_id),
        "armillary.task": claimed.task,
        "armillary.task_type": claimed.task_type,
        "armillary.attempt": claimed.attempt,
    }


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class _Running:
    claim: Claim
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    superseded: bool = False


class Worker:
    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        executor: Executor,
        settings: WorkflowSettings,
        *,
        issue_token: JobTokenIssuer,
        api_url: str,
        work_root: Path,
        concurrency: int | None = None,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.executor = executor
        self.settings = settings
        self.issue_token = issue_token
        self.api_url = api_url
        self.work_root = work_root
        self.concurrency = concurrency or settings.worker_concurrency
        self.name = name or worker_name()
        dsn = signals.asyncpg_dsn(db.direct_url)
        poll = settings.sqlite_poll_seconds if dsn is None else settings.poll_seconds
        self.listener = signals.Listener(
            dsn,
            signals.TASKS_QUEUED,
            poll_seconds=poll,
            password_ref=db.password_ref,
            ssl=db.ssl,
        )
        self.running: dict[uuid.UUID, _Running] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()

    async def run(self) -> None:
        """Until :meth:`stop`: claim, run, heartbeat. Running attempts finish before it returns."""
        await self.executor.start()
        await self.listener.start_when_possible(self._stopping)
        heartbeat = asyncio.create_task(self._heartbeat())
        log.info("worker.started", worker=self.name, concurrency=self.concurrency)
        try:
            while not self._stopping.is_set():
                free = self.concurrency - len(self.running)
                taken = await self._claim(free) if free > 0 else 0
                if taken:
                    self.listener.busy()
                    continue
                if free > 0:
                    await self.listener.wait()
                else:
                    self._slot_freed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._slot_freed.wait(), self.settings.poll_seconds)
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self.listener.close()
            await self.executor.close()
            log.info("worker.stopped", worker=self.name)

    def stop(self) -> None:
        self._stopping.set()
        self.listener.wake()
        self._slot_freed.set()

    async def _claim(self, free: int) -> int:
        try:
            async with self.db.unit_of_work() as session:
                taken = await claims.claim(
                    session, self.name, free, utcnow(), self.settings.lease_seconds
                )
                if taken:
                    await signals.notify(session, signals.SCHEDULER_WANTED)
        except (*RETRYABLE, OSError) as exc:
            if unavailable_reason(exc) == "unreachable" or isinstance(exc, OSError):
                # The database is away (restarting): wait a poll interval, not a busy loop.
                log.warning("worker.database_unreachable", error=type(exc).__name__)
                await asyncio.sleep(self.settings.poll_seconds)
                return 0
            # Another worker took the same rows first (SQLite) or the database is busy.
            log.debug("worker.claim_conflict", error=type(exc).__name__)
            await asyncio.sleep(0.01)
            return 1
        self._start(taken)
        return len(taken)

    def _start(self, taken: list[Claim]) -> None:
        for claimed in taken:
            metrics.TASK_ATTEMPTS.labels(claimed.task_type).inc()
            self.running[claimed.run_id] = _Running(claimed)
            task = asyncio.create_task(self._attempt(self.running[claimed.run_id]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _heartbeat(self) -> None:
        """Renew leases every heartbeat; look for cancellations more often than that."""
        interval = min(self.settings.heartbeat_seconds, 0.5)
        last_renewal = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            if not self.running:
                continue
            try:
                if loop.time() - last_renewal >= self.settings.heartbeat_seconds:
                    held = {i: r.claim.fencing_token for i, r in self.running.items()}
                    async with self.db.unit_of_work() as session:
                        lost = await claims.renew(
                            session, self.name, held, utcnow(), self.settings.lease_seconds
                        )
                    last_renewal = loop.time()
                    for run_id in lost:
                        if run_id in self.running:
                            self.running[run_id].superseded = True
                            self.running[run_id].cancel.set()
                # Looking for cancellations is a read: no transaction for it.
                jobs = {r.claim.job_id for r in self.running.values()}
                async with self.db.read_only() as session:
                    cancelling = await claims.cancelling_jobs(session, jobs)
                for running in self.running.values():
                    if running.claim.job_id in cancelling:
                        running.cancel.set()
            except (OSError, DBAPIError) as exc:
                log.warning("worker.heartbeat_failed", worker=self.name, error=type(exc).__name__)

    async def _attempt(self, running: _Running) -> None:
        claimed = running.claim
        writer = LogWriter(
            self.store,
            claimed.project_id,
            claimed.job_id,
            claimed.task,
            claimed.attempt,
            flush_seconds=self.settings.log_flush_seconds,
            flush_bytes=self.settings.log_flush_bytes,
            max_bytes=self.settings.log_max_bytes,
        )
        result: AttemptResult | None = None
        following: list[Claim] = []
        try:
            with tracing.span(
                f"task {claimed.task_type}",
                parent=claimed.traceparent,
                attributes=_span_attributes(claimed),
            ):
                result = await self._execute(claimed, writer, running.cancel)
                await writer.close()
                artifacts = await self._upload_artifacts(claimed, result)
                if running.superseded:
                    log.info(
                        "worker.attempt_superseded", task=claimed.task, job=str(claimed.job_id)
                    )
                    return
                following = await self._report(claimed, result, artifacts)
        except Exception:
            log.exception("worker.attempt_failed", task=claimed.task, job=str(claimed.job_id))
        finally:
            self.running.pop(claimed.run_id, None)
            self._start(following)
            self._slot_freed.set()
            if result is not None:
                # Off the event loop, and after the next attempt has started.
                await asyncio.to_thread(result.cleanup)

    async def _execute(
        self, claimed: Claim, writer: LogWriter, cancel: asyncio.Event
    ) -> AttemptResult:
        workdir = self.work_root / "attempts" / uuid.uuid4().hex
        if in_process.allowed(claimed.isolation, claimed.task_type):
            return await self._execute_in_process(claimed, workdir, writer, cancel)
        if claimed.isolation != SANDBOX:
            # Checked again here: a spec stored before a rule changed gets the sandbox.
            log.warning("worker.in_process_refused", task=claimed.task, type=claimed.task_type)
            await writer.write(
                f"[armillary] isolation {claimed.isolation!r} is not allowed for type "
                f"{claimed.task_type!r}: running in a sandbox\n".encode()
            )
        try:
            token = await self._token_when_possible(claimed, cancel)
            bundle_dir = await self._bundle_dir(claimed)
        except Exception as exc:
            # Nothing ran: the task fails with why (not retried by the executor's limits).
            await writer.write(f"[armillary] could not prepare the task: {exc}\n".encode())
            return AttemptResult(
                Outcome.FAILED, None, f"could not prepare the task: {exc}", None, {}, workdir
            )
        memory = self.settings.task_memory_mb * 1024 * 1024
        spec = self._attempt_spec(
            claimed,
            ResourceLimits(
                memory_bytes=memory,
                cpu_seconds=self.settings.task_cpu_seconds,
                wall_seconds=claimed.timeout_seconds,
            ),
            job_token=token,
            bundle_dir=str(bundle_dir) if bundle_dir else None,
        )
        # The sandboxed child's span, recorded here (a sandbox has no route to a collector);
        # the child gets its traceparent in the spec and sends it on its API calls.
        with tracing.span("task child", attributes=_span_attributes(claimed)):
            spec = replace(spec, traceparent=tracing.traceparent())
            return await self.executor.run(spec, on_log=writer.write, cancel=cancel)

    async def _execute_in_process(
        self, claimed: Claim, workdir: Path, writer: LogWriter, cancel: asyncio.Event
    ) -> AttemptResult:
        """A trusted built-in type in this process (ADR 0047): no sandbox, and no job token,
        as it calls no API; lease, heartbeat, log and report are the same as for the rest."""
        metrics.TASK_ATTEMPTS_IN_PROCESS.labels(claimed.task_type).inc()
        spec = self._attempt_spec(
            claimed, ResourceLimits(wall_seconds=claimed.timeout_seconds), job_token=""
        )
        with tracing.span("task in_process", attributes=_span_attributes(claimed)):
            spec = replace(spec, traceparent=tracing.traceparent())
            return await in_process.run(spec, workdir, on_log=writer.write, cancel=cancel)

    def _attempt_spec(
        self,
        claimed: Claim,
        limits: ResourceLimits,
        *,
        job_token: str,
        bundle_dir: str | None = None,
    ) -> AttemptSpec:
        return AttemptSpec(
            attempt_id=claimed.attempt_id.hex,
            job_id=str(claimed.job_id),
            project_id=str(claimed.project_id),
            task=claimed.task,
            task_type=claimed.task_type,
            params=claimed.params,
            inputs=claimed.inputs,
            declared_outputs=claimed.declared_outputs,
            limits=limits,
            api_url=self.api_url,
            job_token=job_token,
            bundle_dir=bundle_dir,
        )

    async def _token_when_possible(self, claimed: Claim, cancel: asyncio.Event) -> str:
        """:meth:`_token`, retried while identity (or its database) is away: an outage is no
        reason to fail a task that has not started. The heartbeat keeps the lease meanwhile;
        a refusal (not a member, the attempt ended) is final."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPORT_PATIENCE_SECONDS
        delay = 0.2
        while True:
            try:
                return await self._token(claimed)
            except ServiceUnavailable as exc:
                if loop.time() >= deadline or cancel.is_set():
                    raise
                log.warning("worker.token_retry", task=claimed.task, error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(cancel.wait(), delay)
                delay = min(delay * 2, 5.0)

    async def _token(self, claimed: Claim) -> str:
        """A token of this attempt's own: identity stops honouring it when the attempt ends
        or loses its lease, and it holds only what the task type may do."""
        if claimed.started_by is None:
            raise RuntimeError("the job has no user to act for")
        # Long enough for the attempt's own time limit; revocation ends it sooner.
        ttl = max(self.settings.job_token_ttl_seconds, (claimed.timeout_seconds or 0) + 60)
        token, _expires = await self.issue_token(
            JobTokenRequest(
                user_id=claimed.started_by,
                project_id=claimed.project_id,
                job_id=claimed.job_id,
                ttl_seconds=min(ttl, JOB_TOKEN_MAX_TTL_SECONDS),
                task=claimed.task,
                attempt=claimed.attempt,
                task_type=claimed.task_type,
                datasets_read=sorted(claimed.datasets_read),
                datasets_write=sorted(claimed.datasets_write),
            )
        )
        return token

    async def _bundle_dir(self, claimed: Claim) -> Path | None:
        if claimed.bundle is None:
            if claimed.task_type == "python" and "bundle" in claimed.params:
                raise LookupError(f"code bundle {claimed.params['bundle']!r} not found")
            return None
        bundles = self.work_root / "bundles"
        # Searchable, not listable: a task reaches its own bundle, not the names of others'.
        bundles.mkdir(mode=0o711, exist_ok=True)
        bundles.chmod(0o711)
        target = bundles / claimed.bundle.sha256
        if target.is_dir():
            return target
        data = await self.store.get_bytes(claimed.bundle.object_key)
        staging = bundles / f".{claimed.bundle.sha256}.{uuid.uuid4().hex}"
        await asyncio.to_thread(extract_bundle, data, claimed.bundle.kind, staging)
        for path in [staging, *staging.rglob("*")]:
            # Readable, not writable, by the sandbox user: bundles are shared between attempts.
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            staging.rename(target)
        except OSError:  # another attempt extracted it first
            shutil.rmtree(staging, ignore_errors=True)
        return target

    async def _upload_artifacts(self, claimed: Claim, result: AttemptResult) -> dict[str, str]:
        if result.outcome is not Outcome.SUCCEEDED:
            return {}
        uploaded: dict[str, str] = {}
        for name, path in sorted(result.artifacts.items()):
            flat = name.replace("/", "__")
            try:
                validate_segment(flat, what="artifact name")
                # Per attempt: an attempt that lost its lease cannot overwrite these.
                key = attempt_artifact_key(
                    claimed.project_id, claimed.job_id, claimed.task, claimed.attempt, flat
                )
            except InvalidObjectKey:
                log.warning("worker.artifact_skipped", task=claimed.task)
                continue
            await self.store.put_file(key, path)
            uploaded[name] = key
        return uploaded

    async def _report(
        self, claimed: Claim, result: AttemptResult, artifacts: dict[str, str]
    ) -> list[Claim]:
        """Record the result; returns the tasks this worker took to run next (see
        :meth:`_continue`)."""
        loop = asyncio.get_running_loop()
        # A result is worth waiting for: through a database restart, as long as the scheduler
        # could not have given the task to another worker meanwhile (fencing decides then).
        deadline = loop.time() + max(REPORT_PATIENCE_SECONDS, 2 * self.settings.lease_seconds)
        delay = 0.05
        while True:
            try:
                async with self.db.unit_of_work() as session:
                    now = utcnow()
                    state = await claims.report(session, claimed, result, now, artifacts=artifacts)
                    following = await self._continue(session, claimed, state)
                    if await self._scheduler_needed(session, claimed, state, following):
                        await signals.notify(session, signals.SCHEDULER_WANTED)
                report = result.report or (result.outputs or {}).get("report")
                metrics.record_pipeline(
                    claimed.task_type,
                    claimed.inputs,
                    result.outputs,
                    report if isinstance(report, dict) else None,
                )
                log.info(
                    "worker.attempt_reported",
                    task=claimed.task,
                    job=str(claimed.job_id),
                    attempt=claimed.attempt,
                    outcome=str(result.outcome),
                    state=state,
                )
                return following
            except LateResult as late:
                log.warning(
                    "worker.late_result_refused",
                    task=claimed.task,
                    job=str(claimed.job_id),
                    reason=str(late),
                )
                return []
            except (StaleDataError, DBAPIError, OSError) as exc:
                if loop.time() >= deadline:
                    break
                log.info("worker.report_retry", task=claimed.task, error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        log.error("worker.report_failed", task=claimed.task, job=str(claimed.job_id))
        return []

    async def _scheduler_needed(
        self, session: AsyncSession, claimed: Claim, state: str, following: list[Claim]
    ) -> bool:
        """Whether this result leaves work only the scheduler does: a failure or a retry to
        handle, a fan-in to promote, or a job to finish (nothing of it is queued or running
        any more). A success the worker continued from needs nobody: on a busy engine this
        spares the scheduler a pass per task. Its poll interval is the safety net."""
        if state != TaskState.SUCCEEDED:
            return True
        if following:
            return False
        return await claims.active_runs(session, claimed.job_id) == 0

    async def _continue(self, session: AsyncSession, claimed: Claim, state: str) -> list[Claim]:
        """In the transaction that records a success: queue the job's tasks it made ready and
        take one of them into the slot this attempt frees (as Airflow's task runner schedules
        its downstream tasks), sparing the round trips through the scheduler on a chain. The
        scheduler does the same on its own; whoever locks a task first queues it. A conflict
        here only skips the shortcut."""
        if state != TaskState.SUCCEEDED or self._stopping.is_set():
            return []
        try:
            async with session.begin_nested():
                dependents = await dispatch.narrow_dependents(session, claimed.job_id, claimed.task)
                if not dependents:
                    return []
                # Times read here, not at the report's start: the report may have waited for
                # a sibling's transaction, whose success (stamped before it committed) made
                # these tasks ready. A task must not start before what it needs finished.
                promoted = await dispatch.promote_ready(
                    session, utcnow(), job_id=claimed.job_id, run_ids=dependents
                )
                if not promoted.queued:
                    return []
                taken = await claims.claim(
                    session,
                    self.name,
                    1,
                    utcnow(),
                    self.settings.lease_seconds,
                    job_id=claimed.job_id,
                )
                if promoted.queued > len(taken):
                    await signals.notify(session, signals.TASKS_QUEUED)
                return taken
        except RETRYABLE as exc:
            log.debug("worker.continue_conflict", error=type(exc).__name__)
            return []
