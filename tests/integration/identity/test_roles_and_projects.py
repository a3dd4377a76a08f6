"""Platform roles, project membership roles and their caps, object isolation between users,
and request bodies that try to smuggle in privileged fields."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from tests.conftest import Api, auth

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, case: str = "") -> dict[str, Any]:
    assert response.status_code == status, f"{case}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith(PROBLEM), case
    body: dict[str, Any] = response.json()
    assert body["status"] == status, case
    return body


async def _admin_only_calls(api: Api, token: str, target_id: str) -> dict[str, httpx.Response]:
    c = api.client
    h = auth(token)
    email = f"sneaky-{secrets.token_hex(4)}@example.com"
    return {
        "GET /users": await c.get("/api/v1/users", headers=h),
        "POST /users": await c.post(
            "/api/v1/users",
            json={"email": email, "name": "Sneaky", "role": "admin", "password": "p" * 16},
            headers=h,
        ),
        "GET /users/{id}": await c.get(f"/api/v1/users/{target_id}", headers=h),
        "PATCH /users/{id}": await c.patch(
            f"/api/v1/users/{target_id}", json={"role": "admin"}, headers=h
        ),
        "DELETE /users/{id}": await c.delete(f"/api/v1/users/{target_id}", headers=h),
        "GET /audit": await c.get("/api/v1/audit", headers=h),
        "GET /audit?action": await c.get("/api/v1/audit?action=auth.login", headers=h),
        "GET /audit/verify": await c.get("/api/v1/audit/verify", headers=h),
    }


async def test_non_admins_get_403_on_admin_routes_and_change_nothing(api: Api) -> None:
    admin = await api.admin_token()
    user = await api.create_user(admin, "user")
    scientist = await api.create_user(admin, "data_scientist")
    for caller in (user, scientist):
        # Their own account and someone else's: neither is theirs to administer.
        for target in (caller["id"], user["id"] if caller is scientist else scientist["id"]):
            for case, response in (await _admin_only_calls(api, caller["token"], target)).items():
                assert_problem(response, 403, f"{caller['role']} {case}")

    # Nothing happened: no account was created, nobody was promoted or deactivated.
    users = (await api.client.get("/api/v1/users", headers=auth(admin))).json()
    assert users["total"] == 3
    by_id = {u["id"]: u for u in users["items"]}
    assert by_id[user["id"]]["role"] == "user"
    assert by_id[user["id"]]["active"]
    assert by_id[scientist["id"]]["role"] == "data_scientist"
    assert by_id[scientist["id"]]["active"]
    me = await api.client.get("/api/v1/auth/me", headers=auth(scientist["token"]))
    assert me.json()["role"] == "data_scientist"


async def test_admin_may_use_the_admin_routes(api: Api) -> None:
    admin = await api.admin_token()
    target = await api.create_user(admin, "user")
    h = auth(admin)
    assert (await api.client.get("/api/v1/users", headers=h)).status_code == 200
    assert (await api.client.get(f"/api/v1/users/{target['id']}", headers=h)).status_code == 200
    assert (await api.client.get("/api/v1/audit", headers=h)).status_code == 200
    assert (await api.client.get("/api/v1/audit/verify", headers=h)).status_code == 200
    patched = await api.client.patch(
        f"/api/v1/users/{target['id']}", json={"role": "data_scientist"}, headers=h
    )
    assert patched.status_code == 200
    assert patched.json()["role"] == "data_scientist"


async def test_only_data_scientists_and_admins_create_projects(api: Api) -> None:
    admin = await api.admin_token()
    user = await api.create_user(admin, "user")
    scientist = await api.create_user(admin, "data_scientist")
    refused = await api.client.post(
        "/api/v1/projects", json={"slug": "by-user", "name": "By user"}, headers=auth(user["token"])
    )
    assert_problem(refused, 403, "user creates a project")
    assert (await api.create_project(scientist["token"], "by-scientist"))["my_role"] == "owner"
    assert (await api.create_project(admin, "by-admin"))["my_role"] == "owner"
    listed = (await api.client.get("/api/v1/projects", headers=auth(admin))).json()
    assert sorted(p["slug"] for p in listed["items"]) == ["by-admin", "by-scientist"]


async def test_another_users_project_is_invisible_by_slug_and_by_id(api: Api) -> None:
    admin = await api.admin_token()
    alice = await api.create_user(admin, "data_scientist")
    bob = await api.create_user(admin, "data_scientist")
    project = await api.create_project(alice["token"], "alice-secret")
    own = await api.create_project(bob["token"], "bob-own")
    c = api.client
    h = auth(bob["token"])
    for ref in (project["slug"], project["id"]):
        base = f"/api/v1/projects/{ref}"
        calls = {
            "GET": await c.get(base, headers=h),
            "PATCH": await c.patch(base, json={"name": "pwned"}, headers=h),
            "DELETE": await c.delete(base, headers=h),
            "GET members": await c.get(f"{base}/members", headers=h),
            "PUT self as owner": await c.put(
                f"{base}/members/{bob['id']}", json={"role": "owner"}, headers=h
            ),
            "PUT self by email": await c.put(
                f"{base}/members/{bob['email']}", json={"role": "viewer"}, headers=h
            ),
            "DELETE owner": await c.delete(f"{base}/members/{alice['id']}", headers=h),
            "GET access": await c.get(f"{base}/access", headers=h),
        }
        for case, response in calls.items():
            body = assert_problem(response, 404, f"{case} {ref}")
            assert "alice" not in response.text.replace(body.get("instance", ""), "")

    listed = (await c.get("/api/v1/projects", headers=h)).json()
    assert [p["slug"] for p in listed["items"]] == [own["slug"]]
    assert listed["total"] == 1
    paged = (await c.get("/api/v1/projects?limit=1&offset=1", headers=h)).json()
    assert paged["items"] == []

    # Alice's project is exactly as it was, and Bob did not become a member.
    after = await c.get(f"/api/v1/projects/{project['slug']}", headers=auth(alice["token"]))
    assert after.status_code == 200
    assert after.json()["name"] == project["name"]
    members = await c.get(
        f"/api/v1/projects/{project['slug']}/members", headers=auth(alice["token"])
    )
    assert [m["user_id"] for m in members.json()] == [alice["id"]]


async def test_viewer_reads_but_may_not_change(api: Api) -> None:
    admin = await api.admin_token()
    owner = await api.create_user(admin, "data_scientist")
    viewer = await api.create_user(admin, "user")
    other = await api.create_user(admin, "user")
    project = await api.create_project(owner["token"])
    base = f"/api/v1/projects/{project['slug']}"
    added = await api.client.put(
        f"{base}/members/{viewer['id']}", json={"role": "viewer"}, headers=auth(owner["token"])
    )
    assert added.status_code == 200, added.text
    assert added.json()["role"] == "viewer"

    c = api.client
    h = auth(viewer["token"])
    for ref in (project["slug"], project["id"]):
        got = await c.get(f"/api/v1/projects/{ref}", headers=h)
        assert got.status_code == 200, got.text
        assert got.json()["my_role"] == "viewer"
    assert (await c.get(f"{base}/members", headers=h)).status_code == 200
    assert [p["slug"] for p in (await c.get("/api/v1/projects", headers=h)).json()["items"]] == [
        project["slug"]
    ]
    forbidden = {
        "PATCH": await c.patch(base, json={"name": "renamed"}, headers=h),
        "DELETE": await c.delete(base, headers=h),
        "PUT member": await c.put(
            f"{base}/members/{other['id']}", json={"role": "viewer"}, headers=h
        ),
        "promote self": await c.put(
            f"{base}/members/{viewer['id']}", json={"role": "owner"}, headers=h
        ),
        "remove owner": await c.delete(f"{base}/members/{owner['id']}", headers=h),
    }
    for case, response in forbidden.items():
        assert_problem(response, 403, f"viewer {case}")
    after = (await c.get(base, headers=auth(owner["token"]))).json()
    assert after["name"] == project["name"]
    roles = {m["user_id"]: m["role"] for m in (await c.get(f"{base}/members", headers=h)).json()}
    assert roles == {owner["id"]: "owner", viewer["id"]: "viewer"}


async def test_editor_changes_the_project_but_not_its_members(api: Api) -> None:
    admin = await api.admin_token()
    owner = await api.create_user(admin, "data_scientist")
    editor = await api.create_user(admin, "data_scientist")
    project = await api.create_project(owner["token"])
    base = f"/api/v1/projects/{project['slug']}"
    await api.client.put(
        f"{base}/members/{editor['email']}", json={"role": "editor"}, headers=auth(owner["token"])
    )
    h = auth(editor["token"])
    patched = await api.client.patch(base, json={"description": "edited"}, headers=h)
    assert patched.status_code == 200, patched.text
    assert patched.json()["description"] == "edited"
    assert_problem(await api.client.delete(base, headers=h), 403, "editor deletes project")
    promote = await api.client.put(
        f"{base}/members/{editor['id']}", json={"role": "owner"}, headers=h
    )
    assert_problem(promote, 403, "editor promotes self")


async def test_a_user_account_can_be_at_most_viewer(api: Api) -> None:
    admin = await api.admin_token()
    owner = await api.create_user(admin, "data_scientist")
    user = await api.create_user(admin, "user")
    project = await api.create_project(owner["token"])
    base = f"/api/v1/projects/{project['slug']}"
    for role in ("editor", "owner"):
        response = await api.client.put(
            f"{base}/members/{user['id']}", json={"role": role}, headers=auth(owner["token"])
        )
        assert_problem(response, 422, f"user as {role}")
    members = (await api.client.get(f"{base}/members", headers=auth(owner["token"]))).json()
    assert [m["user_id"] for m in members] == [owner["id"]]
    # An admin acting as owner cannot lift the cap either.
    by_admin = await api.client.put(
        f"{base}/members/{user['id']}", json={"role": "editor"}, headers=auth(admin)
    )
    assert_problem(by_admin, 422, "admin makes user editor")
    ok = await api.client.put(
        f"{base}/members/{user['id']}", json={"role": "viewer"}, headers=auth(owner["token"])
    )
    assert ok.status_code == 200


async def test_the_last_owner_stays(api: Api) -> None:
    admin = await api.admin_token()
    owner = await api.create_user(admin, "data_scientist")
    second = await api.create_user(admin, "data_scientist")
    project = await api.create_project(owner["token"])
    base = f"/api/v1/projects/{project['slug']}"
    h = auth(owner["token"])
    assert_problem(
        await api.client.delete(f"{base}/members/{owner['id']}", headers=h),
        409,
        "remove last owner",
    )
    for role in ("editor", "viewer"):
        demote = await api.client.put(
            f"{base}/members/{owner['id']}", json={"role": role}, headers=h
        )
        assert_problem(demote, 409, f"demote last owner to {role}")
    roles = (await api.client.get(f"{base}/members", headers=h)).json()
    assert [(m["user_id"], m["role"]) for m in roles] == [(owner["id"], "owner")]

    # With a second owner, the first may step down.
    await api.client.put(f"{base}/members/{second['id']}", json={"role": "owner"}, headers=h)
    stepped = await api.client.put(
        f"{base}/members/{owner['id']}", json={"role": "viewer"}, headers=h
    )
    assert stepped.status_code == 200, stepped.text
    # ...and now the second is the last owner.
    last = await api.client.delete(f"{base}/members/{second['id']}", headers=auth(second["token"]))
    assert_problem(last, 409, "remove the new last owner")


async def test_privileged_or_unknown_fields_in_bodies_are_422(api: Api) -> None:
    admin = await api.admin_token()
    scientist = await api.create_user(admin, "data_scientist")
    other = await api.create_user(admin, "user")
    project = await api.create_project(scientist["token"], "fields")
    base = f"/api/v1/projects/{project['slug']}"
    c = api.client
    h = auth(scientist["token"])
    a = auth(admin)
    cases: dict[str, tuple[str, str, dict[str, Any], dict[str, str]]] = {
        "project create with owner_id": (
            "POST",
            "/api/v1/projects",
            {"slug": "p-owner", "name": "x", "owner_id": other["id"]},
            h,
        ),
        "project create with role": (
            "POST",
            "/api/v1/projects",
            {"slug": "p-role", "name": "x", "role": "owner"},
            h,
        ),
        "project create with created_by": (
            "POST",
            "/api/v1/projects",
            {"slug": "p-by", "name": "x", "created_by": other["id"]},
            h,
        ),
        "project create with unknown field": (
            "POST",
            "/api/v1/projects",
            {"slug": "p-x", "name": "x", "colour": "crimson-marker-7"},
            h,
        ),
        "project update with owner_id": ("PATCH", base, {"owner_id": other["id"]}, h),
        "project update with role": ("PATCH", base, {"role": "owner"}, h),
        "project update with slug": ("PATCH", base, {"slug": "renamed"}, h),
        "project update with id": ("PATCH", base, {"id": other["id"]}, h),
        "member set with owner_id": (
            "PUT",
            f"{base}/members/{other['id']}",
            {"role": "viewer", "owner_id": other["id"]},
            h,
        ),
        "member set with a platform role": (
            "PUT",
            f"{base}/members/{other['id']}",
            {"role": "admin"},
            h,
        ),
        "user update with unknown field": (
            "PATCH",
            f"/api/v1/users/{other['id']}",
            {"is_superuser": True},
            a,
        ),
        "user update with password": (
            "PATCH",
            f"/api/v1/users/{other['id']}",
            {"password": "x" * 20},
            a,
        ),
        "user update with email": (
            "PATCH",
            f"/api/v1/users/{other['id']}",
            {"email": "taken@example.com"},
            a,
        ),
        "user update with bad role": ("PATCH", f"/api/v1/users/{other['id']}", {"role": "root"}, a),
        "user create with unknown field": (
            "POST",
            "/api/v1/users",
            {
                "email": "x@example.com",
                "name": "X",
                "role": "user",
                "password": "p" * 16,
                "active": False,
            },
            a,
        ),
        "user create with bad role": (
            "POST",
            "/api/v1/users",
            {"email": "y@example.com", "name": "Y", "role": "superuser", "password": "p" * 16},
            a,
        ),
        "refresh with unknown field": (
            "POST",
            "/api/v1/auth/refresh",
            {"refresh_token": "x" * 20, "sub": "a"},
            {},
        ),
    }
    for case, (method, url, body, headers) in cases.items():
        response = await c.request(method, url, json=body, headers=headers)
        problem = assert_problem(response, 422, case)
        assert problem["errors"], case
        # The rejected input is not echoed back.
        assert "crimson-marker-7" not in response.text, case
        assert "taken@example.com" not in response.text, case

    # None of it had an effect.
    listed = (await c.get("/api/v1/projects", headers=a)).json()
    assert [p["slug"] for p in listed["items"]] == ["fields"]
    got = (await c.get(base, headers=h)).json()
    assert got["name"] == project["name"]
    assert got["created_by"] == scientist["id"]
    members = (await c.get(f"{base}/members", headers=h)).json()
    assert [m["user_id"] for m in members] == [scientist["id"]]
    users = (await c.get("/api/v1/users", headers=a)).json()
    assert users["total"] == 3
    target = (await c.get(f"/api/v1/users/{other['id']}", headers=a)).json()
    assert target["role"] == "user"
    assert target["active"]
    assert target["email"] == other["email"]


async def test_admin_sees_and_manages_every_project(api: Api) -> None:
    admin = await api.admin_token()
    alice = await api.create_user(admin, "data_scientist")
    bob = await api.create_user(admin, "data_scientist")
    a = await api.create_project(alice["token"], "alpha")
    b = await api.create_project(bob["token"], "beta")
    listed = (await api.client.get("/api/v1/projects", headers=auth(admin))).json()
    assert sorted(p["slug"] for p in listed["items"]) == ["alpha", "beta"]
    assert listed["total"] == 2
    for project in (a, b):
        got = await api.client.get(f"/api/v1/projects/{project['id']}", headers=auth(admin))
        assert got.status_code == 200
        assert got.json()["slug"] == project["slug"]
        assert got.json()["my_role"] == "owner"
    # Each scientist still sees only their own.
    for person, slug in ((alice, "alpha"), (bob, "beta")):
        own = (await api.client.get("/api/v1/projects", headers=auth(person["token"]))).json()
        assert [p["slug"] for p in own["items"]] == [slug]
