"""Personal access tokens (ADR 0040): issued by identity for one project, at most 90 days,
listed without the token, revoked at once in every process; a JWT of type ``pat+jwt`` that
every service caps to its project and to the user's role there."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from sqlalchemy import text
from tests.conftest import Api, auth, client_for

from armillary.app import create_app
from armillary.identity.components import identity_of
from armillary.kit.settings import Settings

TOKENS = "/api/v1/auth/tokens"
PROBLEM = "application/problem+json"


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    return body


async def create_pat(
    c: httpx.AsyncClient, token: str, project: str, **fields: Any
) -> dict[str, Any]:
    body = {"name": "notebook", "project": project, **fields}
    response = await c.post(TOKENS, json=body, headers=auth(token))
    assert response.status_code == 201, response.text
    return dict(response.json())


def mlflow_url(project: str, path: str) -> str:
    return f"/mlflow/{project}/api/2.0/mlflow/{path}"


async def rows(app: FastAPI, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with app.state.runtime.db.engine.connect() as conn:
        result = await conn.execute(text(sql), params)
        return [dict(r._mapping) for r in result]


async def test_create_list_revoke_and_only_the_jti_hash_is_stored(api: Api, app: FastAPI) -> None:
    c = api.client
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    project = await api.create_project(ds["token"])
    before = datetime.now(UTC).replace(microsecond=0)

    issued = await create_pat(c, ds["token"], project["slug"])
    token = issued["token"]
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["typ"] == "pat+jwt"
    assert claims["scope"] == "pat"
    assert claims["prj"] == project["id"] == issued["project_id"]
    assert claims["sub"] == ds["id"]
    assert "role" not in claims  # the gateway's admin check can never pass with one
    expires = datetime.fromisoformat(issued["expires_at"])
    assert before + timedelta(days=30) <= expires <= before + timedelta(days=30, seconds=2)

    # Listed, never with the token.
    listed = await c.get(TOKENS, headers=auth(ds["token"]))
    assert listed.status_code == 200, listed.text
    assert token not in listed.text
    assert "token" not in listed.json()["items"][0]
    assert [t["id"] for t in listed.json()["items"]] == [issued["id"]]
    assert listed.json()["items"][0]["revoked_at"] is None

    # The row holds the SHA-256 of the jti and neither the token nor the jti.
    (row,) = await rows(
        app,
        "SELECT * FROM identity_personal_access_tokens WHERE id = :id",
        id=uuid.UUID(issued["id"]),
    )
    assert row["jti_hash"] == hashlib.sha256(claims["jti"].encode()).hexdigest()
    stored = " ".join(str(v) for v in row.values())
    assert claims["jti"] not in stored
    assert token not in stored

    # Someone else cannot revoke it (not found), its owner can; it is then listed as revoked.
    other = await api.create_user(admin, "data_scientist")
    problem(await c.delete(f"{TOKENS}/{issued['id']}", headers=auth(other["token"])), 404)
    response = await c.delete(f"{TOKENS}/{issued['id']}", headers=auth(ds["token"]))
    assert response.status_code == 204, response.text
    listed = (await c.get(TOKENS, headers=auth(ds["token"]))).json()
    assert listed["items"][0]["revoked_at"] is not None

    # Audited: creation and revocation.
    audit = (await c.get("/api/v1/audit", headers=auth(admin), params={"limit": 200})).json()
    actions = {e["action"] for e in audit["items"] if e.get("resource_id") == issued["id"]}
    assert {"auth.personal_token.create", "auth.personal_token.revoke"} <= actions


async def test_expiry_beyond_90_days_and_unknown_projects_are_refused(api: Api) -> None:
    c = api.client
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    project = await api.create_project(ds["token"])
    body = {"name": "ci", "project": project["slug"], "expires_in_days": 91}
    problem(await c.post(TOKENS, json=body, headers=auth(ds["token"])), 422)
    issued = await create_pat(c, ds["token"], project["slug"], expires_in_days=90)
    assert issued["token"]
    # A project the user is not a member of is not found.
    stranger = await api.create_user(admin, "data_scientist")
    body = {"name": "ci", "project": project["slug"]}
    problem(await c.post(TOKENS, json=body, headers=auth(stranger["token"])), 404)


async def test_a_pat_acts_in_its_project_only(api: Api, app: FastAPI) -> None:
    c = api.client
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    mine = await api.create_project(ds["token"])
    other = await api.create_project(ds["token"])  # the user owns it too
    pat = (await create_pat(c, ds["token"], mine["slug"]))["token"]

    # Its project: the tracking API (MLflow's client) and other platform routes.
    response = await c.post(
        mlflow_url(mine["slug"], "experiments/create"), json={"name": "e"}, headers=auth(pat)
    )
    assert response.status_code == 200, response.text
    for path in (f"/api/v1/projects/{mine['slug']}", f"/api/v1/projects/{mine['id']}/datasets"):
        response = await c.get(path, headers=auth(pat))
        assert response.status_code == 200, response.text
    listed = (await c.get("/api/v1/projects", headers=auth(pat))).json()
    assert [p["id"] for p in listed["items"]] == [mine["id"]]

    # Another project (the user's own) is not found, by slug or id, on every service.
    for ref in (other["slug"], other["id"]):
        problem(await c.get(f"/api/v1/projects/{ref}", headers=auth(pat)), 404)
        problem(await c.get(f"/api/v1/projects/{ref}/datasets", headers=auth(pat)), 404)
    response = await c.post(
        mlflow_url(other["slug"], "experiments/create"), json={"name": "e"}, headers=auth(pat)
    )
    assert response.status_code == 404, response.text

    # Account and platform routes refuse it: no new token, no token list, no password change.
    problem(
        await c.post(TOKENS, json={"name": "x", "project": mine["slug"]}, headers=auth(pat)), 403
    )
    problem(await c.get(TOKENS, headers=auth(pat)), 403)
    problem(
        await c.post("/api/v1/projects", json={"slug": "p-x", "name": "X"}, headers=auth(pat)), 403
    )
    body = {"current_password": ds["password"], "new_password": "another-password-1"}
    problem(await c.post("/api/v1/auth/password", json=body, headers=auth(pat)), 403)
    # Nor what is kept for the people of the project.
    problem(await c.delete(f"/api/v1/projects/{mine['slug']}", headers=auth(pat)), 403)


async def test_an_admins_pat_is_no_admin(api: Api) -> None:
    c = api.client
    admin = await api.admin_token()
    project = await api.create_project(admin)
    pat = (await create_pat(c, admin, project["slug"]))["token"]
    problem(await c.get("/api/v1/users", headers=auth(pat)), 403)
    problem(await c.get("/api/v1/audit", headers=auth(pat)), 403)
    response = await c.get(f"/api/v1/projects/{project['slug']}", headers=auth(pat))
    assert response.status_code == 200, response.text


async def test_a_pat_has_at_most_the_users_role(api: Api) -> None:
    c = api.client
    admin = await api.admin_token()
    owner = await api.create_user(admin, "data_scientist")
    viewer = await api.create_user(admin, "data_scientist")
    project = await api.create_project(owner["token"])
    slug = project["slug"]
    response = await c.put(
        f"/api/v1/projects/{slug}/members/{viewer['id']}",
        json={"role": "viewer"},
        headers=auth(owner["token"]),
    )
    assert response.status_code == 200, response.text
    pat = (await create_pat(c, viewer["token"], slug))["token"]
    response = await c.post(
        mlflow_url(slug, "experiments/search"), json={"max_results": 10}, headers=auth(pat)
    )
    assert response.status_code == 200, response.text
    response = await c.post(
        mlflow_url(slug, "experiments/create"), json={"name": "e"}, headers=auth(pat)
    )
    assert response.status_code == 403, response.text

    # Removed from the project, the token loses it on the next request.
    response = await c.delete(
        f"/api/v1/projects/{slug}/members/{viewer['id']}", headers=auth(owner["token"])
    )
    assert response.status_code == 204, response.text
    problem(await c.get(f"/api/v1/projects/{slug}", headers=auth(pat)), 404)


async def test_revoked_and_expired_pats_are_refused(api: Api, app: FastAPI) -> None:
    c = api.client
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    project = await api.create_project(ds["token"])
    path = f"/api/v1/projects/{project['slug']}"
    issued = await create_pat(c, ds["token"], project["slug"])
    pat = issued["token"]
    assert (await c.get(path, headers=auth(pat))).status_code == 200  # warms every cache
    response = await c.delete(f"{TOKENS}/{issued['id']}", headers=auth(ds["token"]))
    assert response.status_code == 204
    problem(await c.get(path, headers=auth(pat)), 401)
    problem(await c.get(mlflow_url(project["slug"], "experiments/search"), headers=auth(pat)), 401)

    # Past its row's expiry (time passing), and a token whose own "exp" has passed.
    issued = await create_pat(c, ds["token"], project["slug"])
    assert (await c.get(path, headers=auth(issued["token"]))).status_code == 200
    async with app.state.runtime.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE identity_personal_access_tokens SET expires_at = :t WHERE id = :id"),
            {"t": datetime.now(UTC) - timedelta(seconds=1), "id": uuid.UUID(issued["id"])},
        )
    problem(await c.get(path, headers=auth(issued["token"])), 401)

    identity = identity_of(app.state.runtime)
    claims = jwt.decode(issued["token"], options={"verify_signature": False})
    now = datetime.now(UTC)
    async with app.state.runtime.db.unit_of_work() as session:
        expired = await identity.keyring.sign(
            session,
            {
                **claims,
                "jti": secrets.token_hex(16),
                "iat": now - timedelta(days=2),
                "exp": now - timedelta(days=1),
            },
            typ="pat+jwt",
        )
    problem(await c.get(path, headers=auth(expired)), 401)


async def test_a_pat_typ_signed_by_an_unknown_key_is_refused(api: Api, app: FastAPI) -> None:
    c = api.client
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    project = await api.create_project(ds["token"])
    issued = await create_pat(c, ds["token"], project["slug"])
    claims = jwt.decode(issued["token"], options={"verify_signature": False})
    forged = jwt.encode(
        claims,
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": secrets.token_hex(16), "typ": "pat+jwt"},
    )
    problem(await c.get(f"/api/v1/projects/{project['slug']}", headers=auth(forged)), 401)
    # The same claims signed by the real key as an access token, or a pat+jwt without the
    # scope: the type and the scope must agree.
    identity = identity_of(app.state.runtime)
    unscoped = {k: v for k, v in claims.items() if k not in ("scope", "prj")}
    async with app.state.runtime.db.unit_of_work() as session:
        mismatched = [
            await identity.keyring.sign(session, claims, typ="at+jwt"),
            await identity.keyring.sign(session, unscoped, typ="pat+jwt"),
        ]
    for token in mismatched:
        problem(await c.get(f"/api/v1/projects/{project['slug']}", headers=auth(token)), 401)
    problem(await c.get(f"/api/v1/projects/{project['slug']}", headers=auth("opaque-token")), 401)


@pytest.fixture
async def second_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another platform process on the same database (and Redis)."""
    other = create_app(settings, configure_logs=False)
    async with LifespanManager(other, startup_timeout=60), client_for(other) as client:
        yield client


