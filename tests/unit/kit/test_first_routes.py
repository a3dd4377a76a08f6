"""Hot routes (kit.first_routes): matched first, answered as the original, left out of the
OpenAPI document, and refused when another route could match their path."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute

from armillary.kit.first_routes import AmbiguousHotRoute, match_first


def _guard(request: Request) -> None:
    if request.headers.get("x-key") != "good":
        raise HTTPException(401, "no")


def _routers() -> list[APIRouter]:
    others = APIRouter(prefix="/api/v1/projects/{project}")

    @others.get("/deployments/{deployment}/predict", name="deployments.read")
    async def read(project: str, deployment: str) -> dict[str, str]:
        return {"read": deployment}

    @others.get("/items/{item}")
    async def item(project: str, item: str) -> dict[str, str]:
        return {"item": item}

    hot = APIRouter(prefix="/api/v1/projects/{project}/deployments", dependencies=[Depends(_guard)])

    @hot.post("/{deployment}/predict", name="deployments.predict")
    async def predict(project: str, deployment: str, request: Request) -> dict[str, str]:
        route = request.scope["route"]
        return {"project": project, "deployment": deployment, "route": route.path}

    return [others, hot]


def _app(hot: tuple[str, ...]) -> FastAPI:
    app = FastAPI()
    routers = _routers()
    for router in routers:
        app.include_router(router)
    match_first(app, routers, hot)
    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_the_copy_is_first_and_hidden_from_the_openapi_document() -> None:
    plain, lean = _app(()), _app(("deployments.predict", "not.served.here"))
    first = lean.router.routes[0]
    assert isinstance(first, APIRoute)
    assert first.name == "deployments.predict"
    assert first.include_in_schema is False
    assert lean.openapi() == plain.openapi()


async def test_the_copy_answers_like_the_original_dependencies_included() -> None:
    url = "/api/v1/projects/p/deployments/d/predict"
    for app in (_app(()), _app(("deployments.predict",))):
        async with _client(app) as client:
            ok = await client.post(url, headers={"x-key": "good"})
            assert ok.json() == {
                "project": "p",
                "deployment": "d",
                "route": "/api/v1/projects/{project}/deployments/{deployment}/predict",
            }
            # The router's dependency runs on the copy too.
            refused = await client.post(url)
            assert refused.status_code == 401
            # Other methods and paths still reach their own routes.
            assert (await client.get(url)).json() == {"read": "d"}
            assert (await client.get("/api/v1/projects/p/items/i")).json() == {"item": "i"}
            assert (await client.put(url)).status_code == 405


def test_a_hot_route_another_route_could_match_is_refused() -> None:
    catch_all = APIRouter()

    @catch_all.post("/api/v1/projects/{project}/deployments/{rest:path}")
    async def anything(project: str, rest: str) -> None:
        return None

    app = FastAPI()
    routers = [catch_all, *_routers()]
    for router in routers:
        app.include_router(router)
    with pytest.raises(AmbiguousHotRoute):
        match_first(app, routers, ("deployments.predict",))
