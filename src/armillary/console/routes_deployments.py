"""Deployment pages: variants and weights with canary steps, the shadow, live traffic and
latency with the A/B analysis and its recommendation (a live fragment), rollback, and API
keys (shown once, when created). All through the public API as the signed-in user."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from .charts import intervals
from .errors import NotFoundPage, problem_text
from .pages import redirect, render
from .routes import Api, CsrfField, optional, seg, signed_in, together
from .session import UI, check_csrf

router = APIRouter(prefix=UI, include_in_schema=False)

# The analysis polls at ANALYSIS_MIN_MS, doubling up to ANALYSIS_MAX_MS while it is unchanged.
ANALYSIS_MIN_MS = 2000
ANALYSIS_MAX_MS = 30000
# The canary steps offered: the share of traffic the chosen variant gets.
CANARY_STEPS = (1, 5, 10, 25, 50, 100)
VARIANT_ROWS = 3
WRITERS = ("owner", "editor")


def _api_base(project: str) -> str:
    return f"/api/v1/projects/{seg(project)}/deployments"


def _page(project: str, deployment: str) -> str:
    return f"{UI}/projects/{seg(project)}/deployments/{seg(deployment)}"


def variant_in(variant: dict[str, Any], weight: float | None = None) -> dict[str, Any]:
    """A variant as the API takes it back (what it answered, minus what it resolved)."""
    out = {
        "name": variant["name"],
        "model": variant["model"],
        "weight": variant["weight"] if weight is None else weight,
        "shadow": bool(variant.get("shadow")),
    }
    if variant.get("alias"):
        out["alias"] = variant["alias"]
    else:
        out["version"] = variant.get("version")
    return out


def canary_weights(
    variants: list[dict[str, Any]], chosen: str, percent: float
) -> list[dict[str, Any]]:
    """``chosen`` gets ``percent`` of the live (non-shadow) traffic; the other live variants
    share the rest in their current proportions (evenly if they all had none). Shadows keep
    their weight: they receive copies, not traffic."""
    live = [v for v in variants if not v.get("shadow")]
    if chosen not in {v["name"] for v in live}:
        raise ValueError("choose a variant that takes live traffic")
    share = max(0.0, min(100.0, percent))
    others = [v for v in live if v["name"] != chosen]
    total = sum(float(v["weight"]) for v in others)
    out = []
    for v in variants:
        if v.get("shadow"):
            out.append(variant_in(v))
        elif v["name"] == chosen:
            out.append(variant_in(v, round(share, 4)))
        else:
            part = float(v["weight"]) / total if total > 0 else 1 / len(others)
            out.append(variant_in(v, round((100.0 - share) * part, 4)))
    return out


def traffic_shares(variants: list[dict[str, Any]]) -> dict[str, float]:
    """Each live variant's percentage of the weights (shadows: 0, they get copies)."""
    live = [v for v in variants if not v.get("shadow")]
    total = sum(float(v["weight"]) for v in live) or 1.0
    return {
        v["name"]: 0.0 if v.get("shadow") else float(v["weight"]) / total * 100 for v in variants
    }