async def test_revocation_applies_at_once_in_another_process(
    api: Api, second_process: httpx.AsyncClient
) -> None:
    c = api.client
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    project = await api.create_project(ds["token"])
    issued = await create_pat(c, ds["token"], project["slug"])
    path = mlflow_url(project["slug"], "experiments/search")
    body = {"max_results": 5}
    for client in (c, second_process):
        response = await client.post(path, json=body, headers=auth(issued["token"]))
        assert response.status_code == 200, response.text
    response = await c.delete(f"{TOKENS}/{issued['id']}", headers=auth(ds["token"]))
    assert response.status_code == 204
    response = await second_process.post(path, json=body, headers=auth(issued["token"]))
    assert response.status_code == 401, response.text


async def test_admins_revoke_anyones_pat(api: Api) -> None:
    c = api.client
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    project = await api.create_project(ds["token"])
    issued = await create_pat(c, ds["token"], project["slug"])
    listed = (await c.get(TOKENS, params={"user_id": ds["id"]}, headers=auth(admin))).json()
    assert [t["id"] for t in listed["items"]] == [issued["id"]]
    other = await api.create_user(admin, "data_scientist")
    problem(await c.get(TOKENS, params={"user_id": other["id"]}, headers=auth(ds["token"])), 403)
    response = await c.delete(f"{TOKENS}/{issued['id']}", headers=auth(admin))
    assert response.status_code == 204, response.text
    path = f"/api/v1/projects/{project['slug']}"
    problem(await c.get(path, headers=auth(issued["token"])), 401)


