"""The console in a real browser: Debian's Chromium driven by Playwright, against a platform
started as `make run` starts it (`armillary up`: SQLite, its scheduler and workers) on a free
loopback port. Screenshots of each page go to test-artifacts/console/."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.ports import free_port as _free_port

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is missing (scripts/browser-prereqs.sh installs Debian's chromium)",
    ),
]

CLI = [sys.executable, "-c", "from armillary.cli.main import app; app()"]
ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "browser-admin-password-0123"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
XSS = "<img src=x onerror=alert(1)></script>"
FINISHED = {"succeeded", "failed", "cancelled"}
# A job slow enough that its page is open before it ends (the live view must show the end).
SPEC: dict[str, Any] = {
    "name": "slow-pair",
    "tasks": [
        {"name": "first", "type": "noop"},
        {
            "name": "second",
            "type": "python",
            "needs": ["first"],
            "params": {"source": "import time\n\ndef main():\n    time.sleep(4)\n    return {}\n"},
        },
    ],
}


@dataclass
class Platform:
    base_url: str
    http: httpx.Client
    admin: str = ""
    created: list[str] = field(default_factory=list)

    def token(self, email: str, password: str) -> str:
        response = self.http.post(
            "/api/v1/auth/token", data={"username": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def user(self, role: str, name: str) -> dict[str, str]:
        email = f"{name.lower()}-{len(self.created)}@example.com"
        password = f"pw-{name.lower()}-0123456789"
        response = self.http.post(
            "/api/v1/users",
            json={"email": email, "name": name, "role": role, "password": password},
            headers=auth(self.admin),
        )
        assert response.status_code == 201, response.text
        self.created.append(email)
        return {"email": email, "password": password, "token": self.token(email, password)}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with started_platform(tmp_path_factory.mktemp("console-home")) as found:
        yield found


@contextmanager
def started_platform(home: Path, **settings: str) -> Iterator[Platform]:
    """`armillary up` in ``home`` on a free port, with ``settings`` (ARMILLARY_* variables)
    on top of the test's own; stopped on exit."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
    env.update(
        ARMILLARY_HOME=str(home),
        ARMILLARY_PORT=str(port),
        ARMILLARY_ADMIN_EMAIL=ADMIN_EMAIL,
        ARMILLARY_ADMIN_PASSWORD=ADMIN_PASSWORD,
        ARMILLARY_ARGON2_TIME_COST="1",
        ARMILLARY_ARGON2_MEMORY_COST_KIB="8",
        PYTHONUNBUFFERED="1",
        **settings,
    )
    log = home / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*CLI, "up"], env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        with httpx.Client(base_url=base_url, timeout=30) as http:
            found = Platform(base_url, http)
            found.admin = found.token(ADMIN_EMAIL, ADMIN_PASSWORD)
            yield found
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page with its dialogs and CSP violations recorded: neither may happen."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def assert_clean(self) -> None:
        assert self.dialogs == [], self.dialogs
        assert self.violations == [], self.violations


@pytest.fixture
def open_page(chromium: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def make(width: int = 1280, height: int = 900) -> Watched:
        context = chromium.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        watched = Watched(context.new_page())

        def on_dialog(dialog: Any) -> None:
            watched.dialogs.append(dialog.message)
            dialog.dismiss()

        def on_console(message: Any) -> None:
            if "Content Security Policy" in message.text or "Refused to" in message.text:
                watched.violations.append(message.text)

        watched.page.on("dialog", on_dialog)
        watched.page.on("console", on_console)
        return watched

    yield make
    for context in contexts:
        context.close()


def sign_in_by_keyboard(watched: Watched, base_url: str, email: str, password: str) -> None:
    page = watched.page
    page.goto(f"{base_url}/")  # / → /ui → /ui/projects → sign-in, remembering where to return
    assert "/ui/login" in page.url
    assert page.evaluate("document.activeElement.id") == "email"
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base_url}/ui/projects")


def tab(page: Any, name: str) -> Any:
    return page.get_by_role("navigation", name="Project").get_by_role("link", name=name)


def test_a_data_scientist_signs_in_creates_a_project_and_watches_a_job(
    platform: Platform, open_page: Any
) -> None:
    from playwright.sync_api import expect

    scientist = platform.user("data_scientist", "Dana")
    watched = open_page()
    page = watched.page
    page.goto(f"{platform.base_url}/ui/login")
    watched.shot("01-sign-in")
    sign_in_by_keyboard(watched, platform.base_url, scientist["email"], scientist["password"])
    expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()
    watched.shot("02-projects-empty")

    # Create a project through the form, with a name and description that try to run script.
    page.get_by_label("Slug").fill("churn")
    page.get_by_label("Name", exact=True).fill(XSS)
    page.get_by_label("Description").fill(f"desc {XSS}")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url(f"{platform.base_url}/ui/projects/churn")
    expect(page.locator("h1")).to_have_text(XSS)  # shown as text, not parsed as HTML
    assert page.locator("main img").count() == 0
    watched.shot("03-project-overview")

    # A job submitted through the API; its page follows it live, without a reload.
    token = scientist["token"]
    applied = platform.http.post("/api/v1/projects/churn/workflows", json=SPEC, headers=auth(token))
    assert applied.status_code == 201, applied.text
    job = platform.http.post(
        "/api/v1/projects/churn/workflows/slow-pair/jobs", json={}, headers=auth(token)
    ).json()
    tab(page, "Jobs").click()
    page.wait_for_url(f"{platform.base_url}/ui/projects/churn/jobs")
    watched.shot("04-jobs")
    page.get_by_role("link", name=job["id"][:8]).click()
    page.wait_for_url(f"{platform.base_url}/ui/projects/churn/jobs/{job['id']}")
    first_state = page.locator("#job-status").inner_text()
    assert first_state not in FINISHED, "the job ended before its page opened"
    watched.shot("05-job-live")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("tr[data-task=second] .state")).to_have_text("succeeded")
    assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
    assert page.locator("#job-live[data-live-url]").count() == 0  # polling has stopped
    watched.shot("06-job-finished")

    # The filter keeps to the project's jobs in the state asked for.
    tab(page, "Jobs").click()
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#job-list")).to_contain_text("No jobs match")
    page.get_by_label("Status").select_option("succeeded")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#job-list")).to_contain_text(job["id"][:8])

    tab(page, "Workflows").click()
    page.get_by_role("link", name="slow-pair").click()
    expect(page.locator("pre.spec")).to_contain_text("time.sleep(4)")
    watched.shot("07-workflow")
    tab(page, "Models").click()
    expect(page.get_by_text("No models.")).to_be_visible()
    watched.shot("08-models")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{platform.base_url}/ui/login")
    page.goto(f"{platform.base_url}/ui/projects/churn")
    assert "/ui/login" in page.url
    watched.assert_clean()


