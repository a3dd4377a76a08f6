"""Job tokens (DESIGN §2): what a job's tasks call the API with. Issued by identity on its
internal app only, they carry the starter's rights capped to the job's project: every other
project is a 404, platform-level routes a 403, and they expire quickly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, auth

from armillary.contracts.identity import JobToken
from armillary.identity.auth import claims
from armillary.identity.client import IdentityClient
from armillary.identity.components import identity_of
from armillary.kit.errors import Conflict, NotFound
from armillary.kit.security import ACCESS_TOKEN_TYPE

PROBLEM = "application/problem+json"
ISSUE = "/internal/v1/job-tokens"


def directory(app: FastAPI) -> IdentityClient:
    """The identity client the embedded composition gave every service."""
    client = app.state.runtime.access.directory
    assert isinstance(client, IdentityClient)
    return client


async def issue(
    app: FastAPI, user_id: Any, project_id: Any, *, job_id: uuid.UUID | None = None, ttl: int = 300
) -> JobToken:
    return await directory(app).issue_job_token(
        user_id=uuid.UUID(str(user_id)),
        project_id=uuid.UUID(str(project_id)),
        job_id=job_id or uuid.uuid4(),
        ttl_seconds=ttl,
    )


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    return body


async def test_a_job_token_carries_the_job_and_project_claims(api: Api, app: FastAPI) -> None:
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    project = await api.create_project(ds["token"])
    job_id = uuid.uuid4()
    before = datetime.now(UTC).replace(microsecond=0)
    issued = await issue(app, ds["id"], project["id"], job_id=job_id, ttl=120)

    header = jwt.get_unverified_header(issued.token)
    assert header["typ"] == ACCESS_TOKEN_TYPE
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["sub"] == ds["id"]
    assert claims["scope"] == "job"
    assert claims["job"] == str(job_id)
    assert claims["prj"] == project["id"]
    assert claims["jti"]
    assert datetime.fromtimestamp(claims["exp"], UTC) == issued.expires_at
    assert before + timedelta(seconds=119) <= issued.expires_at <= before + timedelta(seconds=122)
    assert issued.token not in repr(issued)

    # Every service sees who and what the token is for.
    principal = await app.state.runtime.access.principal(issued.token)
    assert principal.user_id == uuid.UUID(ds["id"])
    assert principal.job_id == job_id
    assert principal.scope_project_id == uuid.UUID(project["id"])
    assert principal.is_job
    own = await app.state.runtime.access.principal(ds["token"])
    assert own.job_id is None
    assert own.scope_project_id is None


async def test_a_job_token_sees_its_project_and_no_other(api: Api, app: FastAPI) -> None:
    c = api.client
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    mine = await api.create_project(ds["token"])
    warm = await api.create_project(ds["token"])  # the user's own token reads it first
    cold = await api.create_project(ds["token"])  # nobody reads it before the job token
    # The user's own token reads `warm`: cached "allowed" answers for it now exist.
    for ref in (warm["slug"], warm["id"]):
        response = await c.get(f"/api/v1/projects/{ref}", headers=auth(ds["token"]))
        assert response.status_code == 200, response.text
    cache = app.state.runtime.cache
    assert await cache.get(f"access:{ds['id']}:{warm['slug']}") not in (None, "none")
    assert await cache.get(f"access:{ds['id']}:{cold['slug']}") is None

    job = (await issue(app, ds["id"], mine["id"])).token
    for ref in (mine["slug"], mine["id"]):
        response = await c.get(f"/api/v1/projects/{ref}", headers=auth(job))
        assert response.status_code == 200, response.text
        assert response.json()["id"] == mine["id"]
        assert response.json()["my_role"] == "owner"
    for other in (warm, cold):
        for ref in (other["slug"], other["id"]):
            for path in ("", "/members", "/access"):
                body = problem(await c.get(f"/api/v1/projects/{ref}{path}", headers=auth(job)), 404)
                assert body["detail"] == "Project not found"
            # Writes in another project are refused the same way.
            response = await c.patch(
                f"/api/v1/projects/{ref}", json={"name": "Hijacked"}, headers=auth(job)
            )
            problem(response, 404)
    # Listing shows the job's project only.
    listed = (await c.get("/api/v1/projects", headers=auth(job))).json()
    assert [p["id"] for p in listed["items"]] == [mine["id"]]
    assert listed["total"] == 1
    # The job token's refusals did not stick to the user: their own token still reads both.
    for other in (warm, cold):
        for ref in (other["slug"], other["id"]):
            response = await c.get(f"/api/v1/projects/{ref}", headers=auth(ds["token"]))
            assert response.status_code == 200, response.text
    owned = (await c.get("/api/v1/projects", headers=auth(ds["token"]))).json()
    assert owned["total"] == 3


async def test_a_job_token_follows_the_starters_current_membership(api: Api, app: FastAPI) -> None:
    c = api.client
    admin = await api.admin_token()
    owner = await api.create_user(admin, "data_scientist")
    editor = await api.create_user(admin, "data_scientist")
    project = await api.create_project(owner["token"])
    path = f"/api/v1/projects/{project['slug']}"
    response = await c.put(
        f"{path}/members/{editor['id']}", json={"role": "editor"}, headers=auth(owner["token"])
    )
    assert response.status_code == 200, response.text
    job = (await issue(app, editor["id"], project["id"])).token
    assert (await c.get(path, headers=auth(job))).json()["my_role"] == "editor"
    # An editor's job may not do what an owner may.
    problem(await c.delete(path, headers=auth(job)), 403)

    response = await c.delete(f"{path}/members/{editor['id']}", headers=auth(owner["token"]))
    assert response.status_code == 204, response.text
    problem(await c.get(path, headers=auth(job)), 404)

    # A deactivated starter's job token stops working at once.
    job = (await issue(app, owner["id"], project["id"])).token
    assert (await c.get(path, headers=auth(job))).status_code == 200
    response = await c.delete(f"/api/v1/users/{owner['id']}", headers=auth(admin))
    assert response.status_code == 200, response.text
    problem(await c.get(path, headers=auth(job)), 401)


async def test_a_job_token_of_an_admin_is_no_admin(api: Api, app: FastAPI) -> None:
    c = api.client
    admin = await api.admin_token()
    admin_id = (await c.get("/api/v1/auth/me", headers=auth(admin))).json()["id"]
    target = await api.create_user(admin, "user")
    project = await api.create_project(admin)
    elsewhere = await api.create_project(admin)
    job = (await issue(app, admin_id, project["id"])).token

    calls = {
        "GET /users": c.get("/api/v1/users", headers=auth(job)),
        "POST /users": c.post(
            "/api/v1/users",
            json={"email": "x@example.com", "name": "X", "role": "admin", "password": "p" * 16},
            headers=auth(job),
        ),
        "GET /users/{id}": c.get(f"/api/v1/users/{target['id']}", headers=auth(job)),
        "PATCH /users/{id}": c.patch(
            f"/api/v1/users/{target['id']}", json={"role": "admin"}, headers=auth(job)
        ),
        "DELETE /users/{id}": c.delete(f"/api/v1/users/{target['id']}", headers=auth(job)),
        "GET /audit": c.get("/api/v1/audit", headers=auth(job)),
        "GET /audit/verify": c.get("/api/v1/audit/verify", headers=auth(job)),
        "POST /projects": c.post(
            "/api/v1/projects", json={"slug": "from-a-job", "name": "Job"}, headers=auth(job)
        ),
        "POST /auth/logout": c.post("/api/v1/auth/logout", headers=auth(job)),
        "POST /auth/password": c.post(
            "/api/v1/auth/password",
            json={"current_password": ADMIN_PASSWORD, "new_password": "n" * 20},
            headers=auth(job),
        ),
    }
    for case, call in calls.items():
        body = problem(await call, 403)
        assert body["detail"].startswith("Job tokens cannot"), (case, body)

    # Nothing changed: the target is still a plain active user, the admin can still sign in.
    got = (await c.get(f"/api/v1/users/{target['id']}", headers=auth(admin))).json()
    assert got["role"] == "user"
    assert got["active"]
    assert (await c.get("/api/v1/projects/from-a-job", headers=auth(admin))).status_code == 404
    assert await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    # Still an admin's rights inside the job's project, and none elsewhere (admins see every
    # project with their own token).
    assert (await c.get(f"/api/v1/projects/{project['slug']}", headers=auth(job))).is_success
    problem(await c.get(f"/api/v1/projects/{elsewhere['slug']}", headers=auth(job)), 404)
    listed = (await c.get("/api/v1/projects", headers=auth(job))).json()
    assert [p["id"] for p in listed["items"]] == [project["id"]]
    me = await c.get("/api/v1/auth/me", headers=auth(job))
    assert me.status_code == 200
    assert me.json()["id"] == admin_id


async def test_an_expired_job_token_is_refused(
    api: Api, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    project = await api.create_project(ds["token"])
    path = f"/api/v1/projects/{project['slug']}"
    fresh = (await issue(app, ds["id"], project["id"], ttl=30)).token
    assert (await api.client.get(path, headers=auth(fresh))).status_code == 200

    # Issued an hour ago with the shortest lifetime: expired for half an hour and more.
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    monkeypatch.setattr(claims, "utcnow", lambda: an_hour_ago)
    issued = await issue(app, ds["id"], project["id"], ttl=30)
    assert issued.expires_at < datetime.now(UTC)
    body = problem(await api.client.get(path, headers=auth(issued.token)), 401)
    assert issued.token not in str(body)
    problem(await api.client.get("/api/v1/auth/me", headers=auth(issued.token)), 401)


async def test_issuing_is_refused_to_who_may_not_run_jobs(api: Api, app: FastAPI) -> None:
    c = api.client
    admin = await api.admin_token()
    owner = await api.create_user(admin, "data_scientist")
    outsider = await api.create_user(admin, "data_scientist")
    ds_viewer = await api.create_user(admin, "data_scientist")
    plain = await api.create_user(admin, "user")
    leaver = await api.create_user(admin, "data_scientist")
    project = await api.create_project(owner["token"])
    members = f"/api/v1/projects/{project['slug']}/members"
    for user, role in ((ds_viewer, "viewer"), (plain, "viewer"), (leaver, "editor")):
        response = await c.put(
            f"{members}/{user['id']}", json={"role": role}, headers=auth(owner["token"])
        )
        assert response.status_code == 200, response.text
    assert (await c.delete(f"/api/v1/users/{leaver['id']}", headers=auth(admin))).is_success

    with pytest.raises(NotFound):  # not a member
        await issue(app, outsider["id"], project["id"])
    with pytest.raises(NotFound):  # no such user
        await issue(app, uuid.uuid4(), project["id"])
    with pytest.raises(NotFound):  # no such project
        await issue(app, owner["id"], uuid.uuid4())
    for viewer in (ds_viewer, plain):
        with pytest.raises(Conflict):
            await issue(app, viewer["id"], project["id"])
    with pytest.raises(Conflict):  # deactivated, though still an editor
        await issue(app, leaver["id"], project["id"])
    for ttl in (0, 29, 86_401):
        with pytest.raises(ValueError, match="ttl_seconds"):
            await issue(app, owner["id"], project["id"], ttl=ttl)
    # The internal route validates the body itself too.
    internal = directory(app)._service.http
    body = {"user_id": owner["id"], "project_id": project["id"], "job_id": str(uuid.uuid4())}
    for extra in ({"ttl_seconds": 29}, {"ttl_seconds": 86_401}, {"ttl_seconds": 60, "role": "x"}):
        assert (await internal.post(ISSUE, json={**body, **extra})).status_code == 422
    response = await internal.post(ISSUE, json={**body, "ttl_seconds": 60})
    assert response.status_code == 201, response.text

    assert (await issue(app, owner["id"], project["id"], ttl=86_400)).token


async def test_the_public_app_has_no_internal_route(api: Api, app: FastAPI) -> None:
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    project = await api.create_project(ds["token"])
    body = {
        "user_id": ds["id"],
        "project_id": project["id"],
        "job_id": str(uuid.uuid4()),
        "ttl_seconds": 60,
    }
    for headers in ({}, auth(admin), auth(ds["token"])):
        response = await api.client.post(ISSUE, json=body, headers=headers)
        assert response.status_code == 404, response.text
        assert "token" not in response.json()
    assert not [r for r in app.routes if getattr(r, "path", "").startswith("/internal")]
    schema = (await api.client.get("/openapi.json")).json()
    assert not [p for p in schema["paths"] if p.startswith("/internal")]
    # The internal app, which only other services reach, does serve it.
    response = await directory(app)._service.http.post(ISSUE, json=body)
    assert response.status_code == 201, response.text


async def test_issuance_is_audited_without_the_token(api: Api, app: FastAPI) -> None:
    c = api.client
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    outsider = await api.create_user(admin, "data_scientist")
    project = await api.create_project(ds["token"])
    job_id = uuid.uuid4()
    issued = await issue(app, ds["id"], project["id"], job_id=job_id)
    # The token is used, including on denied calls, which are audited too.
    assert (await c.get("/api/v1/users", headers=auth(issued.token))).status_code == 403
    response = await c.post(
        f"/api/v1/projects/{project['slug']}/datasets",
        json={"name": "by-a-job"},
        headers=auth(issued.token),
    )
    assert response.status_code == 201, response.text
    refused_job = uuid.uuid4()
    with pytest.raises(NotFound):
        await issue(app, outsider["id"], project["id"], job_id=refused_job)

    page = (await c.get("/api/v1/audit", params={"limit": 200}, headers=auth(admin))).json()
    entries = [r for r in page["items"] if r["action"] == "auth.job_token"]
    by_job = {r["resource_id"]: r for r in entries}
    granted = by_job[str(job_id)]
    assert granted["outcome"] == "success"
    assert granted["resource_type"] == "job"
    assert granted["actor_id"] == ds["id"]
    assert granted["details"]["project_id"] == project["id"]
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert granted["details"]["jti"] == claims["jti"]
    denied = by_job[str(refused_job)]
    assert denied["outcome"] == "denied"
    assert denied["actor_id"] == outsider["id"]
    # The token itself is nowhere in the log: not in the API's view, not in the table.
    assert issued.token not in page.__repr__()
    signature = issued.token.rsplit(".", 1)[1]
    async with app.state.runtime.db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM identity_audit_records"))).all()
    dumped = "\n".join(repr(tuple(row)) for row in rows)
    assert rows
    assert issued.token not in dumped
    assert signature not in dumped


async def test_a_token_with_a_partial_job_scope_is_invalid(api: Api, app: FastAPI) -> None:
    """A signed token that names a scope without spelling it out is refused, never treated
    as the user's unscoped token."""
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    project = await api.create_project(ds["token"])
    identity = identity_of(app.state.runtime)
    settings = identity.settings
    now = datetime.now(UTC)
    base = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": ds["id"],
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    partial = [
        {"scope": "job", "job": str(uuid.uuid4())},
        {"scope": "job", "prj": project["id"]},
        {"job": str(uuid.uuid4()), "prj": project["id"]},
        {"scope": "admin"},
        {"scope": "job", "job": "not-a-uuid", "prj": project["id"]},
    ]
    for extra in partial:
        async with app.state.runtime.db.unit_of_work() as session:
            token = await identity.keyring.sign(
                session, {**base, "jti": uuid.uuid4().hex, **extra}, typ=ACCESS_TOKEN_TYPE
            )
        for path in ("/api/v1/auth/me", f"/api/v1/projects/{project['slug']}", "/api/v1/users"):
            response = await api.client.get(path, headers=auth(token))
            assert response.status_code == 401, (extra, path, response.text)
