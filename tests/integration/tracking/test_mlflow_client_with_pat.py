"""MLflow's real client (its peer environment) logs a run with a personal access token in
``MLFLOW_TRACKING_TOKEN`` (ADR 0040), as a notebook or a CI job does; the same token is
refused on another project's tracking URI."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, auth
from tests.integration.sdk.test_sdk_datasets import serve
from tests.integration.tracking.mlflow_peer import NO_TELEMETRY, PeerUnavailable, mlflow_python

from armillary.app import create_app
from armillary.kit.settings import Settings

SCRIPT = """
import json, mlflow
mlflow.set_experiment("from-ci")
with mlflow.start_run(run_name="nightly") as run:
    mlflow.log_param("lr", "0.1")
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
print(json.dumps({"run_id": run.info.run_id}))
"""


@pytest.fixture(scope="module")
def peer_python() -> Path:
    try:
        return mlflow_python()
    except PeerUnavailable as exc:
        pytest.skip(f"MLflow's client could not be installed in its peer environment: {exc}")


def _run_script(python: Path, base: str, project: str, token: str, cwd: Path) -> Any:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(cwd),
        "MLFLOW_TRACKING_URI": f"{base}/mlflow/{project}",
        "MLFLOW_TRACKING_TOKEN": token,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        **NO_TELEMETRY,
    }
    return subprocess.run(
        [str(python), "-c", SCRIPT],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_mlflow_client_logs_with_a_personal_access_token(
    peer_python: Path, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    app = create_app(settings_factory(), configure_logs=False)
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as http:
        login = {"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        admin = http.post("/api/v1/auth/token", data=login).json()["access_token"]
        for slug in ("pat-home", "pat-other"):
            body = {"slug": slug, "name": slug}
            http.post("/api/v1/projects", json=body, headers=auth(admin)).raise_for_status()
        body = {"name": "ci", "project": "pat-home", "expires_in_days": 7}
        created = http.post("/api/v1/auth/tokens", json=body, headers=auth(admin))
        assert created.status_code == 201, created.text
        pat = created.json()["token"]

        done = _run_script(peer_python, base, "pat-home", pat, tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        run_id = json.loads(done.stdout.strip().splitlines()[-1])["run_id"]
        api = "/mlflow/pat-home/api/2.0/mlflow"
        run = http.get(f"{api}/runs/get", params={"run_id": run_id}, headers=auth(pat))
        assert run.status_code == 200, run.text
        assert run.json()["run"]["data"]["params"] == [{"key": "lr", "value": "0.1"}]
        history = http.get(
            f"{api}/metrics/get-history",
            params={"run_id": run_id, "metric_key": "loss"},
            headers=auth(pat),
        ).json()
        assert [m["step"] for m in history["metrics"]] == [0, 1, 2]

        # The same token on another project's tracking URI: MLflow's client gets an error.
        refused = _run_script(peer_python, base, "pat-other", pat, tmp_path)
        assert refused.returncode != 0
        assert "RESOURCE_DOES_NOT_EXIST" in refused.stderr or "404" in refused.stderr
