"""The console as a process of its own (`armillary serve console`): its pages call the API
over HTTP, passing the browser's address on, and behind a trusted proxy it takes the
browser's scheme (Secure cookies). Headers from any other peer are not believed."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.conftest import Api, auth, make_settings
from tests.integration.workflows.engine import serve
from tests.ports import free_port

from armillary.console.process import create_console_app
from armillary.console.session import SESSION_COOKIE
from armillary.console.settings import ConsoleSettings
from armillary.kit.settings import Settings

GATEWAY = "10.1.2.3"  # the address the console's requests come from, trusted by both
BROWSER = "203.0.113.7"
ORIGIN = "http://console.test"


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    # The API trusts the gateway and, here, the console's loopback address (compose lists
    # both), so it takes the browser's address from X-Forwarded-For.
    return settings_factory(trusted_proxies=["127.0.0.1/32", f"{GATEWAY}/32"])


async def _sign_in(console: FastAPI, peer: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=console, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as browser:
        page = await browser.get("/ui/login", headers=headers)
        assert page.status_code == 200, page.text
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found, page.text
        # Sent by hand: over https the browser would send this Secure cookie back.
        browser.cookies.clear()
        return await browser.post(
            "/ui/login",
            data={
                "email": "admin@example.com",
                "password": "admin-password-for-tests",
                "next": "/ui",
                "csrf_token": found.group(1),
            },
            headers={**headers, "Origin": ORIGIN, "Cookie": f"armillary_csrf={found.group(1)}"},
        )


async def _console_login_addresses(api: Api, admin: str) -> list[Any]:
    """The client addresses of the sign-ins the console made (its User-Agent)."""
    records = await api.client.get(
        "/api/v1/audit", params={"action": "auth.login", "limit": 100}, headers=auth(admin)
    )
    assert records.status_code == 200, records.text
    items = records.json()["items"]
    return sorted(r["client_address"] for r in items if r["user_agent"] == "armillary-console")


async def test_the_console_process_passes_the_browser_on_only_from_its_proxy(
    app: FastAPI, api: Api, tmp_path: Path
) -> None:
    admin = await api.admin_token()
    async with contextlib.asynccontextmanager(serve)(app, free_port()) as upstream:
        console = create_console_app(
            make_settings(tmp_path / "console", trusted_proxies=[f"{GATEWAY}/32"]),
            ConsoleSettings(api_url=upstream),
        )
        forwarded = {"X-Forwarded-For": BROWSER, "X-Forwarded-Proto": "https"}
        # From the gateway: the browser's scheme and address.
        signed = await _sign_in(console, GATEWAY, forwarded)
        assert signed.status_code == 303, signed.text
        cookie = next(
            c for c in signed.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
        )
        assert "secure" in cookie.lower()
        assert signed.headers["strict-transport-security"]
        assert await _console_login_addresses(api, admin) == [BROWSER]
        # From anyone else: the same headers are not believed; the peer is the client.
        spoofed = await _sign_in(console, "198.51.100.1", forwarded)
        assert spoofed.status_code == 303, spoofed.text
        cookie = next(
            c for c in spoofed.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
        )
        assert "secure" not in cookie.lower()
        assert "strict-transport-security" not in spoofed.headers
        assert await _console_login_addresses(api, admin) == ["198.51.100.1", BROWSER]


async def test_health_and_the_pages_are_served_without_the_api_app(tmp_path: Path) -> None:
    console = create_console_app(
        make_settings(tmp_path / "console"), ConsoleSettings(api_url="http://127.0.0.1:9")
    )
    transport = httpx.ASGITransport(app=console)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/")).headers["location"] == "/ui"
        assert (await client.get("/ui/static/console.css")).status_code == 200
        # No API in this process: the API's routes are not here.
        assert (await client.get("/api/v1/auth/me")).status_code == 404
        # The API unreachable: the page says so (no stack trace).
        down = await client.post(
            "/ui/login",
            data={"email": "a@example.com", "password": "x", "csrf_token": "t"},
            headers={"Origin": ORIGIN, "Cookie": "armillary_csrf=t"},
        )
        assert down.status_code == 503, down.text
        assert "cannot be reached" in down.text
