"""F6/F17 (item 4): a job token leaked through a task's log, as the attack used it. A viewer of
the project holding it cannot create workflows, run jobs, delete datasets, move aliases or
edit the project; it does what the task needs (read, write outputs, register, report
progress); it stops working when its attempt ends, loses its lease, or the job ends."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from tests.conftest import Api, auth

from armillary.kit.authz import JOB_TOKEN_ACTIONS, NEVER_FOR_JOB_TOKENS, job_token_actions
from armillary.kit.db import utcnow
from armillary.kit.errors import Conflict
from armillary.kit.runtime import Runtime
from armillary.workflows.execution import claims
from armillary.workflows.execution.protocol import AttemptResult, Outcome
from armillary.workflows.jobs import transitions
from armillary.workflows.jobs.models import Job, JobState, TaskRun
from armillary.workflows.scheduling import dispatch

SPEC: dict[str, Any] = {
    "name": "fit",
    "tasks": [
        {"name": "train", "type": "noop", "retries": 2},
        # The datasets the job names: its tokens may read `source` and write `outputs`.
        {"name": "load", "type": "ingest", "params": {"dataset": "source"}, "needs": ["train"]},
        {
            "name": "save",
            "type": "write_dataset",
            "params": {"input": "load", "dataset": "outputs"},
            "needs": ["load"],
        },
    ],
}


class Job_:
    """A job of a data scientist's project, its `train` task claimed as a worker would."""

    def __init__(self, app: FastAPI, api: Api) -> None:
        self.app = app
        self.api = api
        self.runtime: Runtime = app.state.runtime

    async def start(self) -> None:
        c = self.api.client
        admin = await self.api.admin_token()
        self.owner = await self.api.create_user(admin, "data_scientist")
        self.viewer = await self.api.create_user(admin, "data_scientist")
        self.project = await self.api.create_project(self.owner["token"])
        self.base = f"/api/v1/projects/{self.project['slug']}"
        added = await c.put(
            f"{self.base}/members/{self.viewer['id']}",
            json={"role": "viewer"},
            headers=auth(self.owner["token"]),
        )
        assert added.status_code in (200, 201), added.text
        for name in ("source", "kept"):
            dataset = await c.post(
                f"{self.base}/datasets", json={"name": name}, headers=self.owner_auth
            )
            assert dataset.status_code == 201, dataset.text
            version = await c.post(
                f"{self.base}/datasets/{name}/versions",
                files={"file": ("t.csv", b"a,b\n1,2\n", "text/csv")},
                data={"format": "csv"},
                headers=self.owner_auth,
            )
            assert version.status_code == 201, version.text
        applied = await c.post(f"{self.base}/workflows", json=SPEC, headers=self.owner_auth)
        assert applied.status_code == 201, applied.text
        started = await c.post(f"{self.base}/workflows/fit/jobs", json={}, headers=self.owner_auth)
        assert started.status_code == 201, started.text
        self.job_id = uuid.UUID(started.json()["id"])
        self.claim = await self.claim_train()

    @property
    def owner_auth(self) -> dict[str, str]:
        return auth(self.owner["token"])

    async def claim_train(self) -> claims.Claim:
        async with self.runtime.db.unit_of_work() as session:
            job = await session.get(Job, self.job_id)
            assert job is not None
            if job.status == JobState.QUEUED:
                await transitions.apply(session, job, JobState.RUNNING)
            await dispatch.promote_ready(session, utcnow())
        async with self.runtime.db.unit_of_work() as session:
            taken = await claims.claim(session, "worker-1", 5, utcnow(), 60, job_id=self.job_id)
        assert [c.task for c in taken] == ["train"]
        return taken[0]

    async def token(self, claimed: claims.Claim, task_type: str = "noop") -> str:
        """Minted as the worker mints it: for this attempt, with the task type's actions."""
        issued = await self.runtime.require_access().directory.issue_job_token(
            user_id=uuid.UUID(self.owner["id"]),
            project_id=uuid.UUID(self.project["id"]),
            job_id=self.job_id,
            ttl_seconds=600,
            task=claimed.task,
            attempt=claimed.attempt,
            task_type=task_type,
            datasets_read=sorted(claimed.datasets_read),
            datasets_write=sorted(claimed.datasets_write),
        )
        return issued.token

    async def progress(self, token: str, claimed: claims.Claim) -> httpx.Response:
        return await self.api.client.put(
            f"/api/v1/jobs/{self.job_id}/tasks/train/progress",
            json={"attempt_id": claimed.attempt_id.hex, "stage": "fit"},
            headers=auth(token),
        )

    async def reads(self, token: str) -> int:
        return (await self.api.client.get(self.base, headers=auth(token))).status_code


