"""Datasets in the console: the list, a dataset's versions with their schema, column profiles
(small server-drawn charts), quality reports and lineage, an upload that streams the file
to the API, and a download that streams it back. All through the public API as the user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .api import ConsoleApi
from .errors import NotFoundPage, SignInRequired, problem_text
from .pages import redirect, render, with_headers
from .routes import Api, CsrfField, optional, seg, signed_in
from .session import UI, check_csrf

router = APIRouter(prefix=UI, include_in_schema=False)

CSRF_HEADER = "x-csrf-token"
VERSIONS_SHOWN = 50
REPORTS_SHOWN = 20
# What the browser may learn of a download's headers (the rest stays the API's).
DOWNLOAD_HEADERS = ("content-type", "content-length", "content-disposition", "x-content-sha256")


def _page_size(request: Request) -> int:
    size: int = request.app.state.console_settings.page_size
    return size


async def _list_page(
    request: Request,
    api: ConsoleApi,
    project: str,
    offset: int,
    status_code: int = 200,
    error: str | None = None,
    typed: dict[str, str] | None = None,
) -> Response:
    await signed_in(request, api)
    base = f"/api/v1/projects/{seg(project)}"
    info = await api.read(base)
    size = _page_size(request)
    page = await api.read(f"{base}/datasets", limit=size, offset=max(offset, 0))
    return render(
        request,
        "datasets.html",
        status_code=status_code,
        project=info,
        page=page,
        error=error,
        typed=typed or {"name": "", "description": ""},
    )


@router.get("/projects/{project}/datasets")
async def datasets(request: Request, api: Api, project: str, offset: int = 0) -> Response:
    return await _list_page(request, api, project, offset)


@router.post("/projects/{project}/datasets")
async def create_dataset(
    request: Request,
    api: Api,
    project: str,
    name: Annotated[str, Form(max_length=200)] = "",
    description: Annotated[str, Form(max_length=20_000)] = "",
    csrf: CsrfField = None,
) -> Response:
    check_csrf(request, csrf)
    response = await api.request(
        "POST",
        f"/api/v1/projects/{seg(project)}/datasets",
        json={"name": name.strip(), "description": description},
    )
    if response.status_code == 201:
        return redirect(f"{UI}/projects/{seg(project)}/datasets/{seg(response.json()['name'])}")
    if response.status_code == 404:
        raise NotFoundPage
    return await _list_page(
        request,
        api,
        project,
        0,
        status_code=response.status_code if response.status_code < 500 else 502,
        error=problem_text(response),
        typed={"name": name, "description": description},
    )


def lineage_rows(version: dict[str, Any]) -> list[tuple[str, str]]:
    """The version's recorded lineage as (key, value) pairs, scalars as text."""
    lineage = version.get("lineage") or {}
    if not isinstance(lineage, dict):
        return []
    return [(str(k), str(v)) for k, v in lineage.items()]


@router.get("/projects/{project}/datasets/{dataset}")
async def dataset_page(
    request: Request, api: Api, project: str, dataset: str, version: int | None = None
) -> Response:
    await signed_in(request, api)
    base = f"/api/v1/projects/{seg(project)}"
    info = await api.read(base)
    path = f"{base}/datasets/{seg(dataset)}"
    found = await api.read(path)
    versions = await api.read(f"{path}/versions", limit=VERSIONS_SHOWN)
    number = version or found.get("latest_version")
    shown = None
    reports = None
    if number:
        shown = await api.read(f"{path}/versions/{int(number)}")
        reports = await optional(
            api, f"{path}/versions/{int(number)}/quality/history", limit=REPORTS_SHOWN
        )
    return render(
        request,
        "dataset.html",
        project=info,
        dataset=found,
        versions=versions,
        shown=shown,
        profile_columns=(shown or {}).get("profile") or [],
        reports=reports,
        lineage=lineage_rows(shown or {}),
    )


@router.post("/projects/{project}/datasets/{dataset}/versions")
async def upload_version(request: Request, api: Api, project: str, dataset: str) -> Response:
    """The console's upload form, sent by console.js with the CSRF token in a header: the
    multipart body streams on to the API unread (its size limit, format checks and
    profiling apply). JSON answers, for the script: where the new version is, or why not."""
    check_csrf(request, request.headers.get(CSRF_HEADER))
    path = f"/api/v1/projects/{seg(project)}/datasets/{seg(dataset)}/versions"
    headers = {"Content-Type": request.headers.get("content-type", "")}
    if request.headers.get("content-length"):
        headers["Content-Length"] = request.headers["content-length"]

    async def body() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            yield chunk

    response = await api.stream("POST", path, content=body(), headers=headers)
    try:
        await response.aread()
    finally:
        await response.aclose()
    if response.status_code in (200, 201):
        number = int(response.json()["number"])
        target = f"{UI}/projects/{seg(project)}/datasets/{seg(dataset)}?version={number}"
        return with_headers(JSONResponse({"version": number, "url": target}))
    status = response.status_code if response.status_code < 500 else 502
    if status in (403, 404):
        return with_headers(JSONResponse({"detail": "Not found"}, status_code=status))
    return with_headers(JSONResponse({"detail": problem_text(response)}, status_code=status))


@router.get("/projects/{project}/datasets/{dataset}/versions/{number}/download")
async def download_version(
    request: Request, api: Api, project: str, dataset: str, number: str
) -> Response:
    """The version's bytes, streamed from the API (never a redirect to the store: the
    browser has no token for it and the CSP forbids other origins anyway)."""
    if not api.token:
        raise SignInRequired  # before judging the URL: anonymous means sign in
    if not number.isdigit():
        raise NotFoundPage
    path = f"/api/v1/projects/{seg(project)}/datasets/{seg(dataset)}/versions/{int(number)}/content"
    response, body = await api.download(path)
    headers = {k: v for k, v in response.headers.items() if k.lower() in DOWNLOAD_HEADERS}
    headers["X-Content-Type-Options"] = "nosniff"
    return with_headers(StreamingResponse(body, headers=headers))
