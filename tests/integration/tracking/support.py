"""Calling the tracking service as MLflow's client does, and the platform it runs in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from tests.conftest import Api, auth

API = "api/2.0/mlflow"


@dataclass
class Mlflow:
    """MLflow's REST API of one project, with one caller's token."""

    client: httpx.AsyncClient
    project: str
    token: str

    def url(self, path: str, project: str | None = None) -> str:
        return f"/mlflow/{project or self.project}/{API}/{path}"

    async def post(self, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
        return await self.client.post(
            self.url(path, kw.get("project")), json=body, headers=auth(self.token)
        )

    async def get(self, path: str, params: dict[str, Any], **kw: Any) -> httpx.Response:
        return await self.client.get(
            self.url(path, kw.get("project")), params=params, headers=auth(self.token)
        )

    async def ok(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        call = self.post if method == "POST" else self.get
        response = await call(path, body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def experiment(self, name: str) -> str:
        return str((await self.ok("POST", "experiments/create", {"name": name}))["experiment_id"])

    async def run(self, experiment_id: str, **fields: Any) -> dict[str, Any]:
        body = {"experiment_id": experiment_id, "start_time": 1_000, **fields}
        return dict((await self.ok("POST", "runs/create", body))["run"])

    def as_user(self, token: str) -> Mlflow:
        return Mlflow(self.client, self.project, token)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """MLflow's error shape (the status and ``error_code`` its server gives), in problem+json."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["error_code"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]


async def editor_in_new_project(api: Api) -> tuple[str, str]:
    """A data scientist and the project they own: (token, project slug)."""
    admin = await api.admin_token()
    user = await api.create_user(admin, "data_scientist")
    project = await api.create_project(user["token"])
    return str(user["token"]), str(project["slug"])