def analysis_fingerprint(report: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(report, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _quality_intervals(report: dict[str, Any]) -> tuple[list[Any], float, float]:
    rows = []
    for variant in report.get("variants", []):
        quality = variant.get("quality") or {}
        rows.append(
            (variant.get("name", ""), quality.get("low"), quality.get("value"), quality.get("high"))
        )
    return intervals(rows)


async def _deployment(api: Any, project: str, deployment: str) -> tuple[Any, Any]:
    info = await api.read(f"/api/v1/projects/{seg(project)}")
    found = await api.read(f"{_api_base(project)}/{seg(deployment)}")
    return info, found


def _live_context(
    project: dict[str, Any], deployment: dict[str, Any], report: Any
) -> dict[str, Any]:
    shown = report or {}
    bars, low, high = _quality_intervals(shown)
    return {
        "project": project,
        "deployment": deployment,
        "report": report,
        "fingerprint": analysis_fingerprint(shown),
        "live_min": ANALYSIS_MIN_MS,
        "live_max": ANALYSIS_MAX_MS,
        "quality_bars": bars,
        "axis_low": low,
        "axis_high": high,
    }


async def _analysis(api: Any, project: str, deployment: str) -> Any:
    return await optional(api, f"{_api_base(project)}/{seg(deployment)}/analysis")


@router.get("/projects/{project}/deployments")
async def deployments(request: Request, api: Api, project: str, offset: int = 0) -> Response:
    return await _deployments_view(request, api, project, offset)


async def _deployments_view(
    request: Request,
    api: Api,
    project: str,
    offset: int = 0,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    await signed_in(request, api)
    info = await api.read(f"/api/v1/projects/{seg(project)}")
    size = request.app.state.console_settings.page_size
    page = await api.read(_api_base(project), limit=size, offset=max(offset, 0))
    return render(
        request,
        "deployments.html",
        status_code=status_code,
        project=info,
        page=page,
        rows=range(VARIANT_ROWS),
        can_write=info.get("my_role") in WRITERS,
        error=error,
    )


@router.post("/projects/{project}/deployments")
async def create_deployment(request: Request, api: Api, project: str) -> Response:
    """The create form: a name, a routing mode and up to ``VARIANT_ROWS`` variant rows (a
    row without a model is left out)."""
    form = await request.form()
    check_csrf(request, str(form.get("csrf_token") or "") or None)

    def field(name: str) -> str:
        return str(form.get(name) or "").strip()[:200]

    variants = []
    try:
        for i in range(VARIANT_ROWS):
            model = field(f"model_{i}")
            if not model:
                continue
            variant: dict[str, Any] = {
                "name": field(f"variant_{i}") or f"v{i + 1}",
                "model": model,
                "weight": float(field(f"weight_{i}") or 0),
                "shadow": field(f"shadow_{i}") == "on",
            }
            target = field(f"target_{i}")
            if target.isdigit():
                variant["version"] = int(target)
            else:
                variant["alias"] = target or "champion"
            variants.append(variant)
    except ValueError:
        return await _deployments_view(
            request, api, project, error="A weight must be a number", status_code=422
        )
    body = {
        "name": field("name"),
        "description": field("description"),
        "routing": {"mode": field("mode") or "random"},
        "variants": variants,
        "reason": field("reason"),
    }
    response = await api.request("POST", _api_base(project), json=body)
    if response.status_code == 201:
        return redirect(_page(project, response.json()["name"]))
    if response.status_code == 404:
        raise NotFoundPage
    return await _deployments_view(
        request, api, project, error=problem_text(response), status_code=response.status_code
    )


@router.get("/projects/{project}/deployments/{deployment}")
async def deployment_page(request: Request, api: Api, project: str, deployment: str) -> Response:
    return await _deployment_page_view(request, api, project, deployment)


async def _deployment_page_view(
    request: Request,
    api: Api,
    project: str,
    deployment: str,
    error: str | None = None,
    created_key: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    await signed_in(request, api)
    info, found = await _deployment(api, project, deployment)
    path = f"{_api_base(project)}/{seg(deployment)}"
    configs, keys, report = await together(
        optional(api, f"{path}/configs", limit=20),
        optional(api, f"{path}/keys", limit=100),
        _analysis(api, project, deployment),
    )
    return render(
        request,
        "deployment.html",
        status_code=status_code,
        **_live_context(info, found, report),
        configs=configs,
        keys=keys,
        shares=traffic_shares(found.get("variants", [])),
        steps=CANARY_STEPS,
        can_write=info.get("my_role") in WRITERS,
        error=error,
        created_key=created_key,
    )


@router.get("/projects/{project}/deployments/{deployment}/live")
async def deployment_live(request: Request, api: Api, project: str, deployment: str) -> Response:
    """The traffic and analysis part alone, for the poller."""
    info, found = await _deployment(api, project, deployment)
    report = await _analysis(api, project, deployment)
    return render(request, "_deployment_live.html", **_live_context(info, found, report))


async def _write(
    request: Request, api: Any, project: str, deployment: str, method: str, suffix: str, body: Any
) -> Response:
    response = await api.request(
        method, f"{_api_base(project)}/{seg(deployment)}{suffix}", json=body
    )
    if response.status_code == 404:
        raise NotFoundPage
    if response.status_code >= 400:
        return await _deployment_page_view(
            request,
            api,
            project,
            deployment,
            error=problem_text(response),
            status_code=response.status_code,
        )
    return redirect(_page(project, deployment))


@router.post("/projects/{project}/deployments/{deployment}/canary")
async def canary_step(
    request: Request,
    api: Api,
    project: str,
    deployment: str,
    variant: Annotated[str, Form(max_length=64)] = "",
    percent: Annotated[str, Form(max_length=12)] = "",
    csrf: CsrfField = None,
) -> Response:
    """Moves live traffic to ``variant`` by a canary step (a new configuration version)."""
    check_csrf(request, csrf)
    _, found = await _deployment(api, project, deployment)
    try:
        share = float(percent) if percent.strip() else -1.0
    except ValueError:
        share = -1.0
    try:
        if not 0 <= share <= 100:
            raise ValueError("a canary step is a share from 0 to 100 %")
        variants = canary_weights(found.get("variants", []), variant, share)
    except ValueError as exc:
        return await _deployment_page_view(
            request, api, project, deployment, error=str(exc), status_code=422
        )
    body = {"variants": variants, "reason": f"canary: {variant} at {share:g}%"}
    return await _write(request, api, project, deployment, "PUT", "", body)


@router.post("/projects/{project}/deployments/{deployment}/rollback")
async def rollback(
    request: Request,
    api: Api,
    project: str,
    deployment: str,
    reason: Annotated[str, Form(max_length=1000)] = "",
    csrf: CsrfField = None,
) -> Response:
    check_csrf(request, csrf)
    return await _write(request, api, project, deployment, "POST", "/rollback", {"reason": reason})


@router.post("/projects/{project}/deployments/{deployment}/keys")
async def create_key(
    request: Request,
    api: Api,
    project: str,
    deployment: str,
    name: Annotated[str, Form(max_length=200)] = "",
    csrf: CsrfField = None,
) -> Response:
    """Creates an API key and shows it on this one answer: the API never returns it again,
    and the page is not cached (``no-store``)."""
    check_csrf(request, csrf)
    path = f"{_api_base(project)}/{seg(deployment)}/keys"
    response = await api.request("POST", path, json={"name": name.strip()})
    if response.status_code == 404:
        raise NotFoundPage
    if response.status_code != 201:
        return await _deployment_page_view(
            request,
            api,
            project,
            deployment,
            error=problem_text(response),
            status_code=response.status_code,
        )
    return await _deployment_page_view(
        request, api, project, deployment, created_key=response.json(), status_code=201
    )


@router.post("/projects/{project}/deployments/{deployment}/keys/{key_id}/revoke")
async def revoke_key(
    request: Request, api: Api, project: str, deployment: str, key_id: str, csrf: CsrfField = None
) -> Response:
    check_csrf(request, csrf)
    return await _write(request, api, project, deployment, "DELETE", f"/keys/{seg(key_id)}", None)
