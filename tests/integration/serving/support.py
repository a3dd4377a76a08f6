"""Helpers for the serving tests: a project with registered model versions, deployments."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from tests.conftest import Api, auth
from tests.integration.registry.models_for_tests import onnx_bytes, skops_bytes

from armillary.serving.components import Serving, serving_of

PROBLEM = "application/problem+json"


@dataclass
class Platform:
    app: FastAPI
    client: httpx.AsyncClient
    api: Api = field(init=False)

    def __post_init__(self) -> None:
        self.api = Api(self.client)

    @property
    def serving(self) -> Serving:
        return serving_of(self.app.state.runtime)


@dataclass
class Scene:
    """A data scientist's project with a registered model ``churn``."""

    platform: Platform
    user: dict[str, Any]
    project: dict[str, Any]
    model: str = "churn"

    @classmethod
    async def create(cls, platform: Platform) -> Scene:
        api = platform.api
        user = await api.create_user(await api.admin_token(), "data_scientist")
        project = await api.create_project(user["token"])
        found = cls(platform, user, project)
        created = await platform.client.post(
            f"{found.models}", json={"name": found.model}, headers=auth(found.token)
        )
        assert created.status_code == 201, created.text
        return found

    @property
    def token(self) -> str:
        return str(self.user["token"])

    @property
    def client(self) -> httpx.AsyncClient:
        return self.platform.client

    @property
    def slug(self) -> str:
        return str(self.project["slug"])

    @property
    def project_id(self) -> uuid.UUID:
        return uuid.UUID(self.project["id"])

    @property
    def models(self) -> str:
        return f"/api/v1/projects/{self.slug}/models"

    @property
    def base(self) -> str:
        return f"/api/v1/projects/{self.slug}/deployments"

    async def upload_version(self, kind: str, model: str | None = None) -> dict[str, Any]:
        data = onnx_bytes() if kind == "onnx" else skops_bytes()
        response = await self.client.post(
            f"{self.models}/{model or self.model}/versions/upload",
            files={"file": (f"model.{kind}", data, "application/octet-stream")},
            headers=auth(self.token),
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def set_alias(self, alias: str, version: int, model: str | None = None) -> None:
        response = await self.client.put(
            f"{self.models}/{model or self.model}/aliases/{alias}",
            json={"version": version, "reason": "test"},
            headers=auth(self.token),
        )
        assert response.status_code == 200, response.text

    async def member(self, role: str, platform_role: str = "data_scientist") -> dict[str, Any]:
        api = self.platform.api
        user = await api.create_user(await api.admin_token(), platform_role)
        response = await self.client.put(
            f"/api/v1/projects/{self.slug}/members/{user['id']}",
            json={"role": role},
            headers=auth(self.token),
        )
        assert response.status_code == 200, response.text
        return user

    async def outsider(self, platform_role: str = "data_scientist") -> dict[str, Any]:
        api = self.platform.api
        return await api.create_user(await api.admin_token(), platform_role)

    async def job_token(self, task_type: str | None = "deploy") -> str:
        """A job token as a task of ``task_type`` gets it (a deploy task may change
        deployments; other task types may not)."""
        directory = self.platform.app.state.runtime.access.directory
        issued = await directory.issue_job_token(
            user_id=uuid.UUID(self.user["id"]),
            project_id=self.project_id,
            job_id=uuid.uuid4(),
            ttl_seconds=600,
            task_type=task_type,
        )
        return str(issued.token)

    async def deploy(
        self, name: str = "churn-api", token: str | None = None, **overrides: Any
    ) -> httpx.Response:
        return await self.client.post(
            self.base, json=deployment_body(name, **overrides), headers=auth(token or self.token)
        )

    async def deployed(self, name: str = "churn-api", **overrides: Any) -> dict[str, Any]:
        response = await self.deploy(name, **overrides)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def new_key(self, deployment: str = "churn-api", name: str = "app") -> dict[str, Any]:
        response = await self.client.post(
            f"{self.base}/{deployment}/keys", json={"name": name}, headers=auth(self.token)
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def caller_url(self, deployment: str = "churn-api") -> str:
        return f"/test/projects/{self.slug}/deployments/{deployment}/caller"


def variants(*specs: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": name, "model": "churn", **spec} for name, spec in specs]


CHAMPION_CHALLENGER = variants(
    ("champion", {"alias": "champion", "weight": 90}),
    ("challenger", {"version": 2, "weight": 10}),
)


def deployment_body(name: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "description": "churn scoring",
        "routing": {"mode": "sticky"},
        "variants": CHAMPION_CHALLENGER,
        "reason": "first rollout",
    }
    body.update(overrides)
    return body


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 problem with ``status`` and no internals."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = dict(response.json())
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    for leak in ("Traceback", 'File "', "SELECT ", "/tmp"):
        assert leak not in response.text, response.text
    assert not re.search(r"projects/[0-9a-f]{8}-", response.text), response.text
    return body
