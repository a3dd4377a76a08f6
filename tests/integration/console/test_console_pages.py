"""The console over the ASGI app (no browser): security headers, cookies, CSRF, escaping,
redirects and sessions that expire with their token."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, auth

from armillary.app import create_app
from armillary.kit.settings import Settings

ORIGIN = "http://testserver"
XSS = "<img src=x onerror=alert(1)></script><script>alert(2)</script>"


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str, next_: str = "/ui"
) -> httpx.Response:
    page = await client.get("/ui/login")
    return await client.post(
        "/ui/login",
        data={
            "email": email,
            "password": password,
            "next": next_,
            "csrf_token": csrf_of(page),
        },
        headers={"Origin": ORIGIN},
    )


@asynccontextmanager
async def signed_in_client(
    app: FastAPI, email: str, password: str, address: str = "127.0.0.1"
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        response = await sign_in(client, email, password)
        assert response.status_code == 303, response.text
        yield client


@pytest.fixture
async def scientist(api: Api) -> dict[str, Any]:
    return await api.create_user(await api.admin_token(), "data_scientist")


@pytest.fixture
async def browser(app: FastAPI, scientist: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in_client(app, scientist["email"], scientist["password"]) as client:
        yield client


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


async def test_root_and_ui_redirect_an_anonymous_browser_to_sign_in(
    client: httpx.AsyncClient,
) -> None:
    root = await client.get("/")
    assert root.status_code == 303
    assert root.headers["location"] == "/ui"
    ui = await client.get("/ui")
    assert ui.status_code == 303
    assert ui.headers["location"] == "/ui/projects"
    projects = await client.get("/ui/projects?offset=0")
    assert projects.status_code == 303
    location = urlsplit(projects.headers["location"])
    assert location.path == "/ui/login"
    assert parse_qs(location.query)["next"] == ["/ui/projects?offset=0"]


async def test_pages_carry_a_strict_content_security_policy(client: httpx.AsyncClient) -> None:
    page = await client.get("/ui/login")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert "unsafe" not in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    # No inline script or style for the policy to have to allow.
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", page.text))
    assert "<style" not in page.text
    assert " style=" not in page.text
    # The vendored assets are served by the process itself.
    for asset in (
        "/ui/static/vendor/htmx.min.js",
        "/ui/static/console.js",
        "/ui/static/console.css",
    ):
        assert (await client.get(asset)).status_code == 200, asset


async def test_sign_in_sets_strict_http_only_cookies_that_expire_with_the_token(
    client: httpx.AsyncClient, scientist: dict[str, Any], settings: Settings
) -> None:
    response = await sign_in(client, scientist["email"], scientist["password"], "/ui/projects")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/projects"
    cookies = set_cookies(response)
    session = cookies["armillary_session"]
    for flag in (
        "HttpOnly",
        "SameSite=strict",
        "Path=/ui",
        f"Max-Age={settings.access_token_ttl_seconds}",
    ):
        assert flag.lower() in session.lower(), session
    assert "secure" not in session.lower()  # plain HTTP: a Secure cookie would never return
    assert "path=/ui/logout" in cookies["armillary_refresh"].lower()
    assert "httponly" in cookies["armillary_csrf"].lower()
    page = await client.get("/ui/projects")
    assert page.status_code == 200
    assert scientist["name"] in page.text


async def test_cookies_are_secure_over_tls(app: FastAPI, scientist: dict[str, Any]) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        page = await client.get("/ui/login")
        assert "secure" in set_cookies(page)["armillary_csrf"].lower()
        response = await client.post(
            "/ui/login",
            data={
                "email": scientist["email"],
                "password": scientist["password"],
                "csrf_token": csrf_of(page),
            },
            headers={"Origin": "https://testserver"},
        )
        assert response.status_code == 303
        assert "secure" in set_cookies(response)["armillary_session"].lower()


async def test_a_wrong_password_shows_the_form_again(
    client: httpx.AsyncClient, scientist: dict[str, Any]
) -> None:
    response = await sign_in(client, scientist["email"], "not-the-password")
    assert response.status_code == 401
    assert "Wrong email or password" in response.text
    assert "armillary_session" not in set_cookies(response)


async def test_next_cannot_leave_the_console(
    client: httpx.AsyncClient, scientist: dict[str, Any]
) -> None:
    for target in ("https://evil.example/", "//evil.example/ui", "/api/v1/users", "/ui\\@evil"):
        await client.post("/ui/logout")  # forget the previous session's cookies
        client.cookies.clear()
        response = await sign_in(client, scientist["email"], scientist["password"], target)
        assert response.headers["location"] == "/ui", target


async def projects_named(api: Api, token: str) -> list[str]:
    listed = await api.client.get("/api/v1/projects", headers=auth(token))
    return [p["slug"] for p in listed.json()["items"]]


async def test_a_cross_origin_or_tokenless_post_changes_nothing(
    browser: httpx.AsyncClient, api: Api, scientist: dict[str, Any]
) -> None:
    page = await browser.get("/ui/projects")
    token = csrf_of(page)
    form = {"slug": "forged", "name": "Forged", "csrf_token": token}
    cross = await browser.post(
        "/ui/projects", data=form, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    no_origin = await browser.post("/ui/projects", data=form)
    assert no_origin.status_code == 403
    tokenless = await browser.post(
        "/ui/projects", data={"slug": "forged", "name": "Forged"}, headers={"Origin": ORIGIN}
    )
    assert tokenless.status_code == 403
    wrong = await browser.post(
        "/ui/projects", data={**form, "csrf_token": "x" * 43}, headers={"Origin": ORIGIN}
    )
    assert wrong.status_code == 403
    assert await projects_named(api, scientist["token"]) == []
    # The same form from the console's own page goes through.
    done = await browser.post("/ui/projects", data=form, headers={"Origin": ORIGIN})
    assert done.status_code == 303
    assert done.headers["location"] == "/ui/projects/forged"
    assert await projects_named(api, scientist["token"]) == ["forged"]


async def test_sign_out_needs_the_csrf_token_and_ends_the_session(
    browser: httpx.AsyncClient, api: Api, scientist: dict[str, Any]
) -> None:
    forged = await browser.post("/ui/logout", headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert (await browser.get("/ui/projects")).status_code == 200
    token = csrf_of(await browser.get("/ui/projects"))
    out = await browser.post("/ui/logout", data={"csrf_token": token}, headers={"Origin": ORIGIN})
    assert out.status_code == 303
    assert out.headers["location"] == "/ui/login"
    assert "max-age=0" in set_cookies(out)["armillary_session"].lower()
    assert (await browser.get("/ui/projects")).status_code == 303


async def test_user_strings_render_as_text(
    browser: httpx.AsyncClient, api: Api, scientist: dict[str, Any]
) -> None:
    response = await api.client.post(
        "/api/v1/projects",
        json={"slug": "xss", "name": XSS, "description": XSS},
        headers=auth(scientist["token"]),
    )
    assert response.status_code == 201, response.text
    for url in ("/ui/projects", "/ui/projects/xss", "/ui/projects/xss/jobs"):
        page = await browser.get(url)
        assert page.status_code == 200, url
        assert "<img src=x" not in page.text, url
        assert "</script><script>alert" not in page.text, url
        assert "&lt;img src=x onerror=alert(1)&gt;&lt;/script&gt;" in page.text, url


async def test_a_rejected_create_keeps_what_was_typed(browser: httpx.AsyncClient) -> None:
    token = csrf_of(await browser.get("/ui/projects"))
    response = await browser.post(
        "/ui/projects",
        data={"slug": "Not A Slug", "name": "Kept name", "csrf_token": token},
        headers={"Origin": ORIGIN},
    )
    assert response.status_code == 422
    assert 'value="Kept name"' in response.text
    assert 'class="error"' in response.text


async def test_a_user_role_account_cannot_create_a_project_here_either(
    app: FastAPI, api: Api
) -> None:
    user = await api.create_user(await api.admin_token(), "user")
    async with signed_in_client(app, user["email"], user["password"]) as client:
        token = csrf_of(await client.get("/ui/projects"))
        response = await client.post(
            "/ui/projects",
            data={"slug": "mine", "name": "Mine", "csrf_token": token},
            headers={"Origin": ORIGIN},
        )
        assert response.status_code == 403
        assert await projects_named(api, await api.admin_token()) == []


async def test_a_non_members_project_url_is_not_found(browser: httpx.AsyncClient, api: Api) -> None:
    other = await api.create_user(await api.admin_token(), "data_scientist")
    await api.create_project(other["token"], "secret-project")
    for url in (
        "/ui/projects/secret-project",
        "/ui/projects/secret-project/jobs",
        "/ui/projects/secret-project/workflows",
        "/ui/projects/no-such-project",
        "/ui/projects/%2E%2E/jobs",  # no dot segment reaches the API's URL
    ):
        page = await browser.get(url)
        assert page.status_code == 404, url
        assert "Not found" in page.text
        assert "secret-project" not in page.text.replace(url, "")


SPEC: dict[str, Any] = {"name": "pair", "tasks": [{"name": "x", "type": "noop"}]}


async def test_the_job_page_follows_a_running_job_and_stops_when_it_ends(
    browser: httpx.AsyncClient, api: Api, scientist: dict[str, Any]
) -> None:
    token = scientist["token"]
    await api.create_project(token, "live")
    applied = await api.client.post(
        "/api/v1/projects/live/workflows", json=SPEC, headers=auth(token)
    )
    assert applied.status_code == 201, applied.text
    job = (
        await api.client.post(
            "/api/v1/projects/live/workflows/pair/jobs", json={}, headers=auth(token)
        )
    ).json()
    page = await browser.get(f"/ui/projects/live/jobs/{job['id']}")
    assert page.status_code == 200
    live = f'data-live-url="/ui/projects/live/jobs/{job["id"]}/live"'
    assert live in page.text  # queued: the page polls
    fragment = await browser.get(f"/ui/projects/live/jobs/{job['id']}/live")
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert 'id="job-live"' in fragment.text
    assert live in fragment.text
    cancelled = await api.client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=auth(token))
    assert cancelled.status_code == 200, cancelled.text
    fragment = await browser.get(f"/ui/projects/live/jobs/{job['id']}/live")
    assert "cancelled" in fragment.text
    assert "data-live-url" not in fragment.text
    # A job id under another project's URL is not found.
    await api.create_project(token, "elsewhere")
    assert (await browser.get(f"/ui/projects/elsewhere/jobs/{job['id']}")).status_code == 404


@asynccontextmanager
async def app_with(settings: Settings) -> AsyncIterator[tuple[FastAPI, Api]]:
    app = create_app(settings, configure_logs=False)
    async with LifespanManager(app, startup_timeout=60):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 1))
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
            yield app, Api(http)


async def test_the_apis_rate_limits_apply_to_the_consoles_writes(
    settings_factory: Callable[..., Settings],
) -> None:
    async with app_with(settings_factory(rate_limit_write="2/minute")) as (app, api):
        admin = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        user = await api.create_user(admin, "data_scientist")  # the admin's first write
        async with signed_in_client(app, user["email"], user["password"]) as client:
            statuses = []
            for slug in ("one", "two", "three"):
                token = csrf_of(await client.get("/ui/projects"))
                response = await client.post(
                    "/ui/projects",
                    data={"slug": slug, "name": slug, "csrf_token": token},
                    headers={"Origin": ORIGIN},
                )
                statuses.append(response.status_code)
        # The pages themselves (sign-in included) take nothing from the budget: the API's
        # limit on the signed-in user decides, and its refusal is shown.
        assert statuses == [303, 303, 429]
        assert sorted(await projects_named(api, admin)) == ["one", "two"]


async def test_an_expired_session_returns_to_sign_in_and_back(
    settings_factory: Callable[..., Settings],
) -> None:
    # Long enough for the set-up on a loaded machine (an admin token that expired before the
    # user was made failed it), then wait for the session's own expiry.
    async with app_with(settings_factory(access_token_ttl_seconds=5)) as (app, api):
        admin = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        user = await api.create_user(admin, "data_scientist")
        async with signed_in_client(app, user["email"], user["password"]) as client:
            session = client.cookies.get("armillary_session")
            assert session
            expires = jwt.decode(session, options={"verify_signature": False})["exp"]
            await asyncio.sleep(max(0.0, expires - time.time()) + 1.1)
            headers = {"Cookie": f"armillary_session={session}"}
            client.cookies.clear()
            page = await client.get("/ui/projects?offset=0", headers=headers)
            assert page.status_code == 303
            location = urlsplit(page.headers["location"])
            assert location.path == "/ui/login"
            assert parse_qs(location.query)["next"] == ["/ui/projects?offset=0"]
            assert "max-age=0" in set_cookies(page)["armillary_session"].lower()
            # A live fragment sends the whole tab to sign-in, back to the page it was on.
            fragment = await client.get(
                "/ui/projects/p/jobs/j/live",
                headers={
                    **headers,
                    "HX-Request": "true",
                    "HX-Current-URL": f"{ORIGIN}/ui/projects/p/jobs/j",
                },
            )
            target = urlsplit(fragment.headers["hx-redirect"])
            assert parse_qs(target.query)["next"] == ["/ui/projects/p/jobs/j"]


async def test_the_apis_audit_sees_the_browsers_address_and_the_console(
    app: FastAPI, api: Api, scientist: dict[str, Any]
) -> None:
    async with signed_in_client(
        app, scientist["email"], scientist["password"], address="203.0.113.9"
    ) as client:
        token = csrf_of(await client.get("/ui/projects"))
        done = await client.post(
            "/ui/projects",
            data={"slug": "audited", "name": "Audited", "csrf_token": token},
            headers={"Origin": ORIGIN},
        )
        assert done.status_code == 303
    records = await api.client.get(
        "/api/v1/audit",
        params={"action": "projects.create"},
        headers=auth(await api.admin_token()),
    )
    assert records.status_code == 200, records.text
    [record] = records.json()["items"]
    assert record["actor_id"] == scientist["id"]
    assert record["client_address"] == "203.0.113.9"
    assert record["user_agent"] == "armillary-console"


async def test_a_viewer_sees_their_project_and_no_other(app: FastAPI, api: Api) -> None:
    admin = await api.admin_token()
    owner = await api.create_user(admin, "data_scientist")
    await api.create_project(owner["token"], "shared")
    await api.create_project(owner["token"], "unshared")
    viewer = await api.create_user(admin, "user")
    added = await api.client.put(
        f"/api/v1/projects/shared/members/{viewer['email']}",
        json={"role": "viewer"},
        headers=auth(owner["token"]),
    )
    assert added.status_code == 200, added.text
    async with signed_in_client(app, viewer["email"], viewer["password"]) as client:
        listed = await client.get("/ui/projects")
        assert "/ui/projects/shared" in listed.text
        assert "unshared" not in listed.text
        overview = await client.get("/ui/projects/shared")
        assert overview.status_code == 200
        assert "your role: viewer" in overview.text
        assert (await client.get("/ui/projects/unshared")).status_code == 404


async def test_cancelling_a_job_is_a_protected_write_the_api_permits(
    app: FastAPI, browser: httpx.AsyncClient, api: Api, scientist: dict[str, Any]
) -> None:
    token = scientist["token"]
    await api.create_project(token, "stoppable")
    applied = await api.client.post(
        "/api/v1/projects/stoppable/workflows", json=SPEC, headers=auth(token)
    )
    assert applied.status_code == 201, applied.text
    job = (
        await api.client.post(
            "/api/v1/projects/stoppable/workflows/pair/jobs", json={}, headers=auth(token)
        )
    ).json()
    page_url = f"/ui/projects/stoppable/jobs/{job['id']}"
    cancel_url = f"{page_url}/cancel"

    async def status() -> str:
        found = await api.client.get(f"/api/v1/jobs/{job['id']}", headers=auth(token))
        return str(found.json()["status"])

    # A viewer sees no button, and the API refuses the write when sent anyway.
    viewer = await api.create_user(await api.admin_token(), "user")
    await api.client.put(
        f"/api/v1/projects/stoppable/members/{viewer['email']}",
        json={"role": "viewer"},
        headers=auth(token),
    )
    async with signed_in_client(app, viewer["email"], viewer["password"]) as other:
        page = await other.get(page_url)
        assert "Cancel job" not in page.text
        refused = await other.post(
            cancel_url, data={"csrf_token": csrf_of(page)}, headers={"Origin": ORIGIN}
        )
        assert refused.status_code == 404
    page = await browser.get(page_url)
    assert "Cancel job" in page.text
    forged = await browser.post(
        cancel_url, data={"csrf_token": csrf_of(page)}, headers={"Origin": "https://evil.example"}
    )
    assert forged.status_code == 403
    assert await status() == "queued"
    done = await browser.post(
        cancel_url, data={"csrf_token": csrf_of(page)}, headers={"Origin": ORIGIN}
    )
    assert done.status_code == 303
    assert done.headers["location"] == page_url
    assert await status() == "cancelled"
