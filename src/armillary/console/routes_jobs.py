"""A job in depth and workflows side by side: a task's log read from an offset (the job
page's follower appends what is new), a task's artifacts, re-running a job, and the diff
between two versions of a workflow's spec."""

from __future__ import annotations

import difflib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response, StreamingResponse

from .errors import ApiFailed, NotFoundPage, problem_text
from .pages import redirect, render, with_headers
from .routes import FINISHED, Api, CsrfField, _job, seg, signed_in
from .session import UI, check_csrf
from .settings import ConsoleSettings

router = APIRouter(prefix=UI, include_in_schema=False)

# A task's states in which its log will not grow.
TASK_DONE = FINISHED | {"skipped", "upstream_failed"}
# At most this much of a log per answer: a long log arrives over a few polls.
LOG_CHUNK = 256 * 1024


def utf8_prefix(data: bytes) -> bytes:
    """``data`` without a UTF-8 sequence cut at its end (the next read starts there)."""
    for cut in range(1, 4):
        if len(data) < cut:
            break
        lead = data[-cut]
        if lead & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead byte
        needed = (
            2
            if lead >> 5 == 0b110
            else 3
            if lead >> 4 == 0b1110
            else 4
            if lead >> 3 == 0b11110
            else 1
        )
        return data[:-cut] if needed > cut else data
    return data


def _task(job: dict[str, Any], name: str) -> dict[str, Any]:
    for task in job.get("tasks", []):
        if task.get("name") == name:
            found: dict[str, Any] = task
            return found
    raise NotFoundPage


@router.get("/projects/{project}/jobs/{job_id}/tasks/{task}/logs")
async def task_log(
    request: Request,
    api: Api,
    project: str,
    job_id: str,
    task: str,
    offset: int = 0,
    attempt: int | None = None,
) -> Response:
    """The attempt's log from byte ``offset`` on, as text. ``X-Log-Offset`` says where the
    next read starts and ``X-Log-Done`` whether more can come (the task has ended and all
    of it was sent). The API reads from the offset and at most a chunk of it."""
    _, job = await _job(api, project, job_id)
    run = _task(job, task)
    number = attempt or int(run.get("attempt") or 0)
    done_before = run.get("status") in TASK_DONE or number < int(run.get("attempt") or 0)
    start = max(offset, 0)
    size = 0
    if number < 1:  # not started yet: nothing to read
        data = b""
    else:
        response = await api.request(
            "GET",
            f"/api/v1/jobs/{seg(job_id)}/tasks/{seg(task)}/logs",
            params={"attempt": number, "offset": start, "limit": LOG_CHUNK},
        )
        if response.status_code in (403, 404):
            raise NotFoundPage
        if response.status_code >= 400:
            raise ApiFailed.from_response(response)
        data = response.content
        size = int(response.headers.get("X-Log-Size") or 0)
    start = min(start, size)
    piece = utf8_prefix(data)
    end = start + len(piece)
    done = done_before and end >= size
    answer = Response(
        piece,
        media_type="text/plain; charset=utf-8",
        headers={
            "X-Log-Offset": str(end),
            "X-Log-Done": "true" if done else "false",
            "X-Content-Type-Options": "nosniff",
        },
    )
    return with_headers(answer)


@router.get("/projects/{project}/jobs/{job_id}/tasks/{task}/artifacts/{name:path}")
async def task_artifact(
    request: Request, api: Api, project: str, job_id: str, task: str, name: str
) -> Response:
    """One artifact of a task, streamed from the API as a download."""
    _, job = await _job(api, project, job_id)
    if name not in (_task(job, task).get("artifacts") or {}):
        raise NotFoundPage
    path = f"/api/v1/jobs/{seg(job_id)}/tasks/{seg(task)}/artifacts/" + "/".join(
        seg(part) for part in name.split("/")
    )
    response, body = await api.download(path)
    headers = {
        "Content-Disposition": response.headers.get("content-disposition", "attachment"),
        "X-Content-Type-Options": "nosniff",
    }
    return with_headers(
        StreamingResponse(body, media_type="application/octet-stream", headers=headers)
    )


