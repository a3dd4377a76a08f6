"""The workflows service's typed client, as other services use it: in process over the
internal app, and over HTTP; the caller's own token decides what it sees."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from tests.conftest import Api, auth
from tests.integration.workflows.engine import serve
from tests.ports import free_port

from armillary.kit.errors import ServiceUnavailable, Unauthorized
from armillary.workflows.app import create_internal_app
from armillary.workflows.client import WorkflowsClient

SPEC: dict[str, Any] = {
    "name": "pair",
    "tasks": [{"name": "x", "type": "noop"}, {"name": "y", "type": "noop", "needs": ["x"]}],
}


async def started_job(api: Api, token: str, project: str) -> dict[str, Any]:
    applied = await api.client.post(
        f"/api/v1/projects/{project}/workflows", json=SPEC, headers=auth(token)
    )
    assert applied.status_code == 201, applied.text
    response = await api.client.post(
        f"/api/v1/projects/{project}/workflows/pair/jobs", json={}, headers=auth(token)
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def job_token(app: FastAPI, user: dict[str, Any], project_id: str, job_id: str) -> str:
    issued = await app.state.runtime.access.directory.issue_job_token(
        user_id=uuid.UUID(user["id"]),
        project_id=uuid.UUID(project_id),
        job_id=uuid.UUID(job_id),
        ttl_seconds=300,
    )
    return str(issued.token)


async def test_job_in_process_is_what_the_caller_may_see(app: FastAPI, api: Api) -> None:
    admin = await api.admin_token()
    owner = await api.create_user(admin, "data_scientist")
    outsider = await api.create_user(admin, "data_scientist")
    project = await api.create_project(owner["token"])
    elsewhere = await api.create_project(outsider["token"])
    job = await started_job(api, owner["token"], project["slug"])
    foreign = await started_job(api, outsider["token"], elsewhere["slug"])

    client = WorkflowsClient.in_process(create_internal_app(app.state.runtime))
    try:
        seen = await client.job(owner["token"], job["id"])
        assert seen is not None
        assert seen["id"] == job["id"]
        assert seen["workflow"] == "pair"
        assert [t["name"] for t in seen["tasks"]] == ["x", "y"]
        assert (
            seen
            == (
                await api.client.get(f"/api/v1/jobs/{job['id']}", headers=auth(owner["token"]))
            ).json()
        )

        # Not a member, unknown, malformed: all "not visible".
        assert await client.job(outsider["token"], job["id"]) is None
        assert await client.job(owner["token"], str(uuid.uuid4())) is None
        assert await client.job(owner["token"], "../users") is None

        # A job token sees its own project's jobs, and no other project's.
        token = await job_token(app, owner, project["id"], job["id"])
        assert (await client.job(token, job["id"]) or {}).get("id") == job["id"]
        assert await client.job(token, foreign["id"]) is None

        with pytest.raises(Unauthorized):
            await client.job("not-a-token", job["id"])
    finally:
        await client.aclose()


async def test_job_over_http(app: FastAPI, api: Api) -> None:
    admin = await api.admin_token()
    owner = await api.create_user(admin, "data_scientist")
    project = await api.create_project(owner["token"])
    job = await started_job(api, owner["token"], project["slug"])

    async for base_url in serve(app, free_port()):
        client = WorkflowsClient.over_http(base_url)
        try:
            seen = await client.job(owner["token"], job["id"])
            assert seen is not None
            assert seen["status"] == "queued"
            assert await client.job(owner["token"], str(uuid.uuid4())) is None
        finally:
            await client.aclose()

    gone = WorkflowsClient.over_http(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(ServiceUnavailable):
            await gone.job(owner["token"], job["id"])
    finally:
        await gone.aclose()