async def test_a_superseded_key_verifies_until_its_last_pat_expires(api: Api, app: FastAPI) -> None:
    c = api.client
    admin = await api.admin_token()
    project = await api.create_project(admin)
    issued = await create_pat(c, admin, project["slug"], expires_in_days=90)
    kid = jwt.get_unverified_header(issued["token"])["kid"]
    identity = identity_of(app.state.runtime)
    async with app.state.runtime.db.unit_of_work() as session:
        await identity.keyring.rotate(session, immediately=True)
    (key,) = await rows(
        app, "SELECT retires_at FROM identity_signing_keys WHERE kid = :kid", kid=kid
    )
    retires_at = key["retires_at"]
    if retires_at.tzinfo is None:  # SQLite keeps no zone
        retires_at = retires_at.replace(tzinfo=UTC)
    assert retires_at == datetime.fromisoformat(issued["expires_at"])
    jwks = (await c.get("/api/v1/auth/jwks")).json()
    assert kid in {k["kid"] for k in jwks["keys"]}
    async with app.state.runtime.db.unit_of_work() as session:
        await identity.keyring.retire_expired(session)
    path = f"/api/v1/projects/{project['slug']}"
    response = await c.get(path, headers=auth(issued["token"]))
    assert response.status_code == 200, response.text