@router.post("/projects/{project}/jobs/{job_id}/rerun")
async def rerun_job(
    request: Request, api: Api, project: str, job_id: str, csrf: CsrfField = None
) -> Response:
    """A new job of the same workflow with the same parameters. The API starts a workflow's
    latest version; the job page says which version that is."""
    check_csrf(request, csrf)
    _, job = await _job(api, project, job_id)
    response = await api.request(
        "POST",
        f"/api/v1/projects/{seg(project)}/workflows/{seg(job['workflow'])}/jobs",
        json={"parameters": job.get("parameters") or {}},
    )
    if response.status_code in (403, 404):
        raise NotFoundPage
    if response.status_code not in (200, 201):
        raise ApiFailed.from_response(response)
    return redirect(f"{UI}/projects/{seg(project)}/jobs/{seg(response.json()['id'])}")


def spec_lines(spec: Any) -> list[str]:
    return json.dumps(spec, indent=2, sort_keys=True, default=str).splitlines()


def spec_diff(old: Any, new: Any, old_name: str, new_name: str) -> list[tuple[str, str]]:
    """A unified diff of two specs (as sorted JSON), each line with its kind: ``add``,
    ``del``, ``hunk``, ``head`` or ``same``. The template escapes the text."""
    kinds = []
    for line in difflib.unified_diff(
        spec_lines(old), spec_lines(new), old_name, new_name, lineterm="", n=3
    ):
        if line.startswith(("+++", "---")):
            kind = "head"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        kinds.append((kind, line))
    return kinds


@router.get("/projects/{project}/workflows/{workflow}/diff")
async def workflow_diff(
    request: Request, api: Api, project: str, workflow: str, a: int = 0, b: int = 0
) -> Response:
    await signed_in(request, api)
    base = f"/api/v1/projects/{seg(project)}"
    info = await api.read(base)
    path = f"{base}/workflows/{seg(workflow)}"
    definition = await api.read(path)
    latest = int(definition["latest_version"])
    new = b if 1 <= b <= latest else latest
    old = a if 1 <= a <= latest else max(new - 1, 1)
    versions = await api.read(f"{path}/versions", limit=100)
    old_spec = (await api.read(f"{path}/versions/{old}")).get("spec", {})
    new_spec = (await api.read(f"{path}/versions/{new}")).get("spec", {})
    return render(
        request,
        "workflow_diff.html",
        project=info,
        workflow=definition,
        versions=versions,
        old=old,
        new=new,
        lines=spec_diff(old_spec, new_spec, f"v{old}", f"v{new}"),
    )


# A pasted spec: the API's own limit on a spec's size applies after this one.
SPEC_MAX_CHARS = 256 * 1024


def spec_problems(response: Any) -> list[str]:
    """The API's reason for refusing a spec, and each error it lists with its path."""
    problems = [problem_text(response)]
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict) and error.get("message"):
            where = error.get("path")
            problems.append(f"{where}: {error['message']}" if where else str(error["message"]))
    return problems


@router.post("/projects/{project}/workflows")
async def apply_workflow(
    request: Request,
    api: Api,
    project: str,
    spec: Annotated[str, Form(max_length=SPEC_MAX_CHARS)] = "",
    csrf: CsrfField = None,
) -> Response:
    """A pasted YAML (or JSON: YAML's subset) spec, applied as the CLI applies a file: a new
    workflow, or a new version of one."""
    check_csrf(request, csrf)
    base = f"/api/v1/projects/{seg(project)}"
    response = await api.stream(
        "POST",
        f"{base}/workflows",
        content=spec.encode(),
        headers={"Content-Type": "application/yaml"},
    )
    try:
        await response.aread()
    finally:
        await response.aclose()
    if response.status_code in (200, 201):
        name = response.json()["workflow"]["name"]
        return redirect(f"{UI}/projects/{seg(project)}/workflows/{seg(name)}")
    if response.status_code == 404:
        raise NotFoundPage
    if response.status_code >= 500:
        raise ApiFailed.from_response(response)
    await signed_in(request, api)
    info = await api.read(base)
    settings: ConsoleSettings = request.app.state.console_settings
    page = await api.read(f"{base}/workflows", limit=settings.page_size, offset=0)
    return render(
        request,
        "workflows.html",
        status_code=response.status_code,
        project=info,
        page=page,
        spec_errors=spec_problems(response),
        typed_spec=spec,
    )
