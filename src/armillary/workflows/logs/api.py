"""A task's log over HTTP: the whole of an attempt so far, or followed while it runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from armillary.kit.authz import Caller
from armillary.kit.errors import NotFound
from armillary.kit.pagination import AttemptNumber
from armillary.kit.runtime import Runtime

from ..components import current_workflows
from ..jobs import service as jobs
from ..jobs.models import TaskRun
from ..jobs.transitions import TASK_TERMINAL
from . import store as logs

router = APIRouter(tags=["jobs"])

FOLLOW_POLL_SECONDS = 0.5


@router.get(
    "/api/v1/jobs/{job_id}/tasks/{task}/logs",
    name="jobs.task_logs",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "The attempt's output so far"},
        404: {},
    },
)
async def task_logs(
    job_id: str,
    task: str,
    request: Request,
    caller: Caller,
    attempt: AttemptNumber = None,
    follow: Annotated[bool, Query(description="Keep streaming until the attempt ends")] = False,
) -> StreamingResponse:
    """stdout and stderr of one attempt of a task (404 unless the caller may read the job).
    With ``follow=true`` the response stays open and carries new output until the attempt
    ends."""
    runtime: Runtime = request.app.state.runtime
    job, run = await jobs.visible_task_run(
        runtime.db,
        runtime.require_access(),
        caller,
        job_id,
        task,
        claims=getattr(request.state, "token_claims", None),
    )
    if run is None:
        raise NotFound("Task not found in this job")
    number = attempt or run.attempt
    if number > run.attempt:
        raise NotFound("The task has no such attempt")
    store = current_workflows(request).store
    if store is None:  # pragma: no cover - install() always sets it
        raise NotFound("Logs are not available")
    project_id, job_uuid = job.project_id, job.id

    async def body() -> AsyncIterator[bytes]:
        sent: set[str] = set()
        while True:
            finished = not follow or await _attempt_over(runtime, run.id, number)
            keys = await logs.chunk_keys(store, project_id, job_uuid, task, number)
            for key in keys:
                if key not in sent:
                    sent.add(key)
                    yield await store.get_bytes(key)
            # Read once more after the attempt ended: its last chunk is written before it is.
            if finished or await request.is_disconnected():
                return
            await asyncio.sleep(FOLLOW_POLL_SECONDS)

    return StreamingResponse(
        body(),
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


async def _attempt_over(runtime: Runtime, run_id: uuid.UUID, number: int) -> bool:
    async with runtime.db.read_connection() as connection:
        row = (
            await connection.execute(
                select(TaskRun.status, TaskRun.attempt).where(TaskRun.id == run_id)
            )
        ).first()
    return row is None or row.attempt != number or row.status in TASK_TERMINAL
