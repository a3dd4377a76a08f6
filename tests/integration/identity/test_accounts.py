"""Accounts: password storage, generic credential failures, and changes to an account, its
role or its memberships taking effect on the next request (not at token expiry)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import select
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, auth, make_settings

from armillary.identity.auth.models import RefreshToken
from armillary.identity.components import identity_of
from armillary.identity.passwords import Passwords
from armillary.identity.users.models import User
from armillary.kit.settings import Settings

TOKEN = "/api/v1/auth/token"
ME = "/api/v1/auth/me"
PROBLEM = "application/problem+json"


async def _login(
    client: httpx.AsyncClient, email: str, password: str, **headers: str
) -> httpx.Response:
    return await client.post(TOKEN, data={"username": email, "password": password}, headers=headers)


# --- password storage ------------------------------------------------------------------------


async def test_stored_password_hashes_are_argon2id_and_salted(app: FastAPI, api: Api) -> None:
    admin = await api.admin_token()
    same_password = "the-same-password-for-both"
    for email in ("one@example.com", "two@example.com"):
        created = await api.client.post(
            "/api/v1/users",
            json={"email": email, "name": "N", "role": "user", "password": same_password},
            headers=auth(admin),
        )
        assert created.status_code == 201, created.text
    async with app.state.runtime.db.sessionmaker() as session:
        result = await session.execute(select(User.email, User.password_hash))
        rows = {email: stored for email, stored in result}
    assert set(rows) == {ADMIN_EMAIL, "one@example.com", "two@example.com"}
    for email, stored in rows.items():
        assert stored.startswith("$argon2id$"), (email, stored)
        # The configured (here: cheap test) parameters are the ones used.
        assert "$m=8,t=1,p=1$" in stored
        assert same_password not in stored
        assert ADMIN_PASSWORD not in stored
    assert rows["one@example.com"] != rows["two@example.com"], "hashes must be salted"
    # And the stored hash is what login checks against.
    assert (await _login(api.client, "one@example.com", same_password)).status_code == 200


async def test_refresh_tokens_are_stored_hashed(app: FastAPI, api: Api) -> None:
    pair = await api.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    async with app.state.runtime.db.sessionmaker() as session:
        stored = list(await session.scalars(select(RefreshToken.token_hash)))
    assert len(stored) == 1
    assert pair["refresh_token"] not in stored[0]
    assert re.fullmatch(r"[0-9a-f]{64}", stored[0])


def test_real_owasp_argon2id_parameters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults are the OWASP password storage parameters (the rest of the suite uses
    cheap ones for speed): argon2id, m=19456 KiB, t=2, p=1."""
    for name in ("ARGON2_TIME_COST", "ARGON2_MEMORY_COST_KIB", "ARGON2_PARALLELISM"):
        monkeypatch.delenv(f"ARMILLARY_{name}", raising=False)
    passwords = Passwords(Settings())
    stored = passwords.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), stored
    assert passwords.verify(stored, "correct horse battery staple")
    assert not passwords.verify(stored, "correct horse battery stapler")
    assert not passwords.verify(None, "correct horse battery staple")
    assert not passwords.verify("not-a-hash", "correct horse battery staple")
    assert not passwords.needs_rehash(stored)
    # A hash made with weaker parameters is flagged for an upgrade at the next login.
    cheap = Passwords(make_settings(tmp_path)).hash("correct horse battery staple")
    assert passwords.needs_rehash(cheap)


# --- credential failures ---------------------------------------------------------------------


