"""``armillary quickstart`` against the platform started the way `make run` starts it
(`armillary db upgrade`, then `armillary up`: SQLite under a temporary ARMILLARY_HOME, its own
scheduler and local workers), as a user would run it: a separate process, over real HTTP.

It runs twice on the same project: the second run reuses the dataset and the workflow version,
registers version 2 and puts it into the same deployment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.ports import free_port as _free_port

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "from armillary.cli.main import app; app()"]
ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "quickstart-admin-password-0123"
STARTUP_TIMEOUT = 120.0
RUN_TIMEOUT = 900.0


def _env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
    env.update(
        ARMILLARY_HOME=str(home),
        ARMILLARY_PORT=str(port),
        ARMILLARY_ADMIN_EMAIL=ADMIN_EMAIL,
        ARMILLARY_ADMIN_PASSWORD=ADMIN_PASSWORD,
        ARMILLARY_CONFIG_DIR=str(home / "cli-config"),
        ARMILLARY_ARGON2_TIME_COST="1",
        ARMILLARY_ARGON2_MEMORY_COST_KIB="8",
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
    )
    return env


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    home, port = tmp_path / "home", _free_port()
    env = _env(home, port)
    migrated = subprocess.run(
        [*CLI, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*CLI, "up"], env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        yield url, env, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _quickstart(url: str, env: dict[str, str], log: Path, *args: str) -> str:
    done = subprocess.run(
        [
            *CLI,
            "quickstart",
            "--url",
            url,
            "--email",
            ADMIN_EMAIL,
            "--password",
            ADMIN_PASSWORD,
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output + "\n--- platform ---\n" + log.read_text(errors="replace")
    return done.stdout


def test_quickstart_runs_to_completion_twice(
    platform: tuple[str, dict[str, str], Path],
) -> None:
    url, env, log = platform
    first = _quickstart(url, env, log, "--project", "qs-demo", "--predictions", "4")
    assert "Created project qs-demo" in first
    assert "uploaded" in first
    assert "succeeded" in first
    assert "Predictions from deployment demo" in first
    assert "Sent the true labels of those 4 predictions as feedback" in first
    for place in ("/models/breast-cancer/versions", "/deployments/demo/analysis", "/docs"):
        assert place in first
    assert ADMIN_PASSWORD not in first

    with httpx.Client(base_url=url, timeout=30) as client:
        token = client.post(
            "/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        deployment = client.get("/api/v1/projects/qs-demo/deployments/demo", headers=headers)
        assert deployment.status_code == 200, deployment.text
        [variant] = deployment.json()["variants"]
        assert (variant["name"], variant["resolved"]["model_version"]) == ("champion", 1)

        # For a script: the progress on stderr, what was made on stdout.
        second = json.loads(
            _quickstart(url, env, log, "--project", "qs-demo", "--predictions", "3", "-o", "json")
        )
        assert second["project"] == {"slug": "qs-demo", "created": False}
        assert second["dataset"] == {"name": "breast-cancer", "version": 1, "uploaded": False}
        assert second["workflow"] == {"name": "quickstart", "version": 1, "created": False}
        assert second["job"]["status"] == "succeeded"
        assert len(second["predictions"]) == 3
        for prediction in second["predictions"]:
            assert prediction["model_version"] == 2  # the answers came from the new version
            assert prediction["prediction_id"]
            assert prediction["actual"] in ("malignant", "benign")
        assert second["where_to_look"]["A/B analysis"].endswith("/deployments/demo/analysis")

        deployment = client.get("/api/v1/projects/qs-demo/deployments/demo", headers=headers)
        body = deployment.json()
        [variant] = body["variants"]
        assert (variant["name"], variant["resolved"]["model_version"], variant["weight"]) == (
            "champion",
            2,
            100.0,
        )
        assert body["config_version"] == 2
        analysis = client.get("/api/v1/projects/qs-demo/deployments/demo/analysis", headers=headers)
        assert analysis.status_code == 200, analysis.text
