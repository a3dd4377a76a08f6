"""The console's pages. Each handler reads and writes through the public API as the
signed-in user (``ConsoleApi``); none touches a service's database or code."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from .api import ConsoleApi, console_api
from .errors import ApiFailed, NotFoundPage, problem_text
from .pages import redirect, render
from .session import (
    CSRF_FIELD,
    LOGIN_PATH,
    REFRESH_COOKIE,
    UI,
    check_csrf,
    end_session,
    safe_next,
    start_session,
)
from .settings import ConsoleSettings

router = APIRouter(prefix=UI, include_in_schema=False)
Api = Annotated[ConsoleApi, Depends(console_api)]
CsrfField = Annotated[str | None, Form(alias=CSRF_FIELD)]

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = frozenset({"succeeded", "failed", "cancelled"})
# Live views poll at LIVE_MIN_MS, doubling up to LIVE_MAX_MS while nothing changes.
LIVE_MIN_MS = 1000
LIVE_MAX_MS = 15000
RECENT = 10


def seg(value: str) -> str:
    """A path segment for an API URL: quoted, and never a dot segment."""
    if value in (".", "..") or not value:
        raise NotFoundPage
    return quote(value, safe="")


def _settings(request: Request) -> ConsoleSettings:
    settings: ConsoleSettings = request.app.state.console_settings
    return settings


async def signed_in(request: Request, api: ConsoleApi) -> dict[str, Any]:
    """The signed-in user (the API's answer to their token), for the page's header."""
    user: dict[str, Any] = await api.read("/api/v1/auth/me")
    request.state.console_user = user
    return user


async def optional(api: ConsoleApi, path: str, **params: Any) -> Any:
    """A section of a page the user's role may not be allowed to see: ``None`` then."""
    response = await api.request("GET", path, params=params)
    if response.status_code in (403, 404):
        return None
    if response.status_code >= 400:
        raise ApiFailed.from_response(response)
    return response.json()


async def together(*reads: Awaitable[Any]) -> list[Any]:
    """Independent API reads at once: in process, one read's database waits overlap another's
    work (a page's sections cost about the slowest read, not their sum). The first failure is
    raised as itself (the console's error pages handle it) and the other reads are cancelled."""
    tasks = [asyncio.ensure_future(read) for read in reads]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# -- sign in and out -----------------------------------------------------------------------


@router.get("")
async def home() -> Response:
    return redirect(f"{UI}/projects")


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", next=safe_next(next), email="", error=None)


@router.post("/login")
async def login(
    request: Request,
    api: Api,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2048)] = UI,
    csrf: CsrfField = None,
) -> Response:
    check_csrf(request, csrf, session_needed=False)
    response = await api.request(
        "POST",
        "/api/v1/auth/token",
        data={"username": email, "password": password},
        authenticated=False,
    )
    if response.status_code != 200:
        error = "Wrong email or password" if response.status_code in (400, 401, 422) else None
        return render(
            request,
            "login.html",
            status_code=response.status_code if response.status_code < 500 else 503,
            next=safe_next(next),
            email=email,
            error=error or problem_text(response),
        )
    tokens = response.json()
    done = redirect(safe_next(next))
    start_session(
        done, request, tokens["access_token"], tokens["refresh_token"], int(tokens["expires_in"])
    )
    return done


@router.post("/logout")
async def logout(request: Request, api: Api, csrf: CsrfField = None) -> Response:
    done = redirect(LOGIN_PATH)
    if not api.token:
        # The session has already ended (its cookies expired with the token): there is
        # nothing to revoke, only the browser's leftovers to clear.
        end_session(done, request)
        return done
    check_csrf(request, csrf)
    refresh = request.cookies.get(REFRESH_COOKIE)
    # Revoke this session's refresh token on the server (the access token then dies with
    # its expiry, and the browser forgets it now).
    await api.request(
        "POST", "/api/v1/auth/logout", json={"refresh_token": refresh} if refresh else None
    )
    end_session(done, request)
    return done


# -- projects ------------------------------------------------------------------------------


async def _projects_page(
    request: Request,
    api: ConsoleApi,
    offset: int,
    status_code: int = 200,
    error: str | None = None,
    typed: dict[str, str] | None = None,
) -> Response:
    await signed_in(request, api)
    size = _settings(request).page_size
    page = await api.read("/api/v1/projects", limit=size, offset=max(offset, 0))
    return render(
        request,
        "projects.html",
        status_code=status_code,
        page=page,
        error=error,
        typed=typed or {"slug": "", "name": "", "description": ""},
    )


@router.get("/projects")
async def projects(request: Request, api: Api, offset: int = 0) -> Response:
    return await _projects_page(request, api, offset)


@router.post("/projects")
async def create_project(
    request: Request,
    api: Api,
    slug: Annotated[str, Form(max_length=200)] = "",
    name: Annotated[str, Form(max_length=400)] = "",
    description: Annotated[str, Form(max_length=20_000)] = "",
    csrf: CsrfField = None,
) -> Response:
    check_csrf(request, csrf)
    body = {"slug": slug.strip(), "name": name.strip(), "description": description}
    response = await api.request("POST", "/api/v1/projects", json=body)
    if response.status_code == 201:
        return redirect(f"{UI}/projects/{seg(response.json()['slug'])}")
    # The form is shown again with what the user typed and the API's reason.
    return await _projects_page(
        request,
        api,
        0,
        status_code=response.status_code,
        error=problem_text(response),
        typed={"slug": slug, "name": name, "description": description},
    )