@pytest.fixture
async def job(app: FastAPI, api: Api) -> Job_:
    scene = Job_(app, api)
    await scene.start()
    return scene


async def test_a_viewer_with_a_leaked_job_token_cannot_take_over_the_project(job: Job_) -> None:
    c = job.api.client
    leaked = auth(await job.token(job.claim))
    # The viewer's own token may not do these either; the leaked token must add nothing.
    refused = {
        "create a workflow": c.post(
            f"{job.base}/workflows", json={**SPEC, "name": "evil"}, headers=leaked
        ),
        "run a job": c.post(f"{job.base}/workflows/fit/jobs", json={}, headers=leaked),
        "delete a dataset": c.delete(f"{job.base}/datasets/kept", headers=leaked),
        "move an alias": c.put(
            f"{job.base}/models/any/aliases/production",
            json={"version": 1, "reason": "mine now"},
            headers=leaked,
        ),
        "roll an alias back": c.post(
            f"{job.base}/models/any/aliases/production/rollback",
            json={"reason": "mine now"},
            headers=leaked,
        ),
        "delete a model": c.delete(f"{job.base}/models/any", headers=leaked),
        "edit the project": c.patch(job.base, json={"name": "Hijacked"}, headers=leaked),
        "make the viewer an owner": c.put(
            f"{job.base}/members/{job.viewer['id']}", json={"role": "owner"}, headers=leaked
        ),
        "cancel the job": c.post(f"/api/v1/jobs/{job.job_id}/cancel", headers=leaked),
    }
    for what, request in refused.items():
        response = await request
        assert response.status_code == 403, (what, response.text)
    # Nothing changed.
    project = (await c.get(job.base, headers=job.owner_auth)).json()
    assert project["name"] != "Hijacked"
    kept = await c.get(f"{job.base}/datasets/kept", headers=job.owner_auth)
    assert kept.status_code == 200
    members = (await c.get(f"{job.base}/members", headers=job.owner_auth)).json()
    roles = {m["user_id"]: m["role"] for m in members}
    assert roles[job.viewer["id"]] == "viewer"

    # What the task needs still works: read, write outputs, report progress.
    assert await job.reads(leaked["Authorization"].removeprefix("Bearer ")) == 200
    created = await c.post(f"{job.base}/datasets", json={"name": "outputs"}, headers=leaked)
    assert created.status_code == 201, created.text
    assert (await job.progress(leaked["Authorization"][7:], job.claim)).status_code == 204


async def test_the_token_touches_only_the_datasets_its_job_names(job: Job_) -> None:
    assert job.claim.datasets_read == {"source"}
    assert job.claim.datasets_write == {"outputs"}
    c = job.api.client
    token = auth(await job.token(job.claim))
    claims_ = jwt.decode(token["Authorization"][7:], options={"verify_signature": False})
    assert (claims_["dsr"], claims_["dsw"]) == (["source"], ["outputs"])

    assert (await c.get(f"{job.base}/datasets/source", headers=token)).status_code == 200
    # `kept` is the project's, and the starter may read it, but the job names it nowhere.
    for path in ("source/versions/1", "kept/versions/1"):
        assert (await c.get(f"{job.base}/datasets/{path}", headers=job.owner_auth)).is_success
    assert (await c.get(f"{job.base}/datasets/source/versions/1", headers=token)).is_success
    for path in ("kept", "kept/versions", "kept/versions/1", "kept/versions/1/content"):
        response = await c.get(f"{job.base}/datasets/{path}", headers=token)
        assert response.status_code == 404, (path, response.text)
    upload = await c.post(
        f"{job.base}/datasets/kept/versions",
        files={"file": ("t.csv", b"a\n1\n", "text/csv")},
        data={"format": "csv"},
        headers=token,
    )
    assert upload.status_code == 404, upload.text
    # A read-only dataset of the job is not writable, and no new name can be made up.
    renamed = await c.patch(
        f"{job.base}/datasets/source", json={"description": "mine"}, headers=token
    )
    assert renamed.status_code == 404, renamed.text
    other = await c.post(f"{job.base}/datasets", json={"name": "elsewhere"}, headers=token)
    assert other.status_code == 403, other.text
    created = await c.post(f"{job.base}/datasets", json={"name": "outputs"}, headers=token)
    assert created.status_code == 201, created.text
    listed = (await c.get(f"{job.base}/datasets", headers=token)).json()
    assert sorted(d["name"] for d in listed["items"]) == ["outputs", "source"]
    assert listed["total"] == 2
    # Filtered in the query, not after paging: a page of one still finds both, and the
    # total counts only what the token may see ("kept" sorts first among the project's).
    first = (await c.get(f"{job.base}/datasets?limit=1", headers=token)).json()
    second = (await c.get(f"{job.base}/datasets?limit=1&offset=1", headers=token)).json()
    assert [d["name"] for d in first["items"] + second["items"]] == ["outputs", "source"]
    assert first["total"] == second["total"] == 2
    # The starter's own token still sees everything.
    mine = (await c.get(f"{job.base}/datasets", headers=job.owner_auth)).json()
    assert sorted(d["name"] for d in mine["items"]) == ["kept", "outputs", "source"]


