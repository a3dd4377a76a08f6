"""`armillary up --distributed` for real: the Envoy gateway on the public port, one process per
service, the scheduler and a worker, on the test's PostgreSQL, Redis and a RabbitMQ virtual
host of its own. A user's journey runs through the gateway (sign-in, project, dataset upload,
a workflow job run by the worker), and a service process killed with SIGKILL is restarted by
the supervisor without touching the others. The web console runs as a process of its own
behind the same gateway: sign in, open a project, see a job's live view."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, REDIS_URL, TEST_SECRET
from tests.integration.services.test_serve_processes import _clean_database
from tests.ports import free_port, free_port_range

SERVICES = ("identity", "data", "workflows", "registry", "serving", "tracking")
# Processes with a /metrics listener of their own, from ARMILLARY_METRICS_PORT on, in order.
METRICS_PROCESSES = (*SERVICES, "scheduler", "worker-1", "console")


SPEC = {"name": "nightly", "tasks": [{"name": "fit", "type": "noop"}]}
# A job slow enough that the console's page is open while it runs (its live view must show
# the end without a reload).
SLOW = {
    "name": "slow",
    "tasks": [
        {
            "name": "nap",
            "type": "python",
            "params": {"source": "import time\n\ndef main():\n    time.sleep(6)\n    return {}\n"},
        }
    ],
}
CHROMIUM = Path("/usr/bin/chromium")
FINISHED = {"succeeded", "failed", "cancelled"}
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "console"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def vhost() -> Iterator[str]:
    """A RabbitMQ virtual host of this test's own on the shared broker."""
    name = f"armillary-up-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    rabbitmqctl("delete_vhost", name)


@dataclass
class Platform:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    metrics_port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def child_pid(self, *argv: str) -> int:
        """The supervised child whose command line ends with ``argv``."""
        wanted = " ".join(argv)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            parent = next(line for line in status.splitlines() if line.startswith("PPid:"))
            if int(parent.split()[1]) == self.process.pid and wanted in cmdline:
                return int(entry.name)
        raise AssertionError(f"no child runs {wanted!r}")


