"""Model pages: a model's versions (sortable by any metric), a comparison of versions, a
version's lineage both ways, and its aliases with history, as-of, move and rollback. Reads
and writes go through the public API as the signed-in user."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from .charts import layout_lineage, metric_bars, node_label
from .errors import ApiFailed, NotFoundPage, problem_text
from .pages import redirect, render
from .routes import Api, CsrfField, optional, seg, signed_in, together
from .session import UI, check_csrf

router = APIRouter(prefix=UI, include_in_schema=False)

MAX_COMPARED = 6
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"


def _base(project: str, model: str) -> str:
    return f"/api/v1/projects/{seg(project)}/models/{seg(model)}"


def _page_url(project: dict[str, Any], model: str) -> str:
    return f"{UI}/projects/{seg(project['slug'])}/models/{seg(model)}"


def sort_keys(versions: list[dict[str, Any]]) -> list[str]:
    """What the versions table sorts by: version, creation, and every metric any shown
    version has."""
    metrics = sorted({name for v in versions for name in (v.get("metrics") or {})})
    return ["version", "created_at", *[f"metrics.{m}" for m in metrics]]


def toggled(current: str, key: str) -> str:
    """The order a column header links to: this key largest first, or reversed if it is
    already so."""
    return f"-{key}" if current == key else key


async def _project_and_model(api: Any, project: str, model: str) -> tuple[Any, Any]:
    info = await api.read(f"/api/v1/projects/{seg(project)}")
    found = await api.read(_base(project, model))
    return info, found


@router.get("/projects/{project}/models/{model}")
async def model_page(
    request: Request, api: Api, project: str, model: str, order_by: str = "version", offset: int = 0
) -> Response:
    return await _model_page_view(request, api, project, model, order_by, offset)


async def _model_page_view(
    request: Request,
    api: Api,
    project: str,
    model: str,
    order_by: str = "version",
    offset: int = 0,
    error: str | None = None,
) -> Response:
    await signed_in(request, api)
    info, found = await _project_and_model(api, project, model)
    size = request.app.state.console_settings.page_size
    response = await api.request(
        "GET",
        f"{_base(project, model)}/versions",
        params={"order_by": order_by[:90], "limit": size, "offset": max(offset, 0)},
    )
    page: dict[str, Any] = {"items": [], "total": 0, "limit": size, "offset": 0}
    if response.status_code == 200:
        page = response.json()
    elif response.status_code in (400, 422):
        error = problem_text(response)  # an order the API refuses
        order_by = "version"
    else:
        raise ApiFailed.from_response(response)
    aliases = await optional(api, f"{_base(project, model)}/aliases") or []
    metric_names = sorted({n for v in page["items"] for n in (v.get("metrics") or {})})
    return render(
        request,
        "model.html",
        project=info,
        model=found,
        page=page,
        order_by=order_by,
        sort_keys=sort_keys(page["items"]),
        toggled=toggled,
        metric_names=metric_names,
        aliases=aliases,
        can_write=info.get("my_role") in ("owner", "editor"),
        error=error,
        alias_pattern=ALIAS_PATTERN,
    )


@router.get("/projects/{project}/models/{model}/compare")
async def compare_page(
    request: Request,
    api: Api,
    project: str,
    model: str,
    v: Annotated[list[str] | None, Query(max_length=9)] = None,
) -> Response:
    await signed_in(request, api)
    info, found = await _project_and_model(api, project, model)
    # Not numbers: left out (the page says to choose two), rather than a bare 422.
    chosen = sorted({int(n) for n in v or [] if n.isdigit()})[:MAX_COMPARED]
    comparison = None
    error = None
    if len(chosen) < 2:
        error = "Choose at least two versions to compare."
    else:
        response = await api.request(
            "GET",
            f"{_base(project, model)}/compare",
            params={"versions": ",".join(str(n) for n in chosen)},
        )
        if response.status_code in (400, 404, 422):
            error = problem_text(response)
        elif response.status_code >= 400:
            raise ApiFailed.from_response(response)
        else:
            comparison = response.json()
    charts = metric_bars(comparison["metrics"], comparison["versions"]) if comparison else []
    return render(
        request,
        "model_compare.html",
        project=info,
        model=found,
        comparison=comparison,
        charts=charts,
        error=error,
    )


async def _downstream(
    api: Any, project: str, model: str, number: int, aliases: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Nodes and edges for what uses this version: the aliases on it and the deployments
    whose variants resolve to it (the first page of the project's deployments)."""
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for alias in aliases:
        if alias.get("version") == number:
            node = f"alias:{alias['alias']}"
            nodes.append(
                {
                    "id": node,
                    "kind": "alias",
                    "label": f"@{alias['alias']}",
                    "href": f"{UI}/projects/{seg(project)}/models/{seg(model)}/aliases/"
                    f"{seg(alias['alias'])}",
                }
            )
            edges.append({"from": node, "to": "root", "relation": "points_at"})
    deployments = await optional(api, f"/api/v1/projects/{seg(project)}/deployments", limit=100)
    for deployment in (deployments or {}).get("items", []):
        for variant in deployment.get("variants", []):
            resolved = (variant.get("resolved") or {}).get("model_version")
            if variant.get("model") == model and resolved == number:
                node = f"deployment:{deployment['name']}:{variant['name']}"
                nodes.append(
                    {
                        "id": node,
                        "kind": "deployment",
                        "label": f"{deployment['name']}/{variant['name']}",
                        "href": f"{UI}/projects/{seg(project)}/deployments/"
                        f"{seg(deployment['name'])}",
                    }
                )
                edges.append({"from": node, "to": "root", "relation": "serves"})
    return nodes, edges


