"""A form posted after its session ended (issue 19): nothing is done, and the browser goes to
sign-in with the form's own page as ``next``, where the tab's draft of it is waiting
(console.js). The session's cookies expire with the token, so such a post has neither the
session nor the CSRF cookie; one whose token the API refuses still has both."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from tests.conftest import Api, auth
from tests.integration.console.test_console_pages import (
    ORIGIN,
    browser,
    csrf_of,
    scientist,
)

__all__ = ["browser", "scientist"]  # fixtures, shared by name

SPEC = "name: typed\ntasks:\n  - name: only\n    type: noop\n"


def next_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["location"])
    assert location.path == "/ui/login"
    return parse_qs(location.query)["next"][0]


async def project(api: Api, token: str) -> str:
    made = await api.client.post(
        "/api/v1/projects", json={"slug": "drafts", "name": "Drafts"}, headers=auth(token)
    )
    assert made.status_code == 201, made.text
    return "/ui/projects/drafts"


async def test_a_post_without_its_session_goes_to_sign_in_and_back_to_its_form(
    browser: httpx.AsyncClient, api: Api, scientist: dict[str, Any]
) -> None:
    here = await project(api, scientist["token"])
    token = csrf_of(await browser.get(f"{here}/workflows"))
    browser.cookies.clear()  # what the browser does when the token's Max-Age has passed
    sent = await browser.post(
        f"{here}/workflows",
        data={"spec": SPEC, "csrf_token": token},
        headers={"Origin": ORIGIN, "Referer": f"{ORIGIN}{here}/workflows?offset=0"},
    )
    assert next_of(sent) == f"{here}/workflows?offset=0"
    listed = await api.client.get(
        "/api/v1/projects/drafts/workflows", headers=auth(scientist["token"])
    )
    assert listed.json()["items"] == []
    # Before this, the post was refused as a forged form (403) and the typed YAML was lost.


async def test_a_refused_token_returns_to_the_page_not_to_the_forms_action(
    browser: httpx.AsyncClient, api: Api, scientist: dict[str, Any]
) -> None:
    here = await project(api, scientist["token"])
    token = csrf_of(await browser.get(here))
    browser.cookies.clear()
    # The cookies are still there, but the API refuses the token (revoked, or expired early).
    cookies = f"armillary_session=not-a-token; armillary_csrf={token}"
    cancel = await browser.post(
        f"{here}/jobs/some-job/cancel",
        data={"csrf_token": token},
        headers={"Origin": ORIGIN, "Referer": f"{ORIGIN}{here}/jobs/some-job", "Cookie": cookies},
    )
    assert next_of(cancel) == f"{here}/jobs/some-job"  # the action has no page of its own
    assert "max-age=0" in cancel.headers.get("set-cookie", "").lower()


async def test_only_a_console_page_of_this_host_is_a_return_address(
    browser: httpx.AsyncClient,
) -> None:
    browser.cookies.clear()
    for referer in (None, "https://evil.example/ui/projects", f"{ORIGIN}/api/v1/users"):
        headers = {"Origin": ORIGIN, **({"Referer": referer} if referer else {})}
        sent = await browser.post("/ui/projects", data={"slug": "x"}, headers=headers)
        assert next_of(sent) == "/ui", referer


async def test_signing_out_of_an_ended_session_lands_on_sign_in(
    browser: httpx.AsyncClient,
) -> None:
    browser.cookies.clear()
    out = await browser.post("/ui/logout", headers={"Origin": ORIGIN})
    assert out.status_code == 303
    assert out.headers["location"] == "/ui/login"