def up_env(tmp_path: Path, pg_url: str, vhost: str, metrics_port: int) -> dict[str, str]:
    """The environment of `armillary up --distributed` on free ports: this machine's
    PostgreSQL and Redis, a RabbitMQ virtual host of the test's own, no ARMILLARY_ or OTEL_
    variable of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARMILLARY_", "OTEL_"))}
    env.update(
        {f"ARMILLARY_{s.upper()}_URL": f"http://127.0.0.1:{free_port()}" for s in SERVICES},
        ARMILLARY_HOME=str(tmp_path / "home"),
        ARMILLARY_DATABASE_URL=pg_url,
        ARMILLARY_REDIS_URL=REDIS_URL,
        ARMILLARY_RABBITMQ_URL=f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        ARMILLARY_SECRET_KEY=TEST_SECRET,
        ARMILLARY_ADMIN_EMAIL=ADMIN_EMAIL,
        ARMILLARY_ADMIN_PASSWORD=ADMIN_PASSWORD,
        ARMILLARY_ARGON2_TIME_COST="1",
        ARMILLARY_ARGON2_MEMORY_COST_KIB="8",
        ARMILLARY_CONSOLE_URL=f"http://127.0.0.1:{free_port()}",
        ARMILLARY_GATEWAY_ADMIN_PORT=str(free_port()),
        ARMILLARY_GATEWAY_STATS_PORT=str(free_port()),
        ARMILLARY_LOG_LEVEL="WARNING",
        ARMILLARY_METRICS_PORT=str(metrics_port),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def platform(pg_url: str, truncate_sql: str, vhost: str, tmp_path: Path) -> Iterator[Platform]:
    _clean_database(pg_url, truncate_sql)
    port = free_port()
    metrics_port = free_port_range(len(METRICS_PROCESSES))
    env = up_env(tmp_path, pg_url, vhost, metrics_port)
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "armillary.cli",
                "up",
                "--distributed",
                "--port",
                str(port),
                "--workers",
                "1",
                "--no-migrate",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    found = Platform(process, f"http://127.0.0.1:{port}", log, metrics_port)
    try:
        yield found
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(check: object, timeout: float, what: str, platform: Platform) -> object:
    deadline = time.monotonic() + timeout
    while True:
        assert platform.process.poll() is None, platform.output()
        try:
            result = check()  # type: ignore[operator]
            if result:
                return result
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{what}\n{platform.output()}"
        time.sleep(0.25)


def test_the_distributed_shape_on_one_machine(platform: Platform) -> None:
    with httpx.Client(base_url=platform.url, timeout=30) as c:

        def signed_in() -> str | None:
            answer = c.post(
                "/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            return str(answer.json()["access_token"]) if answer.status_code == 200 else None

        token = wait_for(signed_in, 180, "the gateway and identity never answered", platform)
        headers = {"Authorization": f"Bearer {token}"}
        project = c.post("/api/v1/projects", json={"slug": "up", "name": "Up"}, headers=headers)
        assert project.status_code == 201, project.text
        base = "/api/v1/projects/up"
        assert c.post(f"{base}/datasets", json={"name": "sales"}, headers=headers).is_success
        uploaded = c.post(
            f"{base}/datasets/sales/versions",
            files={"file": ("sales.csv", b"a,b\n1,2\n", "text/csv")},
            data={"format": "csv"},
            headers=headers,
        )
        assert uploaded.status_code == 201, uploaded.text
        assert c.post(f"{base}/workflows", json=SPEC, headers=headers).status_code == 201
        job = c.post(f"{base}/workflows/nightly/jobs", json={}, headers=headers)
        assert job.status_code == 201, job.text

        def finished() -> str | None:
            status = c.get(f"/api/v1/jobs/{job.json()['id']}", headers=headers).json()["status"]
            return status if status in ("succeeded", "failed", "cancelled") else None

        assert wait_for(finished, 120, "the job never finished", platform) == "succeeded"
        check_the_console_through_the_gateway(platform, token, job.json()["id"])
        browser_ran = watch_a_job_in_chromium(platform, c, headers)
        # The tracking service behind the gateway: MLflow's API under the project's URI, its
        # audit entry (an experiment created) reaching identity's chain like the others'.
        mlflow = "/mlflow/up/api/2.0/mlflow"
        created = c.post(f"{mlflow}/experiments/create", json={"name": "up"}, headers=headers)
        assert created.status_code == 200, created.text
        found = c.get(f"{mlflow}/experiments/get-by-name?experiment_name=up", headers=headers)
        assert found.json()["experiment"]["experiment_id"] == created.json()["experiment_id"]
        # MLflow's registry API: tracking calls the registry's process over HTTP with the
        # caller's token, and the model is the registry's.
        model = c.post(f"{mlflow}/registered-models/create", json={"name": "up"}, headers=headers)
        assert model.status_code == 200, model.text
        held = c.get(f"{base}/models/up", headers=headers)
        assert held.status_code == 200, held.text
        # Audit entries of every service reach identity's chain over RabbitMQ: the upload
        # (data) and the job (workflows) are there, and the chain verifies.

        def audited() -> bool:
            entries = c.get("/api/v1/audit?limit=200", headers=headers).json()["items"]
            actions = {entry["action"] for entry in entries}
            return {"datasets.version_create", "jobs.create", "experiments.create"} <= actions

        wait_for(audited, 60, "other services' audit entries never reached identity", platform)

        # Entries still arriving can put the outside checkpoint a record ahead of the rows a
        # verification read; a broken chain never verifies, so wait for a quiet moment.
        def verified() -> bool:
            return bool(c.get("/api/v1/audit/verify", headers=headers).json()["ok"])

        wait_for(verified, 30, "the audit chain does not verify", platform)
        check_every_process_exposes_metrics(platform)
        # A bad token is stopped at the gateway.
        refused = c.get(f"{base}/datasets", headers={"Authorization": "Bearer x.y.z"})
        assert refused.status_code == 401

        # The registry dies; the supervisor brings it back, and the others never stopped.
        registry = platform.child_pid("serve", "registry")
        os.kill(registry, signal.SIGKILL)

        def registry_back() -> bool:
            back = c.get(f"{base}/models", headers=headers).status_code == 200
            return back and platform.child_pid("serve", "registry") != registry

        wait_for(registry_back, 90, "the registry was not restarted", platform)
        assert c.get(f"{base}/datasets", headers=headers).status_code == 200
    if not browser_ran:
        pytest.skip(f"{CHROMIUM} is missing: the console's browser smoke test did not run")


def check_the_console_through_the_gateway(platform: Platform, token: str, job_id: str) -> None:
    """The console's own process, reached through the gateway: sign in with the form, open
    the project, see the job's page and its live fragment. Its session cookie is a token on
    the console's pages only: alone on the JSON API it is refused at the edge."""
    with httpx.Client(base_url=platform.url, timeout=30) as browser:
        assert browser.get("/").headers["location"] == "/ui"
        login = browser.get("/ui/login")
        assert login.status_code == 200, login.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
        assert csrf, login.text
        signed = browser.post(
            "/ui/login",
            data={
                "email": ADMIN_EMAIL,
                "password": ADMIN_PASSWORD,
                "next": "/ui/projects/up",
                "csrf_token": csrf.group(1),
            },
            headers={"Origin": platform.url},
        )
        assert signed.status_code == 303, signed.text
        assert signed.headers["location"] == "/ui/projects/up"
        overview = browser.get("/ui/projects/up")
        assert overview.status_code == 200, overview.text
        assert job_id in overview.text
        page = browser.get(f"/ui/projects/up/jobs/{job_id}")
        assert page.status_code == 200, page.text
        assert "fit" in page.text
        live = browser.get(f"/ui/projects/up/jobs/{job_id}/live")
        assert live.status_code == 200, live.text
        assert "succeeded" in live.text
        cookie = browser.cookies.get("armillary_session")
        assert cookie
    with httpx.Client(base_url=platform.url, timeout=30) as other:
        other.cookies.set("armillary_session", cookie)
        assert other.get("/api/v1/auth/me").status_code == 401
        assert other.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).is_success
    # The console is a process of its own (not the API's pages).
    assert platform.child_pid("serve", "console")