@router.get("/projects/{project}/models/{model}/versions/{number}")
async def version_page(
    request: Request, api: Api, project: str, model: str, number: str
) -> Response:
    await signed_in(request, api)  # before the URL is judged: anonymous means sign-in
    if not number.isdigit() or len(number) > 9:
        raise NotFoundPage
    info, found = await _project_and_model(api, project, model)
    version, graph, aliases = await together(
        api.read(f"{_base(project, model)}/versions/{int(number)}"),
        api.read(f"{_base(project, model)}/versions/{int(number)}/lineage"),
        optional(api, f"{_base(project, model)}/aliases"),
    )
    aliases = aliases or []
    up_nodes = list(graph.get("nodes", []))
    root = next((n["id"] for n in up_nodes if n.get("kind") == "model_version"), "root")
    slug = seg(info["slug"])
    for node in up_nodes:
        if node.get("kind") == "job" and node.get("job_id"):
            node["href"] = f"{UI}/projects/{slug}/jobs/{seg(str(node['job_id']))}"
        if node.get("kind") == "dataset_version" and node.get("dataset"):
            node["href"] = (
                f"{UI}/projects/{slug}/models-lineage?dataset={seg(str(node['dataset']))}"
                f"&version={int(node.get('version') or 0)}"
            )
    down_nodes, down_edges = await _downstream(api, project, model, int(number), aliases)
    for edge in down_edges:
        edge["to"] = root
    edges = list(graph.get("edges", [])) + down_edges
    layout = layout_lineage(up_nodes + down_nodes, edges)
    return render(
        request,
        "model_version.html",
        project=info,
        model=found,
        version=version,
        layout=layout,
        upstream=graph.get("edges", []),
        nodes={n["id"]: n for n in up_nodes + down_nodes},
        labels={n["id"]: node_label(n) for n in up_nodes + down_nodes},
        downstream=down_nodes,
    )