async def test_bad_credentials_give_one_generic_401(api: Api) -> None:
    admin = await api.admin_token()
    inactive = await api.create_user(admin, "data_scientist")
    deactivated = await api.client.delete(f"/api/v1/users/{inactive['id']}", headers=auth(admin))
    assert deactivated.status_code == 200
    assert deactivated.json()["active"] is False
    known = await api.create_user(admin, "user")

    attempts = {
        "wrong password": (known["email"], "not-the-password"),
        "unknown user": ("nobody-here@example.com", "not-the-password"),
        "unknown user, other password": ("ghost@example.com", known["password"]),
        "deactivated user, right password": (inactive["email"], inactive["password"]),
        "deactivated user, wrong password": (inactive["email"], "not-the-password"),
        "known user, email in other case": (known["email"].upper(), "not-the-password"),
        "empty password": (known["email"], ""),
    }
    raw: dict[str, bytes] = {}
    normalised: dict[str, dict[str, Any]] = {}
    for case, (email, password) in attempts.items():
        response = await _login(api.client, email, password, **{"X-Request-ID": "same-id"})
        if case == "empty password" and response.status_code == 422:
            continue  # refused by the form schema before any account lookup: also fine
        assert response.status_code == 401, f"{case}: {response.status_code} {response.text}"
        assert response.headers["content-type"].startswith(PROBLEM), case
        assert response.headers["www-authenticate"].lower().startswith("bearer"), case
        raw[case] = response.content
        body = response.json()
        body.pop("request_id", None)
        body.pop("instance", None)
        normalised[case] = body
    # With the same request id the bodies are byte for byte the same...
    assert len(set(raw.values())) == 1, raw
    # ...and apart from request id and instance there is nothing else in them.
    first = next(iter(normalised.values()))
    assert all(body == first for body in normalised.values())
    assert set(first) == {"type", "title", "status", "detail"}
    assert "exist" not in first["detail"].lower()
    assert "inactive" not in first["detail"].lower()
    # The right password of an active account still works (the failures above were due to
    # the credentials, not to throttling).
    assert (await _login(api.client, known["email"], known["password"])).status_code == 200


async def test_the_hasher_runs_for_an_unknown_user(
    app: FastAPI, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = identity_of(app.state.runtime)
    calls: list[tuple[str | None, str]] = []
    argon2_calls: list[str] = []
    real_verify = identity.passwords.verify
    real_argon2_verify = PasswordHasher.verify

    def spy(stored_hash: str | None, password: str) -> bool:
        calls.append((stored_hash, password))
        return real_verify(stored_hash, password)

    def argon2_spy(self: PasswordHasher, stored: str | bytes, password: str | bytes) -> bool:
        argon2_calls.append(stored if isinstance(stored, str) else stored.decode())
        return real_argon2_verify(self, stored, password)

    monkeypatch.setattr(identity.passwords, "verify", spy)
    monkeypatch.setattr(PasswordHasher, "verify", argon2_spy)

    response = await _login(api.client, "nobody@example.com", "some-password-1")
    assert response.status_code == 401
    assert calls == [(None, "some-password-1")]
    # The real argon2id computation ran (against a dummy hash), not a shortcut.
    assert len(argon2_calls) == 1
    assert argon2_calls[0].startswith("$argon2id$")

    # For a known account it is called the same way, with the stored hash.
    calls.clear()
    response = await _login(api.client, ADMIN_EMAIL, "wrong-password-1")
    assert response.status_code == 401
    assert len(calls) == 1
    assert calls[0][0] is not None
    assert calls[0][0].startswith("$argon2id$")
    assert calls[0][1] == "wrong-password-1"


async def test_no_anonymous_sign_up(app: FastAPI, api: Api) -> None:
    body = {"email": "self@example.com", "name": "Me", "role": "admin", "password": "p" * 16}
    response = await api.client.post("/api/v1/users", json=body)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM)
    body["role"] = "user"
    assert (await api.client.post("/api/v1/users", json=body)).status_code == 401
    assert (await _login(api.client, "self@example.com", "p" * 16)).status_code == 401
    admin = await api.admin_token()
    users = (await api.client.get("/api/v1/users", headers=auth(admin))).json()
    assert [u["email"] for u in users["items"]] == [ADMIN_EMAIL]
    # No other route looks like a sign-up either (MLflow's `registered-models` are models).
    paths = {getattr(r, "path", "") for r in _flat_routes(app)}
    sign_up = re.compile(r"sign.?up|\bregister\b|invite|join", re.I)
    assert not [p for p in paths if sign_up.search(p)], paths