def watch_a_job_in_chromium(platform: Platform, c: httpx.Client, headers: dict[str, str]) -> bool:
    """Issue 19's smoke test of the distributed shape, in Chromium through the gateway: sign
    in, open the project, open a running job and see it finish live. False when Debian's
    Chromium is missing (scripts/browser-prereqs.sh installs it)."""
    if not CHROMIUM.exists():
        return False
    from playwright.sync_api import expect, sync_playwright

    assert c.post("/api/v1/projects/up/workflows", json=SLOW, headers=headers).is_success
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    refused: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console",
                lambda m: refused.append(m.text) if "Refused to" in m.text else None,
            )
            page.goto(f"{platform.url}/")
            assert "/ui/login" in page.url
            page.get_by_label("Email").fill(ADMIN_EMAIL)
            page.get_by_label("Password").fill(ADMIN_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{platform.url}/ui/projects")
            page.get_by_role("link", name="Up", exact=True).click()
            page.wait_for_url(f"{platform.url}/ui/projects/up")
            # A job starts while the user looks at the project; it shows on the next view.
            job = c.post("/api/v1/projects/up/workflows/slow/jobs", json={}, headers=headers)
            assert job.status_code == 201, job.text
            job_id = job.json()["id"]
            page.reload()
            page.get_by_role("link", name=job_id[:8]).first.click()
            page.wait_for_url(f"{platform.url}/ui/projects/up/jobs/{job_id}")
            first_state = page.locator("#job-status").inner_text()
            assert first_state not in FINISHED, "the job ended before its page opened"
            page.screenshot(path=str(ARTIFACTS / "distributed-job-live.png"), full_page=True)
            page.evaluate("window.__sameDocument = true")
            expect(page.locator("#job-status")).to_have_text("succeeded", timeout=90_000)
            assert page.evaluate("window.__sameDocument") is True  # live, not reloaded
            assert page.locator("#job-live[data-live-url]").count() == 0  # polling stopped
            page.screenshot(path=str(ARTIFACTS / "distributed-job-done.png"), full_page=True)
        finally:
            browser.close()
    assert refused == [], refused
    return True


def check_every_process_exposes_metrics(platform: Platform) -> None:
    """Every supervised process serves /metrics on its own port: the services their RED
    metrics by service and their outbox lag, the scheduler the queue and workers' gauges, the
    worker the attempts it started."""
    scraped: dict[str, str] = {}
    for offset, name in enumerate(METRICS_PROCESSES):
        url = f"http://127.0.0.1:{platform.metrics_port + offset}/metrics"
        scraped[name] = str(
            wait_for(lambda url=url: httpx.get(url, timeout=5).text, 30, name, platform)
        )
    for service in ("identity", "data", "workflows"):
        assert f'service="{service}"' in scraped[service], service
        assert "armillary_http_requests_total{" in scraped[service]
        assert "armillary_outbox_lag_seconds " in scraped[service]
    assert "armillary_task_queue_age_seconds " in scraped["scheduler"]
    assert "armillary_workers_live " in scraped["scheduler"]
    assert 'armillary_task_attempts_total{type="noop"}' in scraped["worker-1"]
