"""An expired session loses no typed input (issue 19): a pipeline's YAML typed into the
workflows form survives a submission that meets the ended session, the sign-in, and the
return through ``?next=``; it is gone once the form went through; and no password is ever
kept in the tab's sessionStorage. One platform of its own, with tokens that live seconds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from tests.browser import test_console_in_chromium as base

pytestmark = base.pytestmark

# The browser and page fixtures of slice 1's browser test, shared by name.
chromium = base.chromium
open_page = base.open_page

# Long enough to sign in, open a page and post it on a loaded machine; short enough that
# waiting for it to pass costs the browser budget little.
TOKEN_SECONDS = 15
SPEC_YAML = """\
name: drafted
description: typed before the session ended
tasks:
  - name: only
    type: noop
"""
# Everything the console keeps in the tab's sessionStorage.
STORED = "() => Object.fromEntries(Object.entries(sessionStorage))"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[base.Platform]:
    home = tmp_path_factory.mktemp("drafts-home")
    settings = {"ARMILLARY_ACCESS_TOKEN_TTL_SECONDS": str(TOKEN_SECONDS)}
    with base.started_platform(home, **settings) as found:
        yield found


def stored(page: Any) -> dict[str, str]:
    values: dict[str, str] = page.evaluate(STORED)
    return values


def sign_in(page: Any, email: str, password: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    # The sign-in form is drafted like any other, but never its password.
    kept = json.dumps(stored(page))
    assert email in kept
    assert password not in kept
    page.get_by_role("button", name="Sign in").click()


def wait_until_the_session_ends(page: Any) -> None:
    """The browser drops the session cookie when the token expires (its Max-Age)."""
    deadline = time.monotonic() + TOKEN_SECONDS + 30
    while any(c["name"] == "armillary_session" for c in page.context.cookies()):
        assert time.monotonic() < deadline, "the session cookie outlived its token"
        time.sleep(0.25)


def test_typed_yaml_survives_an_expired_session(platform: base.Platform, open_page: Any) -> None:
    from playwright.sync_api import expect

    url = platform.base_url
    platform.admin = platform.token(base.ADMIN_EMAIL, base.ADMIN_PASSWORD)  # a fresh one
    scientist = platform.user("data_scientist", "Dora")
    created = platform.http.post(
        "/api/v1/projects",
        json={"slug": "drafts", "name": "Drafts"},
        headers=base.auth(scientist["token"]),
    )
    assert created.status_code == 201, created.text
    form_page = f"{url}/ui/projects/drafts/workflows"
    watched = open_page()
    page = watched.page

    page.goto(form_page)
    sign_in(page, scientist["email"], scientist["password"])
    page.wait_for_url(form_page)
    spec = page.get_by_label("Spec (YAML)")
    spec.fill(SPEC_YAML)
    assert any("name: drafted" in value for value in stored(page).values())

    # The session ends with the YAML typed; the submission goes to sign-in, acting on nothing.
    wait_until_the_session_ends(page)
    page.get_by_role("button", name="Apply spec").click()
    page.wait_for_url(f"{url}/ui/login?**")
    assert parse_qs(urlsplit(page.url).query)["next"] == ["/ui/projects/drafts/workflows"]
    fresh = platform.token(scientist["email"], scientist["password"])
    listed = platform.http.get("/api/v1/projects/drafts/workflows", headers=base.auth(fresh))
    assert listed.json()["items"] == [], listed.text
    watched.shot("drafts-01-sign-in-again")

    # Signed in again, back on the form: what was typed is there, and says so.
    sign_in(page, scientist["email"], scientist["password"])
    page.wait_for_url(form_page)
    expect(spec).to_have_value(SPEC_YAML)
    expect(page.locator(".draft-note")).to_contain_text("Restored what you typed")
    watched.shot("drafts-02-restored")

    # Sent this time: the workflow exists and the tab keeps no draft (and never a password).
    page.get_by_role("button", name="Apply spec").click()
    page.wait_for_url(f"{form_page}/drafted")
    leftovers = stored(page)
    assert [k for k in leftovers if k.startswith("armillary.draft")] == [], leftovers
    assert scientist["password"] not in json.dumps(leftovers)
    watched.assert_clean()
