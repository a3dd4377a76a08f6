"""Event consumers that turn job and task events into deliveries, and the deadline check.

Each handler runs in the bus's unit of work for that event, which also records the event as
handled; the deliveries it queues commit with it and are sent by the delivery loop after.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.events import JobStatusChanged, QualityGateFailed, TaskRunStatusChanged
from armillary.kit.events import Delivery, EventBus

from ..jobs.models import JobState, TaskState
from . import repository as repo
from . import rules
from .models import AlertRule, RuleKind
from .senders import Alert
from .service import enqueue

if TYPE_CHECKING:
    from .delivery import Alerts

CONSUMER = "workflows.alerts"


async def _alert_workflow_rules(
    alerts: Alerts | None,
    session: AsyncSession,
    kind: RuleKind,
    project_id: uuid.UUID,
    workflow_id: uuid.UUID,
    build: Callable[[AlertRule, str], Callable[[str], Alert]],
    *,
    subject: uuid.UUID,
    job_id: uuid.UUID,
    task_run_id: uuid.UUID | None = None,
) -> int:
    """Queue the alert ``build(rule, workflow)`` for each of the project's ``kind`` rules that
    applies to the workflow; returns how many deliveries were queued."""
    candidates = await repo.active_rules(session, project_id, kind)
    if not candidates:
        return 0
    workflow = await repo.workflow_name(session, workflow_id) or str(workflow_id)
    queued = 0
    for rule in candidates:
        if not rules.applies(rule, workflow=workflow):
            continue
        queued += await enqueue(
            session,
            rule,
            build(rule, workflow),
            event=kind,
            subject=subject,
            job_id=job_id,
            task_run_id=task_run_id,
            notify=alerts.notify if alerts else None,
        )
    return queued


async def on_job_status(alerts: Alerts | None, session: AsyncSession, delivery: Delivery) -> int:
    event = JobStatusChanged.model_validate(delivery.payload)
    if event.to_status != JobState.FAILED:
        return 0
    return await _alert_workflow_rules(
        alerts,
        session,
        RuleKind.JOB_FAILED,
        event.project_id,
        event.workflow_id,
        lambda rule, workflow: partial(
            rules.job_failed,
            rule,
            job_id=event.job_id,
            workflow=workflow,
            reason=event.reason,
            occurred_at=event.occurred_at,
        ),
        subject=event.job_id,
        job_id=event.job_id,
    )


async def on_quality_gate(alerts: Alerts | None, session: AsyncSession, delivery: Delivery) -> int:
    event = QualityGateFailed.model_validate(delivery.payload)
    return await _alert_workflow_rules(
        alerts,
        session,
        RuleKind.QUALITY_GATE_FAILED,
        event.project_id,
        event.workflow_id,
        lambda rule, workflow: partial(
            rules.quality_gate_failed,
            rule,
            job_id=event.job_id,
            workflow=workflow,
            task=event.task,
            task_run_id=event.task_run_id,
            failed_checks=event.failed_checks,
            score=event.score,
            occurred_at=event.occurred_at,
        ),
        subject=event.task_run_id,
        job_id=event.job_id,
        task_run_id=event.task_run_id,
    )


async def on_task_run_status(
    alerts: Alerts | None, session: AsyncSession, delivery: Delivery, *, history: int = 20
) -> int:
    event = TaskRunStatusChanged.model_validate(delivery.payload)
    if event.to_status != TaskState.SUCCEEDED:
        return 0
    found = await repo.task_run_context(session, event.task_run_id)
    if found is None:
        return 0
    run, job, workflow = found
    if run.started_at is None or run.finished_at is None or run.cached_from is not None:
        return 0  # a cache hit did not run: nothing to time
    candidates = [
        r
        for r in await repo.active_rules(session, job.project_id, RuleKind.TASK_DURATION_P95)
        if rules.applies(r, workflow=workflow, task=run.name)
    ]
    if not candidates:
        return 0
    seconds = (run.finished_at - run.started_at).total_seconds()
    past = await repo.recent_durations(
        session, job.workflow_id, run.name, before=run.finished_at, exclude=run.id, limit=history
    )
    queued = 0
    for rule in candidates:
        factor, min_samples = rule.factor or 2.0, rule.min_samples or 5
        if not rules.too_slow(seconds, past, factor=factor, min_samples=min_samples):
            continue
        queued += await enqueue(
            session,
            rule,
            partial(
                rules.task_too_slow,
                rule,
                job_id=job.id,
                workflow=workflow,
                task=run.name,
                task_run_id=run.id,
                seconds=seconds,
                p95_seconds=rules.p95(past),
                samples=len(past),
                occurred_at=event.occurred_at,
            ),
            event=RuleKind.TASK_DURATION_P95,
            subject=run.id,
            job_id=job.id,
            task_run_id=run.id,
            notify=alerts.notify if alerts else None,
        )
    return queued


async def check_deadlines(
    session: AsyncSession,
    now: datetime,
    *,
    lookback: timedelta = timedelta(hours=24),
    alerts: Alerts | None = None,
) -> int:
    """Queue an alert for each job that has not succeeded ``max_minutes`` after it was created
    (jobs created more than ``lookback`` before their deadline are left alone). Once per job
    and rule: run it as often as you like, from as many processes as you like."""
    queued = 0
    for rule in await repo.active_rules(session, None, RuleKind.JOB_DEADLINE):
        assert rule.max_minutes is not None  # noqa: S101 - required by the schema
        since = now - timedelta(minutes=rule.max_minutes) - lookback
        for job, workflow in await repo.overdue_jobs(session, rule, now, since=since):
            queued += await enqueue(
                session,
                rule,
                partial(
                    rules.job_overdue,
                    rule,
                    job_id=job.id,
                    workflow=workflow,
                    status=job.status,
                    created_at=job.created_at,
                    occurred_at=now,
                ),
                event=RuleKind.JOB_DEADLINE,
                subject=job.id,
                job_id=job.id,
                now=now,
                notify=alerts.notify if alerts else None,
            )
    return queued


def subscribe(bus: EventBus, alerts: Alerts) -> None:
    """Put the alert consumers on the bus (one consumer name: each event handled once)."""
    history = alerts.settings.alert_duration_history

    async def job_status(session: AsyncSession, delivery: Delivery) -> None:
        await on_job_status(alerts, session, delivery)

    async def quality_gate(session: AsyncSession, delivery: Delivery) -> None:
        await on_quality_gate(alerts, session, delivery)

    async def task_run_status(session: AsyncSession, delivery: Delivery) -> None:
        await on_task_run_status(alerts, session, delivery, history=history)

    # Only failures and successes interest alerts: no transaction for any other change.
    bus.subscribe(
        JobStatusChanged.TYPE,
        CONSUMER,
        job_status,
        when=lambda payload: payload.get("to_status") == JobState.FAILED,
    )
    bus.subscribe(QualityGateFailed.TYPE, CONSUMER, quality_gate)
    bus.subscribe(
        TaskRunStatusChanged.TYPE,
        CONSUMER,
        task_run_status,
        when=lambda payload: (
            alerts.duration_rules and payload.get("to_status") == TaskState.SUCCEEDED
        ),
    )
