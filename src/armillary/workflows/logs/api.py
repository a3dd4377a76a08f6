"""A task's log over HTTP: an attempt's output so far (from a byte offset, bounded if asked),
or followed while it runs."""

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
from armillary.kit.storage import ObjectInfo

from ..components import current_workflows
from ..jobs import service as jobs
from ..jobs.models import TaskRun
from ..jobs.transitions import TASK_TERMINAL
from . import store as logs

router = APIRouter(tags=["jobs"])

FOLLOW_POLL_SECONDS = 0.5
MAX_OFFSET = 2**53
MAX_LIMIT = 64 * 1024 * 1024


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
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Start at this byte of the attempt's output")
    ] = 0,
    limit: Annotated[
        int | None, Query(ge=1, le=MAX_LIMIT, description="Send at most this many bytes")
    ] = None,
) -> StreamingResponse:
    """stdout and stderr of one attempt of a task (404 unless the caller may read the job),
    from byte ``offset`` on and at most ``limit`` bytes of it. Without ``follow``,
    ``X-Log-Size`` is the size of the output so far, so a reader that polls knows where it
    stands. With ``follow=true`` the response stays open and carries new output until the
    attempt ends (or ``limit`` bytes were sent)."""
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
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    listed: list[ObjectInfo] | None = None
    if not follow:
        listed = await logs.chunks(store, project_id, job_uuid, task, number)
        headers["X-Log-Size"] = str(sum(info.size for info in listed))

    async def body() -> AsyncIterator[bytes]:
        sent: set[str] = set()
        before = 0  # bytes of output in the chunks already walked past
        budget = limit
        first = listed
        while True:
            finished = not follow or await _attempt_over(runtime, run.id, number)
            if first is None:
                found = await logs.chunks(store, project_id, job_uuid, task, number)
            else:
                found, first = first, None
            for info in found:
                if info.key in sent:
                    continue
                sent.add(info.key)
                start, before = before, before + info.size
                if before <= offset:
                    continue  # wholly before the offset: not even read
                piece = (await store.get_bytes(info.key))[max(0, offset - start) :]
                if budget is not None:
                    piece, budget = piece[:budget], budget - min(budget, len(piece))
                yield piece
                if budget == 0:
                    return
            # Read once more after the attempt ended: its last chunk is written before it is.
            if finished or await request.is_disconnected():
                return
            await asyncio.sleep(FOLLOW_POLL_SECONDS)

    return StreamingResponse(body(), media_type="text/plain; charset=utf-8", headers=headers)


async def _attempt_over(runtime: Runtime, run_id: uuid.UUID, number: int) -> bool:
    async with runtime.db.read_connection() as connection:
        row = (
            await connection.execute(
                select(TaskRun.status, TaskRun.attempt).where(TaskRun.id == run_id)
            )
        ).first()
    return row is None or row.attempt != number or row.status in TASK_TERMINAL
