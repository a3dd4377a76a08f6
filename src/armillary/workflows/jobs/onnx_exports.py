"""Export jobs: a registered version's ONNX export runs as a job of its own, after the
training job that registered it, so that job never waits for it (ADR 0018).

The job belongs to the training job's workflow and project, is started on behalf of whoever
started that job, and runs the tasks the registry's contract lists (``onnx_export``, then
``attach_onnx``) in the sandbox like any other. Its id is the one the registry chose: the
registry accepts the export's result from that job only.
"""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.registry import OnnxExportRequested, onnx_export_tasks
from armillary.contracts.training import ONNX_PARITY_FILE
from armillary.kit import audit
from armillary.kit.db import utcnow
from armillary.kit.events import Delivery, EventBus

from ..components import SERVICE
from ..scheduling import signals
from .models import Job, JobState, Trigger
from .service import task_runs

log = structlog.get_logger("armillary.workflows.onnx_exports")

CONSUMER = "workflows.onnx_exports"


async def start_export_job(session: AsyncSession, event: OnnxExportRequested) -> Job | None:
    """The export job for ``event``, created once (a redelivered request finds it)."""
    existing = await session.get(Job, event.export_job_id)
    if existing is not None:
        return existing
    source = await session.get(Job, event.source_job_id)
    if source is None or source.project_id != event.project_id:
        log.warning("workflows.onnx_export_without_source", job_id=str(event.source_job_id))
        return None
    job = Job(
        id=event.export_job_id,
        project_id=source.project_id,
        workflow_id=source.workflow_id,
        version_id=source.version_id,
        version_number=source.version_number,
        status=JobState.QUEUED,
        trigger=Trigger.ONNX_EXPORT,
        parameters={},
        idempotency_key=None,
        created_by=event.requested_by,
        created_at=utcnow(),
    )
    job.task_runs = task_runs({"tasks": onnx_export_tasks(event, ONNX_PARITY_FILE)})
    session.add(job)
    await session.flush()
    await signals.notify(session, signals.SCHEDULER_WANTED)
    audit.record(
        session,
        action="jobs.create",
        resource_type="job",
        resource_id=job.id,
        actor_id=event.requested_by,
        details={
            "trigger": str(Trigger.ONNX_EXPORT),
            "source_job_id": str(event.source_job_id),
            "model": event.model,
            "version": event.version,
        },
        service=SERVICE,
    )
    return job


def subscribe(bus: EventBus) -> None:
    async def requested(session: AsyncSession, delivery: Delivery) -> None:
        await start_export_job(session, OnnxExportRequested.model_validate(delivery.payload))

    bus.subscribe(OnnxExportRequested.TYPE, CONSUMER, requested)
