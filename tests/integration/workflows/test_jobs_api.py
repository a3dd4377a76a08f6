"""Jobs over HTTP: start (parameters, idempotency, versions), history, detail, cancel."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from tests.conftest import Api, auth

from armillary.contracts.events import AuditEntry, JobStatusChanged, TaskRunStatusChanged
from armillary.kit.db import utcnow
from armillary.kit.events import OutboxEvent
from armillary.kit.runtime import Runtime
from armillary.workflows.jobs import transitions
from armillary.workflows.jobs.models import Job, JobState, TaskState

SPEC: dict[str, Any] = {
    "name": "nightly",
    "parameters": {"n": 2, "label": "x"},
    "tasks": [
        {"name": "a", "type": "sleep", "params": {"seconds": "${params.n}"}, "retries": 2},
        {"name": "b", "type": "noop", "needs": ["a"]},
        {"name": "c", "type": "noop", "needs": ["a"]},
    ],
}


async def setup(api: Api) -> tuple[str, str, str]:
    """(admin token, editor token, project slug) with the ``nightly`` workflow applied."""
    admin = await api.admin_token()
    editor = await api.create_user(admin, "data_scientist")
    slug = (await api.create_project(editor["token"]))["slug"]
    applied = await api.client.post(
        f"/api/v1/projects/{slug}/workflows", json=SPEC, headers=auth(editor["token"])
    )
    assert applied.status_code == 201, applied.text
    return admin, editor["token"], slug


def jobs_url(slug: str, workflow: str = "nightly") -> str:
    return f"/api/v1/projects/{slug}/workflows/{workflow}/jobs"


async def outbox(app: FastAPI, event_type: str) -> list[dict[str, Any]]:
    runtime: Runtime = app.state.runtime
    async with runtime.db.sessionmaker() as session:
        rows = await session.scalars(select(OutboxEvent).where(OutboxEvent.type == event_type))
        return [row.payload for row in rows]


async def test_start_job_records_version_parameters_and_tasks(api: Api, app: FastAPI) -> None:
    _admin, token, slug = await setup(api)
    started = await api.client.post(
        jobs_url(slug), json={"parameters": {"n": 5}}, headers=auth(token)
    )
    assert started.status_code == 201, started.text
    job = started.json()
    assert started.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["workflow"] == "nightly"
    assert job["version"] == 1
    assert job["status"] == "queued"
    assert job["trigger"] == "api"
    assert job["parameters"] == {"n": 5, "label": "x"}  # the default filled in
    assert [(t["name"], t["status"], t["attempt"]) for t in job["tasks"]] == [
        ("a", "pending", 0),
        ("b", "pending", 0),
        ("c", "pending", 0),
    ]
    assert job["tasks"][0]["max_attempts"] == 3
    assert job["tasks"][1]["needs"] == ["a"]

    defaults = await api.client.post(jobs_url(slug), json={}, headers=auth(token))
    assert defaults.status_code == 201
    assert defaults.json()["parameters"] == {"n": 2, "label": "x"}

    # A new version after the job: the job still shows the version it ran.
    v2 = await api.client.post(
        f"/api/v1/projects/{slug}/workflows",
        json={**SPEC, "description": "v2"},
        headers=auth(token),
    )
    assert v2.json()["version"]["number"] == 2
    shown = await api.client.get(f"/api/v1/jobs/{job['id']}", headers=auth(token))
    assert shown.status_code == 200
    assert shown.json()["version"] == 1
    cli = await api.client.post(
        jobs_url(slug), json={}, headers={**auth(token), "X-Armillary-Trigger": "cli"}
    )
    assert cli.json()["version"] == 2
    assert cli.json()["trigger"] == "cli"

    created = [e for e in await outbox(app, AuditEntry.TYPE) if e["action"] == "jobs.create"]
    assert {e["resource_id"] for e in created} >= {job["id"], cli.json()["id"]}


async def test_unknown_parameter_is_refused(api: Api) -> None:
    _admin, token, slug = await setup(api)
    response = await api.client.post(
        jobs_url(slug), json={"parameters": {"n": 1, "bogus": 2}}, headers=auth(token)
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["path"] == "parameters.bogus"
    listed = await api.client.get(f"/api/v1/projects/{slug}/jobs", headers=auth(token))
    assert listed.json()["total"] == 0
    missing = await api.client.post(jobs_url(slug, "nope"), json={}, headers=auth(token))
    assert missing.status_code == 404


async def test_idempotency_key_returns_the_same_job(api: Api) -> None:
    _admin, token, slug = await setup(api)
    await api.client.post(
        f"/api/v1/projects/{slug}/workflows", json={**SPEC, "name": "other"}, headers=auth(token)
    )
    key = {**auth(token), "Idempotency-Key": "run-42"}
    first = await api.client.post(jobs_url(slug), json={"parameters": {"n": 3}}, headers=key)
    assert first.status_code == 201
    again = await api.client.post(jobs_url(slug), json={"parameters": {"n": 9}}, headers=key)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["parameters"]["n"] == 3
    assert len(again.json()["tasks"]) == 3
    fresh = await api.client.post(
        jobs_url(slug), json={}, headers={**auth(token), "Idempotency-Key": "run-43"}
    )
    assert fresh.status_code == 201
    assert fresh.json()["id"] != first.json()["id"]
    # Keys are per workflow.
    elsewhere = await api.client.post(jobs_url(slug, "other"), json={}, headers=key)
    assert elsewhere.status_code == 201
    assert elsewhere.json()["id"] != first.json()["id"]
    no_key = [await api.client.post(jobs_url(slug), json={}, headers=auth(token)) for _ in "ab"]
    assert no_key[0].json()["id"] != no_key[1].json()["id"]
    listed = await api.client.get(f"/api/v1/projects/{slug}/jobs", headers=auth(token))
    assert listed.json()["total"] == 5


async def test_history_filters_and_pagination(api: Api) -> None:
    _admin, token, slug = await setup(api)
    await api.client.post(
        f"/api/v1/projects/{slug}/workflows", json={**SPEC, "name": "other"}, headers=auth(token)
    )
    ids = []
    for workflow, trigger in [("nightly", "api"), ("other", "cli"), ("nightly", "cli")]:
        response = await api.client.post(
            jobs_url(slug, workflow),
            json={},
            headers={**auth(token), "X-Armillary-Trigger": trigger},
        )
        ids.append(response.json()["id"])
    cancelled = await api.client.post(f"/api/v1/jobs/{ids[0]}/cancel", headers=auth(token))
    assert cancelled.status_code == 200

    base = f"/api/v1/projects/{slug}/jobs"

    async def listed(**params: Any) -> dict[str, Any]:
        response = await api.client.get(base, params=params, headers=auth(token))
        assert response.status_code == 200, response.text
        return dict(response.json())

    everything = await listed()
    assert [j["id"] for j in everything["items"]] == list(reversed(ids))  # newest first
    assert [j["id"] for j in (await listed(status="cancelled"))["items"]] == [ids[0]]
    assert [j["id"] for j in (await listed(status="queued"))["items"]] == [ids[2], ids[1]]
    assert [j["id"] for j in (await listed(workflow="other"))["items"]] == [ids[1]]
    assert [j["id"] for j in (await listed(trigger="cli"))["items"]] == [ids[2], ids[1]]
    both = await listed(trigger="cli", workflow="nightly")
    assert [j["id"] for j in both["items"]] == [ids[2]]
    assert (await listed(workflow="missing"))["total"] == 0

    first_at = everything["items"][-1]["created_at"]
    last_at = everything["items"][0]["created_at"]
    assert [j["id"] for j in (await listed(since=last_at))["items"]] == [ids[2]]
    assert ids[2] not in [j["id"] for j in (await listed(until=last_at))["items"]]
    assert (await listed(since=first_at, until=last_at))["total"] == 2

    page = await listed(limit=2, offset=0)
    assert page["total"] == 3
    assert [j["id"] for j in page["items"]] == [ids[2], ids[1]]
    page = await listed(limit=2, offset=2)
    assert [j["id"] for j in page["items"]] == [ids[0]]

    bad = await api.client.get(base, params={"status": "bogus"}, headers=auth(token))
    assert bad.status_code == 422


async def test_detail_for_members_only(api: Api) -> None:
    admin, token, slug = await setup(api)
    job = (await api.client.post(jobs_url(slug), json={}, headers=auth(token))).json()
    outsider = await api.create_user(admin, "data_scientist")

    shown = await api.client.get(f"/api/v1/jobs/{job['id']}", headers=auth(token))
    assert shown.status_code == 200
    body = shown.json()
    assert body["workflow"] == "nightly"
    assert body["version"] == 1
    assert {"created_at", "started_at", "finished_at"} <= body.keys()
    task = body["tasks"][0]
    assert {"status", "attempt", "started_at", "finished_at", "error", "outputs"} <= task.keys()

    hidden = await api.client.get(f"/api/v1/jobs/{job['id']}", headers=auth(outsider["token"]))
    unknown = await api.client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=auth(token))
    garbage = await api.client.get("/api/v1/jobs/not-a-job", headers=auth(token))
    for response in (hidden, unknown, garbage):
        assert response.status_code == 404
        assert response.json()["detail"] == "Job not found"
    cancel = await api.client.post(
        f"/api/v1/jobs/{job['id']}/cancel", headers=auth(outsider["token"])
    )
    assert cancel.status_code == 404
    outsider_list = await api.client.get(
        f"/api/v1/projects/{slug}/jobs", headers=auth(outsider["token"])
    )
    assert outsider_list.status_code == 404
    anonymous = await api.client.get(f"/api/v1/jobs/{job['id']}")
    assert anonymous.status_code == 401


async def test_viewer_reads_but_cannot_run_or_cancel(api: Api) -> None:
    admin, token, slug = await setup(api)
    viewer = await api.create_user(admin, "user")
    added = await api.client.put(
        f"/api/v1/projects/{slug}/members/{viewer['id']}",
        json={"role": "viewer"},
        headers=auth(token),
    )
    assert added.status_code in (200, 201), added.text
    job = (await api.client.post(jobs_url(slug), json={}, headers=auth(token))).json()
    vt = auth(viewer["token"])

    assert (await api.client.post(jobs_url(slug), json={}, headers=vt)).status_code == 403
    assert (
        await api.client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=vt)
    ).status_code == 403
    assert (await api.client.get(f"/api/v1/jobs/{job['id']}", headers=vt)).status_code == 200
    listed = await api.client.get(f"/api/v1/projects/{slug}/jobs", headers=vt)
    assert listed.json()["total"] == 1
    still = await api.client.get(f"/api/v1/jobs/{job['id']}", headers=vt)
    assert still.json()["status"] == "queued"


async def test_cancel_a_job_that_has_not_started(api: Api, app: FastAPI) -> None:
    _admin, token, slug = await setup(api)
    job = (await api.client.post(jobs_url(slug), json={}, headers=auth(token))).json()
    cancelled = await api.client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=auth(token))
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled"
    assert body["finished_at"] is not None
    assert {t["status"] for t in body["tasks"]} == {"cancelled"}

    again = await api.client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=auth(token))
    assert again.status_code == 409

    changes = [e for e in await outbox(app, JobStatusChanged.TYPE) if e["job_id"] == job["id"]]
    assert [(e["from_status"], e["to_status"]) for e in changes] == [("queued", "cancelled")]
    task_changes = await outbox(app, TaskRunStatusChanged.TYPE)
    assert len([e for e in task_changes if e["job_id"] == job["id"]]) == 3
    audited = [e for e in await outbox(app, AuditEntry.TYPE) if e["action"] == "jobs.cancel"]
    # The refused second cancel is audited too, as a failure.
    assert [(e["resource_id"], e["outcome"]) for e in audited if e["outcome"] == "success"] == [
        (job["id"], "success")
    ]


async def test_cancel_with_a_running_task_asks_the_executor(api: Api, app: FastAPI) -> None:
    _admin, token, slug = await setup(api)
    job_id = (await api.client.post(jobs_url(slug), json={}, headers=auth(token))).json()["id"]
    runtime: Runtime = app.state.runtime
    # Stand in for the scheduler: the job runs and task ``a`` holds a worker.
    async with runtime.db.unit_of_work() as session:
        job = await session.scalar(
            select(Job).where(Job.id == uuid.UUID(job_id)).options(selectinload(Job.task_runs))
        )
        assert job is not None
        await transitions.apply(session, job, JobState.RUNNING)
        first = job.task_runs[0]
        await transitions.apply(session, first, TaskState.QUEUED)
        await transitions.apply(session, first, TaskState.RUNNING, lease=("worker-1", utcnow()))

    response = await api.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth(token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "running"
    assert body["started_at"] is not None
    assert body["finished_at"] is None
    assert body["cancel_requested_at"] is not None
    assert [(t["name"], t["status"]) for t in body["tasks"]] == [
        ("a", "running"),
        ("b", "cancelled"),
        ("c", "cancelled"),
    ]
    assert body["tasks"][0]["attempt"] == 1


async def test_concurrent_requests_with_one_key_start_one_job(api: Api) -> None:
    _admin, token, slug = await setup(api)
    key = {**auth(token), "Idempotency-Key": "race"}
    responses = await asyncio.gather(
        *(api.client.post(jobs_url(slug), json={}, headers=key) for _ in range(4))
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 201]
    assert len({r.json()["id"] for r in responses}) == 1
    listed = await api.client.get(f"/api/v1/projects/{slug}/jobs", headers=auth(token))
    assert listed.json()["total"] == 1


async def test_a_jobs_tasks_are_listed_for_members_only(app: FastAPI, api: Api) -> None:
    admin = await api.admin_token()
    owner = await api.create_user(admin, "data_scientist")
    outsider = await api.create_user(admin, "data_scientist")
    project = (await api.create_project(owner["token"]))["slug"]
    response = await api.client.post(
        f"/api/v1/projects/{project}/workflows",
        json={
            "name": "two",
            "tasks": [{"name": "x", "type": "noop"}, {"name": "y", "type": "noop", "needs": ["x"]}],
        },
        headers=auth(owner["token"]),
    )
    assert response.status_code == 201, response.text
    job = (
        await api.client.post(
            f"/api/v1/projects/{project}/workflows/two/jobs", json={}, headers=auth(owner["token"])
        )
    ).json()
    tasks = await api.client.get(f"/api/v1/jobs/{job['id']}/tasks", headers=auth(owner["token"]))
    assert tasks.status_code == 200
    assert [(t["name"], t["status"], t["attempts"]) for t in tasks.json()] == [
        ("x", "pending", []),
        ("y", "pending", []),
    ]
    hidden = await api.client.get(
        f"/api/v1/jobs/{job['id']}/tasks", headers=auth(outsider["token"])
    )
    assert hidden.status_code == 404
