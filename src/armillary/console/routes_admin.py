"""Admin pages: users and roles, the audit log with filters and its chain check, the token
signing keys, and system health. The API decides who may see them (its 403 is this
console's "not found"); the navigation offers them to admins only."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from .errors import ApiFailed, NotFoundPage, problem_text
from .pages import redirect, render
from .routes import Api, CsrfField, seg, signed_in, together
from .session import UI, check_csrf

router = APIRouter(prefix=f"{UI}/admin", include_in_schema=False)

ROLES = ("admin", "data_scientist", "user")
AUDIT_FILTERS = ("actor", "action", "resource_type", "resource_id", "since", "until")
# How many projects the health page lists with their job queue (one page of the projects).
HEALTH_PROJECTS = 50
# The services whose requests, errors and latency the health page shows (each answers
# /api/v1/system/services/<name> from its own process's metrics).
SERVICES = ("identity", "data", "workflows", "registry", "serving", "tracking")
# What the public API does not expose, said on the health page rather than guessed.
NOT_EXPOSED = (
    "Idle workers: a worker is seen through the task leases it renews, so one with nothing "
    "to run is not listed (its process exports armillary_worker_* metrics).",
    "Fleet-wide figures: each service's row is one process's since it started; with several "
    "replicas, Prometheus (the metrics port, ARMILLARY_METRICS_PORT) holds all of them.",
    "Broker queue depths (RabbitMQ): not exposed by the API.",
)


@router.get("")
async def admin_home(request: Request, api: Api) -> Response:
    await signed_in(request, api)
    return redirect(f"{UI}/admin/users")


@router.get("/users")
async def users(request: Request, api: Api, offset: int = 0) -> Response:
    return await _users_view(request, api, offset=offset)


async def _users_view(
    request: Request, api: Api, offset: int = 0, error: str | None = None, status_code: int = 200
) -> Response:
    await signed_in(request, api)
    size = request.app.state.console_settings.page_size
    page = await api.read("/api/v1/users", limit=size, offset=max(offset, 0))
    return render(
        request, "admin_users.html", status_code=status_code, page=page, roles=ROLES, error=error
    )


@router.post("/users/{user_id}")
async def update_user(
    request: Request,
    api: Api,
    user_id: str,
    role: Annotated[str, Form(max_length=32)] = "",
    active: Annotated[str, Form(max_length=8)] = "",
    csrf: CsrfField = None,
) -> Response:
    """Changes a user's platform role or deactivates/reactivates them (the API refuses what
    it must, e.g. an admin demoting the last admin)."""
    check_csrf(request, csrf)
    body: dict[str, Any] = {}
    if role:
        body["role"] = role
    if active in ("true", "false"):
        body["active"] = active == "true"
    response = await api.request("PATCH", f"/api/v1/users/{seg(user_id)}", json=body)
    if response.status_code >= 400:
        return await _users_view(
            request, api, error=problem_text(response), status_code=response.status_code
        )
    return redirect(f"{UI}/admin/users")


@router.get("/audit")
async def audit(request: Request, api: Api, offset: int = 0, verify: bool = False) -> Response:
    await signed_in(request, api)
    filters = {k: str(request.query_params.get(k, "")).strip()[:200] for k in AUDIT_FILTERS}
    size = request.app.state.console_settings.page_size
    response = await api.request(
        "GET", "/api/v1/audit", params={**filters, "limit": size, "offset": max(offset, 0)}
    )
    error = None
    page: dict[str, Any] = {"items": [], "total": 0, "limit": size, "offset": 0}
    if response.status_code == 200:
        page = response.json()
    elif response.status_code in (400, 422):
        error = problem_text(response)  # a filter the API refuses (e.g. a bad date)
    elif response.status_code in (403, 404):
        raise NotFoundPage  # not an admin: the API's 403 says no more than "not found"
    else:
        raise ApiFailed.from_response(response)
    checked = await api.read("/api/v1/audit/verify") if verify else None
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in filters.items() if v)
    return render(
        request,
        "admin_audit.html",
        page=page,
        filters=filters,
        query=query + "&" if query else "",
        error=error,
        checked=checked,
    )


@router.get("/keys")
async def signing_keys(request: Request, api: Api) -> Response:
    """The public halves of the token signing keys (the JWKS the API publishes): which keys
    verify tokens now. Rotation is a server operation (``armillary keys``), not an API one."""
    await signed_in(request, api)
    await api.read("/api/v1/users", limit=1)  # admins only, as the API decides
    jwks = await api.read("/api/v1/auth/jwks")
    return render(request, "admin_keys.html", keys=jwks.get("keys", []))


async def _available(api: Any, path: str) -> dict[str, Any] | None:
    """A section a service answers, or None when it cannot now (a service down behind the
    gateway): the page shows the rest."""
    response = await api.request("GET", path)
    if response.status_code >= 500:
        return None
    if response.status_code >= 400:
        raise ApiFailed.from_response(response)
    found: dict[str, Any] = response.json()
    return found


def _queues(projects: list[dict[str, Any]], engine: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each listed project's job queue, from the engine's counts by project (one API call
    for all of them)."""
    counts = {e["project_id"]: e for e in (engine or {}).get("jobs_by_project", [])}
    queues = []
    for project in projects:
        found = counts.get(str(project.get("id")), {})
        queues.append(
            {
                "project": project,
                "queued": found.get("queued", 0),
                "oldest_queued": found.get("oldest_queued_at"),
                "running": found.get("running", 0),
                "failed": found.get("failed", 0),
                "total": found.get("total", 0),
            }
        )
    return queues


@router.get("/health")
async def health(request: Request, api: Api) -> Response:
    await signed_in(request, api)
    await api.read("/api/v1/users", limit=1)  # admins only, as the API decides
    checks = {
        "API liveness": "/healthz",
        "API readiness": "/readyz",
        "Inference (v2) readiness": "/v2/health/ready",
    }
    found = await together(
        *(api.request("GET", path, authenticated=False) for path in checks.values()),
        api.read("/api/v1/projects", limit=HEALTH_PROJECTS),
        _available(api, "/api/v1/system/engine"),
        *(_available(api, f"/api/v1/system/services/{name}") for name in SERVICES),
    )
    answers, (projects, engine) = found[: len(checks)], found[len(checks) : len(checks) + 2]
    services = dict(zip(SERVICES, found[len(checks) + 2 :], strict=True))
    probes = {}
    for name, response in zip(checks, answers, strict=True):
        try:
            body = response.json()
        except ValueError:
            body = {}
        probes[name] = {"status": response.status_code, "body": body}
    queues = _queues(projects.get("items", []), engine)
    return render(
        request,
        "admin_health.html",
        probes=probes,
        engine=engine,
        services=services,
        queues=queues,
        projects_total=projects.get("total", 0),
        shown=len(queues),
        not_exposed=NOT_EXPOSED,
    )
