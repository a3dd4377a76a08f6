"""The console behind the gateway (issue 19): `/` and `/ui` alone go to the console's
process, the token is read from the console's cookie on those routes only, and the JSON
API's routes stay bearer-only (a cookie alone there is a 401 at the edge)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from tests.conftest import Api, auth
from tests.integration.gateway.support import Gateway, gateway_for, upstream_requests
from tests.integration.gateway.test_gateway_live import assert_problem, refused_at_edge
from tests.security.test_tokens import ed25519_token, forge_for

from armillary.console import session
from armillary.gateway import console
from armillary.gateway.auth import JWT_FILTER, PROVIDER
from armillary.gateway.config import bootstrap
from armillary.gateway.settings import SERVICES, GatewaySettings

ME = "/api/v1/auth/me"


def _hcm() -> dict[str, Any]:
    config = bootstrap(GatewaySettings())
    listener = config["static_resources"]["listeners"][0]
    return dict(listener["filter_chains"][0]["filters"][0]["typed_config"])


def _routes() -> list[dict[str, Any]]:
    return list(_hcm()["route_config"]["virtual_hosts"][0]["routes"])


def test_only_the_root_and_ui_go_to_the_console() -> None:
    to_console = [r for r in _routes() if r.get("route", {}).get("cluster") == "console"]
    matches = {
        (key, value)
        for route in to_console
        for key, value in route["match"].items()
        if key != "safe_regex"
    }
    assert matches == {
        ("path", "/"),
        ("path", "/ui"),
        ("prefix", "/ui/"),
        ("path", "/ui/login"),
        ("path", "/ui/logout"),
        ("prefix", "/ui/static/"),
    }
    # The streaming ones are under /ui/ too, with the cookie's requirement.
    streaming = [r for r in to_console if "safe_regex" in r["match"]]
    assert {r["name"] for r in streaming} == {name for name, _ in console.STREAMING}
    for route in streaming:
        assert route["match"]["safe_regex"]["regex"].startswith("/ui/projects/")
        assert route["route"]["timeout"] == "0s"
        assert route["route"]["idle_timeout"]
    # No catch-all anywhere: an unknown path is the gateway's own 404.
    assert not [r for r in _routes() if r["match"] in ({"prefix": "/"}, {"prefix": ""})]
    clusters = {c["name"] for c in bootstrap(GatewaySettings())["static_resources"]["clusters"]}
    assert "console" in clusters


def test_the_cookie_is_read_on_console_pages_only() -> None:
    jwt = _hcm()["http_filters"][0]["typed_config"]
    providers = jwt["providers"]
    # The API's provider reads the Authorization header and nothing else.
    assert providers[PROVIDER]["from_headers"] == [
        {"name": "Authorization", "value_prefix": "Bearer "}
    ]
    assert "from_cookies" not in providers[PROVIDER]
    # The console's provider reads the console's own session cookie, and only it, with the
    # same issuer, audience, keys and expiry checks.
    cookie = providers[console.PROVIDER]
    assert cookie["from_cookies"] == [session.SESSION_COOKIE]
    assert "from_headers" not in cookie
    assert "from_params" not in cookie
    for same in ("issuer", "audiences", "remote_jwks", "require_expiration"):
        assert cookie[same] == providers[PROVIDER][same]
    # Its requirement is named by the console's pages and by no other route.
    requirement = jwt["requirement_map"][console.REQUIREMENT]
    assert {"provider_name": console.PROVIDER} in requirement["requires_any"]["requirements"]
    users = {
        route["name"]
        for route in _routes()
        if route["typed_per_filter_config"][JWT_FILTER].get("requirement_name")
        == console.REQUIREMENT
    }
    assert users == {"console:ui", "console:pages"} | {name for name, _ in console.STREAMING}
    for route in _routes():
        if route.get("route", {}).get("cluster") not in (None, "console"):
            assert (
                route["typed_per_filter_config"][JWT_FILTER].get("requirement_name")
                != console.REQUIREMENT
            ), route["name"]


@pytest.fixture
async def edge(app: FastAPI, tmp_path: Path) -> Any:
    # Every cluster, the console's included, is the embedded platform, which serves /ui.
    async with gateway_for(app, tmp_path) as gateway:
        yield gateway


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def _sign_in(client: httpx.AsyncClient, email: str, password: str) -> None:
    page = await client.get("/ui/login")
    assert page.status_code == 200, page.text
    signed = await client.post(
        "/ui/login",
        data={"email": email, "password": password, "next": "/ui", "csrf_token": _csrf(page)},
        headers={"Origin": str(client.base_url).rstrip("/")},
    )
    assert signed.status_code == 303, signed.text
    assert client.cookies.get(session.SESSION_COOKIE)


async def test_signed_out_pages_pass_and_the_cookie_signs_in_console_pages_only(
    app: FastAPI, api: Api, edge: Gateway
) -> None:
    admin = await api.admin_token()
    scientist = await api.create_user(admin, "data_scientist")
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as browser:
        # Signed out: `/`, sign-in and the assets pass; a page goes to the console, which
        # sends the browser to sign-in with its way back.
        root = await browser.get("/")
        assert (root.status_code, root.headers["location"]) == (303, "/ui")
        assert (await browser.get("/ui/static/console.css")).status_code == 200
        page = await browser.get("/ui/projects")
        assert page.status_code == 303
        assert urlsplit(page.headers["location"]).path == "/ui/login"
        assert "next=" in page.headers["location"]
        # The gateway's own 404s are not swallowed by the console.
        for path in ("/nothing-here", "/uix", "/api/v9/x"):
            await refused_at_edge(browser, "GET", path, 404, "Not found")

        await _sign_in(browser, scientist["email"], scientist["password"])
        projects = await browser.get("/ui/projects")
        assert projects.status_code == 200, projects.text
        assert "text/html" in projects.headers["content-type"]
        token = browser.cookies.get(session.SESSION_COOKIE)

        # The same valid token as a cookie alone on the JSON API: 401 at the edge.
        cookie_only = httpx.AsyncClient(
            base_url=edge.url, timeout=30, cookies={session.SESSION_COOKIE: str(token)}
        )
        async with cookie_only:
            await refused_at_edge(cookie_only, "GET", ME, 401, "Not authenticated")
            await refused_at_edge(cookie_only, "GET", "/api/v1/projects", 401, "Not authenticated")
        # As a bearer token it passes.
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
            me = await client.get(ME, headers=auth(str(token)))
            assert me.status_code == 200, me.text


async def test_a_bad_session_cookie_is_stopped_at_the_edge_and_sent_to_sign_in(
    app: FastAPI, api: Api, edge: Gateway
) -> None:
    admin = await api.admin_token()
    forge = await forge_for(app, api.client, admin)
    now = int(time.time())
    bad = {
        "forged": ed25519_token(Ed25519PrivateKey.generate(), forge.header(), forge.claims()),
        "expired": forge.real(exp=now - 120, iat=now - 1000),
        "wrong audience": forge.real(aud="someone-else"),
        "garbage": "not.a.token",
    }
    for case, token in bad.items():
        async with httpx.AsyncClient(
            base_url=edge.url, timeout=30, cookies={session.SESSION_COOKIE: token}
        ) as browser:
            before = upstream_requests()
            response = await browser.get("/ui/projects")
            assert upstream_requests() == before, f"{case} reached the console"
            assert response.status_code == 303, (case, response.text)
            assert response.headers["location"] == "/ui/login"
            assert f"{session.SESSION_COOKIE}=;" in response.headers["set-cookie"]
            assert "Max-Age=0" in response.headers["set-cookie"]
            # A live fragment's poll (htmx) sends the whole tab to sign-in.
            fragment = await browser.get(
                "/ui/projects/x/jobs/y/live", headers={"HX-Request": "true"}
            )
            assert fragment.status_code == 200, (case, fragment.text)
            assert fragment.headers["hx-redirect"] == "/ui/login"
            assert upstream_requests() == before, f"{case} reached the console"
            # Sign-in itself still answers with that cookie (no loop).
            assert (await browser.get("/ui/login")).status_code == 200, case
            # A bad cookie on the API is ignored there: no token, so the API's 401 problem.
            assert_problem(await browser.get(ME), 401, "Not authenticated")


def test_the_production_gateway_refuses_a_plaintext_console_off_the_machine() -> None:
    """The gateway passes the session cookie (a user's token) to the console: that hop is
    held to the services' rule."""
    upstreams = {f"{s}_url": f"https://{s}.internal:8443" for s in SERVICES}
    secure = {"profile": "production", "tls_terminated_by_proxy": True, **upstreams}
    ok = GatewaySettings.model_validate({**secure, "console_url": "https://console.internal"})
    assert ok.plaintext_hops() == []
    with pytest.raises(ValueError, match="console"):
        GatewaySettings.model_validate({**secure, "console_url": "http://console.internal:8107"})


async def test_an_upload_and_its_download_stream_through_the_console_behind_the_gateway(
    app: FastAPI, api: Api, edge: Gateway
) -> None:
    """The console's streaming routes (no whole-request limit) carry the cookie's check like
    its pages: a signed-in upload and download pass, an anonymous one never reaches it."""
    admin = await api.admin_token()
    scientist = await api.create_user(admin, "data_scientist")
    await api.create_project(scientist["token"], "edge")
    created = await api.client.post(
        "/api/v1/projects/edge/datasets", json={"name": "rows"}, headers=auth(scientist["token"])
    )
    assert created.status_code == 201, created.text
    content = b"a,b\n" + b"".join(b"%d,%d\n" % (i, i * 2) for i in range(20_000))
    async with httpx.AsyncClient(base_url=edge.url, timeout=60) as browser:
        await _sign_in(browser, scientist["email"], scientist["password"])
        page = await browser.get("/ui/projects/edge/datasets/rows")
        assert page.status_code == 200, page.text
        uploaded = await browser.post(
            "/ui/projects/edge/datasets/rows/versions",
            files={"file": ("rows.csv", content, "text/csv")},
            headers={"Origin": edge.url, "X-CSRF-Token": _csrf(page)},
        )
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["version"] == 1
        download = await browser.get("/ui/projects/edge/datasets/rows/versions/1/download")
        assert download.status_code == 200, download.text[:300]
        assert download.content.replace(b"\r\n", b"\n") == content
    async with httpx.AsyncClient(
        base_url=edge.url, timeout=30, cookies={session.SESSION_COOKIE: "not.a.token"}
    ) as forged:
        before = upstream_requests()
        refused = await forged.get("/ui/projects/edge/datasets/rows/versions/1/download")
        assert refused.status_code == 303
        assert upstream_requests() == before