async def test_only_a_type_that_declares_it_moves_aliases(job: Job_) -> None:
    noop = jwt.decode(await job.token(job.claim), options={"verify_signature": False})
    register = jwt.decode(
        await job.token(job.claim, "register"), options={"verify_signature": False}
    )
    assert set(noop["act"]) == JOB_TOKEN_ACTIONS
    assert set(register["act"]) == JOB_TOKEN_ACTIONS | {"model:alias"}
    assert noop["task"] == register["task"] == "train"
    assert noop["att"] == job.claim.attempt
    # The register type's token reaches the alias route (404: no such model), noop's does not.
    path = f"{job.base}/models/any/aliases/production"
    body = {"version": 1, "reason": "promote"}
    c = job.api.client
    as_noop = await c.put(path, json=body, headers=auth(await job.token(job.claim)))
    assert as_noop.status_code == 403
    as_register = await c.put(path, json=body, headers=auth(await job.token(job.claim, "register")))
    assert as_register.status_code == 404, as_register.text


def test_no_task_type_can_declare_its_way_into_the_project() -> None:
    for action in NEVER_FOR_JOB_TOKENS:
        with pytest.raises(ValueError, match="cannot hold"):
            job_token_actions([action])
    with pytest.raises(ValueError, match="cannot hold"):
        job_token_actions(["admin:everything"])


async def test_the_token_dies_with_its_attempt_and_its_job(job: Job_) -> None:
    first = await job.token(job.claim)
    assert await job.reads(first) == 200
    # The worker reports the attempt failed: it is retried, and its token is dead.
    async with job.runtime.db.unit_of_work() as session:
        failed = AttemptResult(Outcome.FAILED, None, "boom", 1, {}, Path("/nonexistent"))
        await claims.report(session, job.claim, failed, utcnow())
    assert await job.reads(first) == 401
    assert (await job.progress(first, job.claim)).status_code == 401
    with pytest.raises(Conflict):
        await job.token(job.claim)  # no new token for an attempt that ended
    # The retry's attempt gets a token of its own, which works.
    async with job.runtime.db.unit_of_work() as session:
        await session.execute(
            update(TaskRun)
            .where(TaskRun.job_id == job.job_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
    async with job.runtime.db.unit_of_work() as session:
        await dispatch.requeue_due_retries(session, utcnow())
    async with job.runtime.db.unit_of_work() as session:
        (second_claim,) = await claims.claim(
            session, "worker-2", 5, utcnow(), 60, job_id=job.job_id
        )
    second = await job.token(second_claim)
    assert await job.reads(second) == 200

    # F17: the second attempt's worker stops heartbeating; the scheduler reclaims the task.
    async with job.runtime.db.unit_of_work() as session:
        await session.execute(
            update(TaskRun)
            .where(TaskRun.job_id == job.job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    async with job.runtime.db.unit_of_work() as session:
        await dispatch.reclaim_lost(session, utcnow())
    assert await job.reads(second) == 401
    assert (await job.progress(second, second_claim)).status_code == 401

    # The job ends (cancelled): even a token minted for the job as a whole stops working.
    whole_job = await job.runtime.require_access().directory.issue_job_token(
        user_id=uuid.UUID(job.owner["id"]),
        project_id=uuid.UUID(job.project["id"]),
        job_id=job.job_id,
        ttl_seconds=600,
    )
    assert await job.reads(whole_job.token) == 200
    cancelled = await job.api.client.post(
        f"/api/v1/jobs/{job.job_id}/cancel", headers=job.owner_auth
    )
    assert cancelled.status_code == 200, cancelled.text
    async with job.runtime.db.unit_of_work() as session:
        await dispatch.finish_jobs(session, utcnow())
    status = (
        await job.api.client.get(f"/api/v1/jobs/{job.job_id}", headers=job.owner_auth)
    ).json()["status"]
    assert status == "cancelled"
    assert await job.reads(whole_job.token) == 401