def _flat_routes(app: FastAPI) -> list[Any]:
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined]
    except ImportError:
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


# --- changes apply on the next request ---------------------------------------------------------


async def _cached(app: FastAPI, key: str) -> Any:
    return await app.state.runtime.cache.get(key)


async def test_deactivated_users_token_is_refused_on_the_next_request(
    app: FastAPI, api: Api
) -> None:
    admin = await api.admin_token()
    person = await api.create_user(admin, "data_scientist")
    pair = await api.login(person["email"], person["password"])
    project = await api.create_project(person["token"])
    h = auth(person["token"])
    assert (await api.client.get(ME, headers=h)).status_code == 200
    assert (
        await api.client.get(f"/api/v1/projects/{project['slug']}", headers=h)
    ).status_code == 200
    # The answers are cached, so only invalidation can make the next request see the change.
    assert (await _cached(app, f"principal:{person['id']}"))["active"] is True
    assert await _cached(app, f"access:{person['id']}:{project['slug']}") is not None

    response = await api.client.delete(f"/api/v1/users/{person['id']}", headers=auth(admin))
    assert response.status_code == 200
    assert response.json()["active"] is False

    for url in (ME, "/api/v1/projects", f"/api/v1/projects/{project['slug']}"):
        refused = await api.client.get(url, headers=h)
        assert refused.status_code == 401, f"{url}: {refused.status_code}"
        assert refused.headers["content-type"].startswith(PROBLEM)
    created = await api.client.post(
        "/api/v1/projects", json={"slug": "late", "name": "Late"}, headers=h
    )
    assert created.status_code == 401
    # Their refresh tokens are gone too, and they cannot log in again.
    refreshed = await api.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert (await _login(api.client, person["email"], person["password"])).status_code == 401


async def test_role_change_applies_on_the_next_request(app: FastAPI, api: Api) -> None:
    admin = await api.admin_token()
    person = await api.create_user(admin, "data_scientist")
    h = auth(person["token"])
    owned = await api.create_project(person["token"], "before-demotion")
    base = f"/api/v1/projects/{owned['slug']}"
    assert (await api.client.patch(base, json={"description": "a"}, headers=h)).status_code == 200
    assert (await _cached(app, f"principal:{person['id']}"))["role"] == "data_scientist"

    demoted = await api.client.patch(
        f"/api/v1/users/{person['id']}", json={"role": "user"}, headers=auth(admin)
    )
    assert demoted.status_code == 200
    assert demoted.json()["role"] == "user"

    # Same token, no new login: the new role applies at once.
    refused = await api.client.post(
        "/api/v1/projects", json={"slug": "after", "name": "A"}, headers=h
    )
    assert refused.status_code == 403, refused.text
    assert (await api.client.get(ME, headers=h)).json()["role"] == "user"
    # A 'user' is capped at viewer even in a project they own.
    assert (await api.client.get(base, headers=h)).json()["my_role"] == "viewer"
    assert (await api.client.patch(base, json={"description": "b"}, headers=h)).status_code == 403

    promoted = await api.client.patch(
        f"/api/v1/users/{person['id']}", json={"role": "data_scientist"}, headers=auth(admin)
    )
    assert promoted.status_code == 200
    again = await api.client.post(
        "/api/v1/projects", json={"slug": "after", "name": "A"}, headers=h
    )
    assert again.status_code == 201, again.text
    assert (await api.client.patch(base, json={"description": "c"}, headers=h)).status_code == 200


async def _project_with_outsider(api: Api) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    admin = await api.admin_token()
    owner = await api.create_user(admin, "data_scientist")
    member = await api.create_user(admin, "user")
    project = await api.create_project(owner["token"])
    return owner, member, project


async def _set_member(
    api: Api, owner: dict[str, Any], project: dict[str, Any], user: dict[str, Any], role: str
) -> None:
    response = await api.client.put(
        f"/api/v1/projects/{project['slug']}/members/{user['id']}",
        json={"role": role},
        headers=auth(owner["token"]),
    )
    assert response.status_code == 200, response.text