@router.get("/projects/{project}")
async def project_overview(request: Request, api: Api, project: str) -> Response:
    await signed_in(request, api)
    base = f"/api/v1/projects/{seg(project)}"
    info = await api.read(base)  # first: a project the user may not see is "not found"
    jobs, failed, workflows, models, deployments = await together(
        optional(api, f"{base}/jobs", limit=RECENT),
        optional(api, f"{base}/jobs", limit=RECENT, status="failed"),
        optional(api, f"{base}/workflows", limit=RECENT),
        optional(api, f"{base}/models", limit=RECENT),
        optional(api, f"{base}/deployments", limit=RECENT),
    )
    return render(
        request,
        "project.html",
        project=info,
        jobs=jobs,
        failed=failed,
        workflows=workflows,
        models=models,
        deployments=deployments,
    )


# -- jobs ----------------------------------------------------------------------------------


@router.get("/projects/{project}/jobs")
async def jobs(
    request: Request,
    api: Api,
    project: str,
    status: str = "",
    workflow: str = "",
    offset: int = 0,
) -> Response:
    await signed_in(request, api)
    base = f"/api/v1/projects/{seg(project)}"
    info = await api.read(base)
    state = status if status in JOB_STATES else ""
    size = _settings(request).page_size
    response = await api.request(
        "GET",
        f"{base}/jobs",
        params={
            "status": state,
            "workflow": workflow[:64],
            "limit": size,
            "offset": max(offset, 0),
        },
    )
    if response.status_code in (403, 404):
        raise NotFoundPage
    error = None
    page: dict[str, Any] = {"items": [], "total": 0, "limit": size, "offset": 0}
    if response.status_code == 200:
        page = response.json()
    elif response.status_code in (400, 422):
        error = problem_text(response)  # a filter the API refuses (e.g. a bad name)
    else:
        raise ApiFailed.from_response(response)
    return render(
        request,
        "jobs.html",
        project=info,
        page=page,
        states=JOB_STATES,
        status=state,
        workflow=workflow,
        error=error,
    )


async def _job(api: ConsoleApi, project: str, job_id: str) -> tuple[dict[str, Any], Any]:
    project_path, job_path = f"/api/v1/projects/{seg(project)}", f"/api/v1/jobs/{seg(job_id)}"
    # Either read's 403 or 404 is "not found", whichever comes first.
    info, job = await together(api.read(project_path), api.read(job_path))
    if job.get("project_id") != info.get("id"):
        raise NotFoundPage  # a job of another project under this project's URL
    return info, job


def fingerprint(job: dict[str, Any]) -> str:
    """What the live view shows, hashed: the poller backs off while it does not change."""
    shown = [job.get("status")] + [
        [t.get("name"), t.get("status"), t.get("attempt"), t.get("progress")]
        for t in job.get("tasks", [])
    ]
    return hashlib.sha256(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _live_context(project: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    return {
        "project": project,
        "job": job,
        "finished": job.get("status") in FINISHED,
        "fingerprint": fingerprint(job),
        "live_min": LIVE_MIN_MS,
        "live_max": LIVE_MAX_MS,
    }


@router.get("/projects/{project}/jobs/{job_id}")
async def job_page(request: Request, api: Api, project: str, job_id: str) -> Response:
    await signed_in(request, api)
    info, job = await _job(api, project, job_id)
    return render(request, "job.html", **_live_context(info, job))


@router.get("/projects/{project}/jobs/{job_id}/live")
async def job_live(request: Request, api: Api, project: str, job_id: str) -> Response:
    """The job page's live part alone, for the poller."""
    info, job = await _job(api, project, job_id)
    return render(request, "_job_live.html", **_live_context(info, job))


@router.post("/projects/{project}/jobs/{job_id}/cancel")
async def cancel_job(
    request: Request, api: Api, project: str, job_id: str, csrf: CsrfField = None
) -> Response:
    check_csrf(request, csrf)
    await _job(api, project, job_id)  # the job must belong to this project
    response = await api.request("POST", f"/api/v1/jobs/{seg(job_id)}/cancel")
    if response.status_code in (403, 404):
        raise NotFoundPage
    # 409: it finished meanwhile; the page shows how.
    if response.status_code >= 400 and response.status_code != 409:
        raise ApiFailed.from_response(response)
    return redirect(f"{UI}/projects/{seg(project)}/jobs/{seg(job_id)}")


# -- workflows and models --------------------------------------------------------------------


@router.get("/projects/{project}/workflows")
async def workflows(request: Request, api: Api, project: str, offset: int = 0) -> Response:
    await signed_in(request, api)
    base = f"/api/v1/projects/{seg(project)}"
    info = await api.read(base)
    size = _settings(request).page_size
    page = await api.read(f"{base}/workflows", limit=size, offset=max(offset, 0))
    return render(request, "workflows.html", project=info, page=page)


@router.get("/projects/{project}/workflows/{workflow}")
async def workflow_page(
    request: Request, api: Api, project: str, workflow: str, version: int | None = None
) -> Response:
    await signed_in(request, api)
    base = f"/api/v1/projects/{seg(project)}"
    info = await api.read(base)
    path = f"{base}/workflows/{seg(workflow)}"
    definition = await api.read(path)
    versions = await api.read(f"{path}/versions", limit=100)
    number = version or definition["latest_version"]
    shown = await api.read(f"{path}/versions/{int(number)}")
    return render(
        request,
        "workflow.html",
        project=info,
        workflow=definition,
        versions=versions,
        shown=shown,
        spec=json.dumps(shown.get("spec", {}), indent=2, sort_keys=False),
    )


@router.get("/projects/{project}/models")
async def models(request: Request, api: Api, project: str, offset: int = 0) -> Response:
    await signed_in(request, api)
    base = f"/api/v1/projects/{seg(project)}"
    info = await api.read(base)
    size = _settings(request).page_size
    page = await api.read(f"{base}/models", limit=size, offset=max(offset, 0))
    return render(request, "models.html", project=info, page=page)
