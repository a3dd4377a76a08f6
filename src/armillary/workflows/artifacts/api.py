"""A task's artifacts over HTTP: how downstream tasks (with their job token) and people read
what a task wrote."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse

from armillary.kit.authz import Caller
from armillary.kit.edge import TASK_ROUTE
from armillary.kit.errors import NotFound
from armillary.kit.runtime import Runtime

from ..components import current_workflows
from ..jobs import service as jobs

router = APIRouter(tags=["jobs"])


@router.get(
    # A path: a task's artifact may sit in a subdirectory of its output (`reports/a.html`).
    "/api/v1/jobs/{job_id}/tasks/{task}/artifacts/{name:path}",
    name="jobs.task_artifact",
    response_class=StreamingResponse,
    dependencies=[TASK_ROUTE],
    responses={
        200: {"content": {"application/octet-stream": {}}},
        307: {"description": "Presigned URL"},
        404: {},
    },
)
async def task_artifact(
    job_id: str,
    task: str,
    name: str,
    request: Request,
    caller: Caller,
    redirect: Annotated[
        bool, Query(description="Redirect to a presigned URL when the store has one")
    ] = True,
) -> Response:
    """One artifact of a task run (404 unless the caller may read the job and the task
    recorded an artifact of that name)."""
    runtime: Runtime = request.app.state.runtime
    _, run = await jobs.visible_task_run(
        runtime.db,
        runtime.require_access(),
        caller,
        job_id,
        task,
        claims=getattr(request.state, "token_claims", None),
    )
    key = (run.artifacts or {}).get(name) if run is not None else None
    if key is None:
        raise NotFound("Artifact not found")
    store = current_workflows(request).store
    if store is None:  # pragma: no cover - install() always sets it
        raise NotFound("Artifact not found")
    if redirect:
        url = await store.presigned_get_url(key)
        if url is not None:
            return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    stream = await store.open_stream(key)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return StreamingResponse(
        stream,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{safe}"'},
    )