async def _status_by_slug_and_id(
    api: Api, person: dict[str, Any], project: dict[str, Any]
) -> set[int]:
    codes = set()
    for ref in (project["slug"], project["id"]):
        response = await api.client.get(f"/api/v1/projects/{ref}", headers=auth(person["token"]))
        codes.add(response.status_code)
    return codes


async def test_removal_from_a_project_applies_on_the_next_request(app: FastAPI, api: Api) -> None:
    owner, member, project = await _project_with_outsider(api)
    await _set_member(api, owner, project, member, "viewer")
    assert await _status_by_slug_and_id(api, member, project) == {200}
    # Warm: the 'viewer' answer is cached under the slug and the id.
    for ref in (project["slug"], project["id"]):
        cached = await _cached(app, f"access:{member['id']}:{ref}")
        assert isinstance(cached, dict), (ref, cached)
        assert cached["role"] == "viewer", ref

    removed = await api.client.delete(
        f"/api/v1/projects/{project['slug']}/members/{member['id']}", headers=auth(owner["token"])
    )
    assert removed.status_code == 204
    assert await _status_by_slug_and_id(api, member, project) == {404}
    listed = (await api.client.get("/api/v1/projects", headers=auth(member["token"]))).json()
    assert listed["items"] == []


async def test_addition_to_a_project_applies_on_the_next_request(app: FastAPI, api: Api) -> None:
    owner, member, project = await _project_with_outsider(api)
    assert await _status_by_slug_and_id(api, member, project) == {404}
    # Warm: the 'not a member' answer is cached.
    assert await _cached(app, f"access:{member['id']}:{project['slug']}") == "none"
    assert await _cached(app, f"access:{member['id']}:{project['id']}") == "none"

    await _set_member(api, owner, project, member, "viewer")
    assert await _status_by_slug_and_id(api, member, project) == {200}


async def test_membership_role_change_applies_on_the_next_request(app: FastAPI, api: Api) -> None:
    admin = await api.admin_token()
    owner = await api.create_user(admin, "data_scientist")
    member = await api.create_user(admin, "data_scientist")
    project = await api.create_project(owner["token"])
    base = f"/api/v1/projects/{project['slug']}"
    h = auth(member["token"])
    await _set_member(api, owner, project, member, "viewer")
    assert (await api.client.patch(base, json={"description": "x"}, headers=h)).status_code == 403
    assert (await _cached(app, f"access:{member['id']}:{project['slug']}"))["role"] == "viewer"

    await _set_member(api, owner, project, member, "editor")
    assert (await api.client.patch(base, json={"description": "y"}, headers=h)).status_code == 200

    await _set_member(api, owner, project, member, "viewer")
    assert (await api.client.patch(base, json={"description": "z"}, headers=h)).status_code == 403


# --- request ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("incoming", ["req-123", "a.b:c_d-E", "0123456789abcdef" * 8])
async def test_well_formed_request_id_is_accepted_and_returned(
    client: httpx.AsyncClient, incoming: str
) -> None:
    response = await client.get(ME, headers={"X-Request-ID": incoming})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == incoming
    assert response.json()["request_id"] == incoming
    ok = await client.get("/healthz", headers={"X-Request-ID": incoming})
    assert ok.headers["x-request-id"] == incoming


async def test_malformed_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    bad_ids = [
        "has spaces",
        "x" * 129,
        "<script>alert(1)</script>",
        "a\tb",
        "id;rm -rf",
        "é-accent",
    ]
    seen = set()
    for bad in bad_ids:
        response = await client.get(ME, headers={"X-Request-ID": bad.encode("utf-8")})
        returned = response.headers["x-request-id"]
        assert returned != bad
        assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", returned), returned
        assert response.json()["request_id"] == returned
        seen.add(returned)
    assert len(seen) == len(bad_ids), "each replacement is a fresh id"
    first = await client.get("/healthz")
    second = await client.get("/healthz")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
