"""The lean handler of a hot route (kit.lean_handler): used only for routes that take plain str
path parameters and the request, with async request-only dependencies, returning a Response;
it answers as FastAPI's handler does, dependencies first."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse, Response

from armillary.kit.first_routes import match_first
from armillary.kit.lean_handler import lean_handler

calls: list[str] = []


async def _guard(request: Request) -> None:
    calls.append("guard")
    if request.headers.get("x-key") != "good":
        raise HTTPException(401, "no")


def _sync_guard(request: Request) -> None:
    calls.append("sync guard")


async def _nested(guard: Annotated[None, Depends(_guard)]) -> None:
    return None


def _route(router: APIRouter) -> APIRoute:
    route = router.routes[-1]
    assert isinstance(route, APIRoute)
    return route


def _lean_router() -> APIRouter:
    router = APIRouter(prefix="/p/{project}", dependencies=[Depends(_guard)])

    @router.post("/d/{deployment}/predict", name="hot")
    async def predict(project: str, deployment: str, request: Request) -> Response:
        calls.append("endpoint")
        return JSONResponse({"project": project, "deployment": deployment})

    return router


def test_a_request_only_route_gets_the_lean_handler() -> None:
    assert lean_handler(_route(_lean_router())) is not None


def _variants() -> dict[str, APIRouter]:
    routers: dict[str, APIRouter] = {}

    query = routers["query parameter"] = APIRouter()

    @query.post("/q/{name}")
    async def with_query(name: str, request: Request, limit: int = 1) -> Response:
        return Response()

    constrained = routers["constrained path parameter"] = APIRouter()

    @constrained.post("/c/{name}")
    async def bounded(name: Annotated[str, PathParam(max_length=3)], request: Request) -> Response:
        return Response()

    returns_dict = routers["returns a dict"] = APIRouter()

    @returns_dict.post("/r/{name}")
    async def plain(name: str, request: Request) -> dict[str, Any]:
        return {}

    sync = routers["sync dependency"] = APIRouter(dependencies=[Depends(_sync_guard)])

    @sync.post("/s/{name}")
    async def guarded(name: str, request: Request) -> Response:
        return Response()

    nested = routers["nested dependency"] = APIRouter(dependencies=[Depends(_nested)])

    @nested.post("/n/{name}")
    async def deep(name: str, request: Request) -> Response:
        return Response()

    body = routers["body parameter"] = APIRouter()

    @body.post("/b/{name}")
    async def with_body(name: str, request: Request, payload: dict[str, Any]) -> Response:
        return Response()

    return routers


@pytest.mark.parametrize("case", list(_variants()))
def test_other_routes_keep_fastapis_handler(case: str) -> None:
    assert lean_handler(_route(_variants()[case])) is None


async def test_the_lean_handler_answers_like_fastapis() -> None:
    url = "/p/a/d/b/predict"
    answers = []
    for hot in ((), ("hot",)):
        app = FastAPI()
        router = _lean_router()
        app.include_router(router)
        match_first(app, [router], hot)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            calls.clear()
            ok = await client.post(url, headers={"x-key": "good"})
            assert calls == ["guard", "endpoint"]
            calls.clear()
            refused = await client.post(url)
            assert calls == ["guard"]  # the endpoint never runs for a refused caller
            wrong_method = await client.get(url)
        answers.append(
            [(r.status_code, r.json(), r.headers.get("allow")) for r in (ok, refused, wrong_method)]
        )
    assert answers[0] == answers[1]
    assert answers[0][0] == (200, {"project": "a", "deployment": "b"}, None)