def test_the_live_view_stops_polling_while_the_tab_is_hidden(
    platform: Platform, open_page: Any
) -> None:
    scientist = platform.user("data_scientist", "Hedy")
    token = scientist["token"]
    platform.http.post(
        "/api/v1/projects", json={"slug": "hidden", "name": "Hidden"}, headers=auth(token)
    )
    spec = {
        "name": "long",
        "tasks": [
            {
                "name": "wait",
                "type": "python",
                "params": {"source": "import time\n\ndef main():\n    time.sleep(60)\n"},
            }
        ],
    }
    applied = platform.http.post(
        "/api/v1/projects/hidden/workflows", json=spec, headers=auth(token)
    )
    assert applied.status_code == 201, applied.text
    job = platform.http.post(
        "/api/v1/projects/hidden/workflows/long/jobs", json={}, headers=auth(token)
    ).json()
    watched = open_page()
    page = watched.page
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if r.url.endswith("/live") else None)
    sign_in_by_keyboard(watched, platform.base_url, scientist["email"], scientist["password"])
    page.goto(f"{platform.base_url}/ui/projects/hidden/jobs/{job['id']}")
    page.wait_for_event("request", lambda r: r.url.endswith("/live"), timeout=10_000)
    # The tab goes to the background: the next poll (due in 2 s) must not be sent.
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    page.wait_for_timeout(200)  # a poll already on the wire may still land
    before = len(polls)
    page.wait_for_timeout(3000)
    assert len(polls) == before, "the hidden tab kept polling"
    # Back in front: it looks at once.
    with page.expect_request(lambda r: r.url.endswith("/live"), timeout=2000):
        page.evaluate(
            "Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
            "document.dispatchEvent(new Event('visibilitychange'))"
        )
    platform.http.post(f"/api/v1/jobs/{job['id']}/cancel", headers=auth(token))
    watched.assert_clean()


def test_a_non_members_project_url_shows_not_found(platform: Platform, open_page: Any) -> None:
    from playwright.sync_api import expect

    owner = platform.user("data_scientist", "Olga")
    response = platform.http.post(
        "/api/v1/projects",
        json={"slug": "private-one", "name": "Private"},
        headers=auth(owner["token"]),
    )
    assert response.status_code == 201, response.text
    outsider = platform.user("user", "Uma")
    watched = open_page()
    sign_in_by_keyboard(watched, platform.base_url, outsider["email"], outsider["password"])
    watched.page.goto(f"{platform.base_url}/ui/projects/private-one")
    expect(watched.page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(watched.page.locator("main")).not_to_contain_text("Private")
    watched.shot("09-not-found")
    watched.assert_clean()


def test_pages_fit_a_phone_and_return_after_sign_in(platform: Platform, open_page: Any) -> None:
    from playwright.sync_api import expect

    scientist = platform.user("data_scientist", "Pia")
    platform.http.post(
        "/api/v1/projects",
        json={"slug": "narrow", "name": "A project with a rather long name to wrap"},
        headers=auth(scientist["token"]),
    )
    watched = open_page(width=390, height=844)
    page = watched.page
    # A deep link while signed out: sign-in first, then back to the page asked for.
    page.goto(f"{platform.base_url}/ui/projects/narrow")
    assert "/ui/login?next=" in page.url
    page.get_by_label("Email").fill(scientist["email"])
    page.get_by_label("Password").fill(scientist["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{platform.base_url}/ui/projects/narrow")
    expect(page.locator("h1")).to_contain_text("rather long name")
    for url in ("/ui/projects", "/ui/projects/narrow", "/ui/projects/narrow/jobs"):
        page.goto(f"{platform.base_url}{url}")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{url} is wider than the phone by {overflow}px"
    watched.shot("10-phone-jobs")
    watched.assert_clean()


def teardown_module() -> None:
    # Keep only this run's screenshots (a stale one would look like a passing page).
    if not ARTIFACTS.exists():
        return
    fresh = time.time() - 600
    for old in ARTIFACTS.glob("*.png"):
        if old.stat().st_mtime < fresh:
            old.unlink()
    if not any(ARTIFACTS.iterdir()):
        shutil.rmtree(ARTIFACTS)
