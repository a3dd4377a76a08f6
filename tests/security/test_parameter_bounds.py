"""Every integer a client puts in a query or a path is bounded: a huge value is a 422
problem, never a database overflow (500). Found by a fuzzer on the list routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from tests.conftest import Api, auth, client_for, make_settings

from armillary.app import create_app
from armillary.kit.settings import Settings
from armillary.migrations.runner import upgrade

HUGE = "9223372036854775808"  # 2**63: past every SQL integer type


def _integer_schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    options = [schema, *schema.get("anyOf", [])]
    return [option for option in options if option.get("type") == "integer"]


def test_every_integer_parameter_has_a_maximum(app: FastAPI) -> None:
    unbounded = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                for schema in _integer_schemas(parameter.get("schema", {})):
                    if "maximum" not in schema:
                        unbounded.append(f"{method.upper()} {path} {parameter['name']}")
    assert unbounded == []


@pytest.mark.parametrize(
    "route",
    [
        "/api/v1/projects?offset={huge}",
        "/api/v1/audit?offset={huge}",
        "/api/v1/users?offset={huge}",
        "/api/v1/projects/{project}/datasets?offset={huge}",
        "/api/v1/projects/{project}/workflows?offset={huge}",
        "/api/v1/projects/{project}/code?offset={huge}",
        "/api/v1/projects/{project}/jobs?offset={huge}",
        "/api/v1/projects/{project}/datasets/some-data/versions/{huge}",
        "/api/v1/projects/{project}/workflows/some-flow/versions/{huge}",
        "/api/v1/projects/{project}/models/some-model/versions/{huge}",
        "/api/v1/jobs/00000000-0000-0000-0000-000000000000/tasks/t/logs?attempt={huge}",
    ],
)
async def test_a_huge_integer_is_a_422_problem(api: Api, route: str) -> None:
    token = await api.admin_token()
    project = await api.create_project(token)
    url = route.format(project=project["slug"], huge=HUGE)
    response = await api.client.get(url, headers=auth(token))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["type"] == "less_than_equal"


async def test_the_largest_offset_is_answered(api: Api) -> None:
    """The bound itself still fits the database: the page is empty, not an error."""
    token = await api.admin_token()
    response = await api.client.get(f"/api/v1/projects?offset={2**31 - 1}", headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "home", database_url=None, redis_url=None)
    upgrade(settings)  # outside the event loop: Alembic runs its own
    return settings


@pytest.mark.sqlite
async def test_the_bounds_hold_on_sqlite(sqlite_settings: Settings) -> None:
    """The embedded shape: the largest accepted values reach SQLite and answer, the next is
    refused before it."""
    app = create_app(sqlite_settings, configure_logs=False)
    async with LifespanManager(app, startup_timeout=60), client_for(app) as client:
        api = Api(client)
        token = await api.admin_token()
        project = (await api.create_project(token))["slug"]
        largest = 2**31 - 1
        for url, status in [
            (f"/api/v1/projects/{project}/datasets?offset={largest}", 200),
            (f"/api/v1/projects/{project}/workflows/x/versions/{largest}", 404),
            (f"/api/v1/projects/{project}/datasets?offset={largest + 1}", 422),
            (f"/api/v1/projects/{project}/workflows/x/versions/{HUGE}", 422),
        ]:
            response = await client.get(url, headers=auth(token))
            assert response.status_code == status, (url, response.text)


@pytest.mark.parametrize("parent", [HUGE, str(2**31), "²"])
async def test_an_upload_parent_out_of_bounds_is_a_400_problem(api: Api, parent: str) -> None:
    """The multipart ``parent`` field: past every version number, or a digit that is not
    ASCII, is refused with the rule (it was a 500: an overflow, or int() failing)."""
    token = await api.admin_token()
    slug = (await api.create_project(token))["slug"]
    created = await api.client.post(
        f"/api/v1/projects/{slug}/datasets", json={"name": "d"}, headers=auth(token)
    )
    assert created.status_code == 201, created.text
    response = await api.client.post(
        f"/api/v1/projects/{slug}/datasets/d/versions",
        files={"file": ("a.csv", b"a,b\n1,2\n")},
        data={"parent": parent},
        headers=auth(token),
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "'parent'" in response.json()["detail"]


@pytest.mark.parametrize("versions", ["²", HUGE, f"1,{2**31}"])
async def test_compared_version_numbers_out_of_bounds_are_a_400(api: Api, versions: str) -> None:
    """``?versions=`` of the model comparison, parsed by hand: a non-ASCII digit failed in
    int() (500), a huge number would overflow the database."""
    token = await api.admin_token()
    slug = (await api.create_project(token))["slug"]
    response = await api.client.get(
        f"/api/v1/projects/{slug}/models/m/compare",
        params={"versions": versions},
        headers=auth(token),
    )
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("versions:")


async def test_a_huge_version_in_a_body_is_a_422(api: Api) -> None:
    """Alias and deployment bodies name model versions: bounded like a path's (a huge one
    overflowed the lookup: 500, and 503 through the registry client)."""
    token = await api.admin_token()
    slug = (await api.create_project(token))["slug"]
    base = f"/api/v1/projects/{slug}"
    created = await api.client.post(f"{base}/models", json={"name": "m"}, headers=auth(token))
    assert created.status_code == 201, created.text
    alias = await api.client.put(
        f"{base}/models/m/aliases/champion", json={"version": int(HUGE)}, headers=auth(token)
    )
    assert alias.status_code == 422, alias.text
    variant = {"name": "a", "model": "m", "version": int(HUGE), "weight": 100}
    deployment = await api.client.post(
        f"{base}/deployments", json={"name": "d", "variants": [variant]}, headers=auth(token)
    )
    assert deployment.status_code == 422, deployment.text
