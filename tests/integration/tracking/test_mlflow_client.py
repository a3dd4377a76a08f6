"""MLflow's real client (its own virtual environment) logs to the platform served on a
loopback port; Armillary's API then shows what it logged."""

from __future__ import annotations

import json
import math
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

SCRIPT = Path(__file__).with_name("mlflow_client_script.py")
STEPS = 25


@pytest.fixture(scope="module")
def peer_python() -> Path:
    try:
        return mlflow_python()
    except PeerUnavailable as exc:
        pytest.skip(f"MLflow's client could not be installed in its peer environment: {exc}")


def _user_and_project(http: httpx.Client) -> tuple[str, str]:
    def token(email: str, password: str) -> str:
        response = http.post("/api/v1/auth/token", data={"username": email, "password": password})
        response.raise_for_status()
        return str(response.json()["access_token"])

    admin = token(ADMIN_EMAIL, ADMIN_PASSWORD)
    user = {
        "email": "ds@example.com",
        "name": "DS",
        "role": "data_scientist",
        "password": "pw-" + "x" * 12,
    }
    http.post("/api/v1/users", json=user, headers=auth(admin)).raise_for_status()
    scientist = token(user["email"], user["password"])
    project = {"slug": "mlflow-peer", "name": "MLflow peer"}
    http.post("/api/v1/projects", json=project, headers=auth(scientist)).raise_for_status()
    return scientist, project["slug"]


def test_the_mlflow_client_logs_to_armillary(
    peer_python: Path, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    app = create_app(settings_factory(), configure_logs=False)
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as http:
        token, project = _user_and_project(http)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "MLFLOW_TRACKING_URI": f"{base}/mlflow/{project}",
            "MLFLOW_TRACKING_TOKEN": token,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            **NO_TELEMETRY,
        }
        done = subprocess.run(
            [str(peer_python), str(SCRIPT), str(STEPS)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])

        # What MLflow's client read back through Armillary.
        assert seen["found"] == [seen["child"]]
        assert seen["by_tag"] == [seen["parent"]]
        assert seen["experiments"] == ["mlflow-client"]
        assert seen["status"] == "FINISHED"
        assert seen["parent_tag"] == seen["parent"]
        expected_loss = [[s, math.exp(-s / 10)] for s in range(STEPS)]
        assert seen["history"] == expected_loss

        # What Armillary's API holds.
        api = f"/mlflow/{project}/api/2.0/mlflow"

        def get(endpoint: str, **params: Any) -> dict[str, Any]:
            response = http.get(f"{api}/{endpoint}", params=params, headers=auth(token))
            assert response.status_code == 200, response.text
            return dict(response.json())

        parent = get("runs/get", run_id=seen["parent"])["run"]
        child = get("runs/get", run_id=seen["child"])["run"]
        assert {p["key"]: p["value"] for p in parent["data"]["params"]} == {
            "optimizer": "sgd",
            "lr": "0.05",
            "epochs": str(STEPS),
        }
        parent_tags = {t["key"]: t["value"] for t in parent["data"]["tags"]}
        assert parent_tags["stage"] == "tuning"
        assert parent_tags["mlflow.runName"] == "study"
        latest = {m["key"]: m for m in parent["data"]["metrics"]}
        assert latest["loss"]["step"] == STEPS - 1
        assert latest["accuracy"]["value"] == pytest.approx(1 - math.exp(-(STEPS - 1) / 5))
        history = get("metrics/get-history", run_id=seen["parent"], metric_key="accuracy")
        assert [(m["step"], m["value"]) for m in history["metrics"]] == [
            (s, pytest.approx(1 - math.exp(-s / 5))) for s in range(STEPS)
        ]
        assert {p["key"]: p["value"] for p in child["data"]["params"]} == {
            "depth": "6",
            "seed": "42",
        }
        child_tags = {t["key"]: t["value"] for t in child["data"]["tags"]}
        assert child_tags["trial"] == "1"
        assert child_tags["mlflow.parentRunId"] == seen["parent"]
        val_loss = get("metrics/get-history", run_id=seen["child"], metric_key="val_loss")
        assert [(m["step"], m["timestamp"]) for m in val_loss["metrics"]] == [
            (s, 1_700_000_000_000 + s) for s in range(5)
        ]
        assert child["info"]["status"] == "FINISHED"

        # Artifacts: MLflow's client listed and downloaded what it logged, byte for byte, and
        # Armillary's API serves the same bytes.
        weights = bytes(range(256)) * 4096
        assert seen["artifacts"]["listed"] == {
            "root": [["plots", True, None], ["report.txt", False, 15]],
            "plots": [
                ["plots/curve.csv", False, 22],
                ["plots/raw", True, None],
            ],
        }
        assert seen["artifacts"]["round_trip"] == {
            "report.txt": True,
            "plots/curve.csv": True,
            "plots/raw/weights.bin": True,
        }
        listed = get("artifacts/list", run_id=seen["parent"], path="plots/raw")
        assert listed["files"] == [
            {"path": "plots/raw/weights.bin", "is_dir": False, "file_size": len(weights)}
        ]
        proxied = parent["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")
        served = http.get(
            f"/mlflow/{project}/api/2.0/mlflow-artifacts/artifacts/{proxied}/plots/raw/weights.bin",
            headers=auth(token),
        )
        assert served.status_code == 200
        assert served.content == weights
        assert child["info"]["experiment_id"] == seen["experiment_id"]