@router.get("/projects/{project}/models-lineage")
async def dataset_lineage(
    request: Request, api: Api, project: str, dataset: str = "", version: int | None = None
) -> Response:
    """The other way round: the model versions trained on a dataset (version)."""
    await signed_in(request, api)
    info = await api.read(f"/api/v1/projects/{seg(project)}")
    page = None
    if dataset:
        page = await api.read(
            f"/api/v1/projects/{seg(project)}/models/lineage",
            dataset=dataset[:200],
            version=version,
            limit=100,
        )
    return render(
        request, "models_lineage.html", project=info, dataset=dataset, version=version, page=page
    )


@router.get("/projects/{project}/models/{model}/aliases/{alias}")
async def alias_page(
    request: Request, api: Api, project: str, model: str, alias: str, at: str = "", offset: int = 0
) -> Response:
    return await _alias_page_view(request, api, project, model, alias, at, offset)


async def _alias_page_view(
    request: Request,
    api: Api,
    project: str,
    model: str,
    alias: str,
    at: str = "",
    offset: int = 0,
    error: str | None = None,
) -> Response:
    await signed_in(request, api)
    info, found = await _project_and_model(api, project, model)
    path = f"{_base(project, model)}/aliases/{seg(alias)}"
    current = await optional(api, path)
    as_of = None
    as_of_error = None
    if at:
        response = await api.request("GET", path, params={"at": at[:64]})
        if response.status_code == 200:
            as_of = response.json()
        elif response.status_code in (400, 404, 422):
            as_of_error = problem_text(response)
        else:
            raise ApiFailed.from_response(response)
    history = await optional(api, f"{path}/history", limit=50, offset=max(offset, 0))
    if current is None and not history:
        raise NotFoundPage
    return render(
        request,
        "model_alias.html",
        project=info,
        model=found,
        alias=alias,
        current=current,
        history=history or {"items": [], "total": 0, "limit": 50, "offset": 0},
        at=at,
        as_of=as_of,
        as_of_error=as_of_error,
        can_write=info.get("my_role") in ("owner", "editor"),
        error=error,
    )


async def _alias_write(
    request: Request,
    api: Any,
    project: str,
    model: str,
    alias: str,
    method: str,
    suffix: str,
    body: dict[str, Any],
) -> Response:
    path = f"{_base(project, model)}/aliases/{seg(alias)}{suffix}"
    response = await api.request(method, path, json=body)
    if response.status_code == 404:
        raise NotFoundPage
    if response.status_code >= 400:
        # The alias page again, with the API's reason (a policy refusal, a forbidden role).
        return await _alias_page_view(
            request, api, project, model, alias, error=problem_text(response)
        )
    return redirect(f"{UI}/projects/{seg(project)}/models/{seg(model)}/aliases/{seg(alias)}")


@router.post("/projects/{project}/models/{model}/aliases")
async def move_alias(
    request: Request,
    api: Api,
    project: str,
    model: str,
    alias: Annotated[str, Form(max_length=63)] = "",
    version: Annotated[str, Form(max_length=12)] = "",
    reason: Annotated[str, Form(max_length=1000)] = "",
    csrf: CsrfField = None,
) -> Response:
    """Points an alias (new or existing) at a version."""
    check_csrf(request, csrf)
    name = alias.strip()
    if not name or not version.strip().isdigit():
        return await _model_page_view(
            request,
            api,
            project,
            model,
            error="Name the alias and the version number to move it to",
        )
    body = {"version": int(version), "reason": reason}
    return await _alias_write(request, api, project, model, name, "PUT", "", body)


@router.post("/projects/{project}/models/{model}/aliases/{alias}/rollback")
async def rollback_alias(
    request: Request,
    api: Api,
    project: str,
    model: str,
    alias: str,
    reason: Annotated[str, Form(max_length=1000)] = "",
    csrf: CsrfField = None,
) -> Response:
    check_csrf(request, csrf)
    return await _alias_write(
        request, api, project, model, alias, "POST", "/rollback", {"reason": reason}
    )
