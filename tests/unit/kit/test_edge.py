"""Edge rules are read off a route's dependencies (kit.edge), for the gateway."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute

from armillary.kit import edge
from armillary.kit.authz import (
    Caller,
    project_permission,
    refuse_job_tokens,
    require_platform_role,
)
from armillary.kit.edge import TASK_ROUTE, Access, EdgeRule, edge_rule

router = APIRouter()


@router.get("/open")
async def open_route() -> None: ...


@router.get("/me")
async def me(caller: Caller) -> None: ...


@router.get("/admin", dependencies=[Depends(require_platform_role())])
async def admin() -> None: ...


@router.post("/projects", dependencies=[Depends(require_platform_role("data_scientist"))])
async def create_project() -> None: ...


@router.get("/p/{project}/things", dependencies=[Depends(project_permission("project:read"))])
async def things(project: str) -> None: ...


@router.delete("/p/{project}", dependencies=[Depends(project_permission("project:delete"))])
async def delete_project(project: str) -> None: ...


@router.get("/jobs/{job_id}", dependencies=[TASK_ROUTE])
async def job(job_id: str, caller: Caller) -> None: ...


@router.post("/jobs/{job_id}/password", dependencies=[TASK_ROUTE, Depends(refuse_job_tokens("x"))])
async def both(job_id: str) -> None: ...


@edge.mark(access=Access.API_KEY_OR_BEARER)
async def key_or_token() -> None: ...


@router.post("/predict", dependencies=[Depends(key_or_token)])
async def predict() -> None: ...


def _rules() -> dict[str, EdgeRule]:
    return {r.path: edge_rule(r) for r in router.routes if isinstance(r, APIRoute)}


def test_rules_follow_the_dependencies() -> None:
    rules = _rules()
    assert rules["/open"] == EdgeRule(Access.PUBLIC)
    assert rules["/me"] == EdgeRule(Access.BEARER)
    assert rules["/admin"] == EdgeRule(Access.BEARER, admin_only=True)
    assert rules["/projects"] == EdgeRule(Access.BEARER)
    assert rules["/p/{project}/things"] == EdgeRule(Access.BEARER, job_tokens=True)
    assert rules["/jobs/{job_id}"] == EdgeRule(Access.BEARER, job_tokens=True)
    assert rules["/predict"] == EdgeRule(Access.API_KEY_OR_BEARER)


def test_a_refusal_of_job_tokens_wins_over_a_task_route_mark() -> None:
    rules = _rules()
    assert rules["/jobs/{job_id}/password"] == EdgeRule(Access.BEARER)
    # An action no job token may hold: refused at the edge too.
    assert rules["/p/{project}"] == EdgeRule(Access.BEARER)
