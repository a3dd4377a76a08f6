"""End to end: the platform started the way `make run` starts it (`armillary db upgrade`, then
`armillary up`), in its own process on a temporary ARMILLARY_HOME (SQLite, no Redis), used over
real HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.ports import free_port as _free_port

CLI = [sys.executable, "-c", "from armillary.cli.main import app; app()"]
ADMIN_EMAIL = "root@example.com"
STARTUP_TIMEOUT = 90.0

pytestmark = pytest.mark.slow


def _env(home: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
    env.update(
        ARMILLARY_HOME=str(home),
        ARMILLARY_PORT=str(port),
        ARMILLARY_ADMIN_EMAIL=ADMIN_EMAIL,
        # Cheap password hashing keeps the test fast; everything else is the default.
        ARMILLARY_ARGON2_TIME_COST="1",
        ARMILLARY_ARGON2_MEMORY_COST_KIB="8",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Platform:
    process: subprocess.Popen[bytes]
    base_url: str
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def output(self) -> str:
        return self.stdout() + "\n--- stderr ---\n" + self.stderr_path.read_text(errors="replace")

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the platform exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"the platform did not become healthy:\n{self.output()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return int(self.process.returncode)


Start = Callable[..., Platform]


@pytest.fixture
def start_platform(tmp_path: Path) -> Iterator[Start]:
    """Starts `armillary up`; every process started is stopped (killed if need be) at the end."""
    started: list[Platform] = []

    def start(home: Path, port: int, **extra_env: str) -> Platform:
        n = len(started)
        stdout_path, stderr_path = tmp_path / f"up-{n}.out", tmp_path / f"up-{n}.err"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(
                [*CLI, "up"],
                env=_env(home, port, **extra_env),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        platform = Platform(process, f"http://127.0.0.1:{port}", stdout_path, stderr_path)
        started.append(platform)
        platform.wait_healthy()
        return platform

    try:
        yield start
    finally:
        for platform in started:
            if platform.process.poll() is None:
                platform.process.kill()
                platform.process.wait(timeout=10)


def _login(client: httpx.Client, email: str, password: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_admin_creates_a_data_scientist_who_creates_a_project(
    tmp_path: Path, start_platform: Start
) -> None:
    home, port = tmp_path / "home", _free_port()
    admin_password = "e2e-admin-password-0123"
    env = _env(home, port, ARMILLARY_ADMIN_PASSWORD=admin_password)
    migrated = subprocess.run(
        [*CLI, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    platform = start_platform(home, port, ARMILLARY_ADMIN_PASSWORD=admin_password)
    assert (home / "armillary.db").exists()  # the embedded shape: SQLite under ARMILLARY_HOME

    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        assert client.get("/readyz").status_code == 200
        admin = _login(client, ADMIN_EMAIL, admin_password)["access_token"]

        ds_password = "ds-password-0123456789"
        response = client.post(
            "/api/v1/users",
            json={
                "email": "ds@example.com",
                "name": "Dana",
                "role": "data_scientist",
                "password": ds_password,
            },
            headers=_auth(admin),
        )
        assert response.status_code == 201, response.text
        ds = _login(client, "ds@example.com", ds_password)["access_token"]
        me = client.get("/api/v1/auth/me", headers=_auth(ds)).json()
        assert me["role"] == "data_scientist"

        response = client.post(
            "/api/v1/projects", json={"slug": "churn", "name": "Churn"}, headers=_auth(ds)
        )
        assert response.status_code == 201, response.text
        project = response.json()
        assert project["my_role"] == "owner"

        response = client.get("/api/v1/projects/churn", headers=_auth(ds))
        assert response.status_code == 200, response.text
        assert response.json()["id"] == project["id"]
        listed = client.get("/api/v1/projects", headers=_auth(ds)).json()
        assert [p["slug"] for p in listed["items"]] == ["churn"]

        # The trail is in the audit log, and the chain verifies.
        response = client.get(
            "/api/v1/audit", params={"action": "projects.create"}, headers=_auth(admin)
        )
        assert response.status_code == 200, response.text
        assert [r["resource_id"] for r in response.json()["items"]] == [project["id"]]
        assert client.get("/api/v1/audit/verify", headers=_auth(admin)).json()["ok"] is True

    assert admin_password not in platform.output()
    assert platform.stop() in (0, -signal.SIGTERM)


def test_a_generated_admin_password_is_printed_once(tmp_path: Path, start_platform: Start) -> None:
    home, port = tmp_path / "home", _free_port()
    first = start_platform(home, port)
    found = re.search(r"password:\s+(\S+)", first.stdout())
    assert found, first.output()
    password = found.group(1)
    assert len(password) >= 16
    assert ADMIN_EMAIL in first.stdout()
    stderr = first.stderr_path.read_text(errors="replace")
    assert password not in stderr  # printed to the terminal, never to the logs

    with httpx.Client(base_url=first.base_url, timeout=30) as client:
        _login(client, ADMIN_EMAIL, password)
    assert first.stop() in (0, -signal.SIGTERM)

    second = start_platform(home, port)
    assert "password" not in second.stdout().lower()
    assert password not in second.output()
    with httpx.Client(base_url=second.base_url, timeout=30) as client:
        token = _login(client, ADMIN_EMAIL, password)["access_token"]
        assert client.get("/api/v1/auth/me", headers=_auth(token)).json()["email"] == ADMIN_EMAIL
    assert second.stop() in (0, -signal.SIGTERM)


def test_the_embedded_platform_runs_a_job_with_its_own_workers(
    tmp_path: Path, start_platform: Start
) -> None:
    """`armillary up` alone (SQLite, its scheduler, its local worker pool) runs a workflow."""
    home, port = tmp_path / "home", _free_port()
    admin_password = "e2e-admin-password-0123"
    platform = start_platform(home, port, ARMILLARY_ADMIN_PASSWORD=admin_password)
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        admin = _login(client, ADMIN_EMAIL, admin_password)["access_token"]
        assert (
            client.post(
                "/api/v1/projects", json={"slug": "demo", "name": "Demo"}, headers=_auth(admin)
            ).status_code
            == 201
        )
        spec = {
            "name": "hello",
            "tasks": [
                {
                    "name": "first",
                    "type": "noop",
                    "params": {"values": {"n": 20}},
                    "outputs": ["n"],
                },
                {
                    "name": "second",
                    "type": "python",
                    "needs": ["first"],
                    "params": {
                        "source": (
                            "def main(n):\n    print('adding one')\n    return {'m': n + 1}\n"
                        ),
                        "args": {"n": "${tasks.first.outputs.n}"},
                    },
                    "outputs": ["m"],
                },
            ],
        }
        response = client.post("/api/v1/projects/demo/workflows", json=spec, headers=_auth(admin))
        assert response.status_code == 201, response.text
        job = client.post(
            "/api/v1/projects/demo/workflows/hello/jobs", json={}, headers=_auth(admin)
        ).json()
        deadline = time.monotonic() + 90
        while True:
            job = client.get(f"/api/v1/jobs/{job['id']}", headers=_auth(admin)).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, platform.output()
            time.sleep(0.2)
        assert job["status"] == "succeeded", (job, platform.output())
        assert job["tasks"][1]["outputs"] == {"m": 21}
        log = client.get(f"/api/v1/jobs/{job['id']}/tasks/second/logs", headers=_auth(admin)).text
        assert "adding one" in log
    assert platform.stop() in (0, -signal.SIGTERM)
