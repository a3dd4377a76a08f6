"""The ``armillary.tracking`` SDK against the platform served on a loopback port: what it logs
is what the tracking API then holds."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import auth
from tests.integration.sdk.test_sdk_datasets import Account, StartServer, provision, start_server

from armillary import tracking
from armillary.tracking import sdk

POINTS = 1_000
SRC = Path(__file__).resolve().parents[3] / "src"
__all__ = ["start_server"]  # a fixture, used by name


@pytest.fixture
def account(start_server: StartServer) -> Account:
    return provision(start_server())


@pytest.fixture
def signed_in(account: Account) -> Iterator[Account]:
    tracking.configure(url=account.url, project=account.project, token=account.token)
    try:
        yield account
    finally:
        sdk._tracker.reset()  # drop the connection to this test's server


class Reader:
    def __init__(self, account: Account) -> None:
        self.http = httpx.Client(base_url=account.url, headers=auth(account.token), timeout=30)
        self.api = f"/mlflow/{account.project}/api/2.0/mlflow"
        self.project = account.project

    def get(self, endpoint: str, **params: Any) -> dict[str, Any]:
        response = self.http.get(f"{self.api}/{endpoint}", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.get("runs/get", run_id=run_id)["run"])

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        points = self.get("metrics/get-history", run_id=run_id, metric_key=key)["metrics"]
        return [(p["step"], p["value"]) for p in points]


def _pairs(items: list[dict[str, str]]) -> dict[str, str]:
    return {i["key"]: i["value"] for i in items}


def test_a_run_logs_params_metrics_tags_artifacts_and_a_nested_run(
    signed_in: Account, tmp_path: Path
) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(bytes(range(256)) * 40)
    plots = tmp_path / "plots"
    (plots / "roc").mkdir(parents=True)
    (plots / "loss.txt").write_text("going down")
    (plots / "roc" / "curve.csv").write_text("fpr,tpr\n0,0\n1,1\n")

    with tracking.start_run("study", experiment="sdk-study", tags={"stage": "tuning"}) as study:
        tracking.log_params({"lr": 0.05, "optimizer": "sgd"})
        for step in range(POINTS):
            tracking.log_metrics({"loss": math.exp(-step / 100), "acc": step / POINTS}, step=step)
        tracking.set_tags({"dataset": "iris@3"})
        tracking.log_artifact(model, artifact_path="models")
        tracking.log_artifacts(plots, artifact_path="plots")
        with tracking.start_run("trial-1") as trial:
            tracking.log_params({"depth": 6})
            tracking.log_metric("score", 0.9)
        assert tracking.active_run() is study
    assert tracking.active_run() is None

    reader = Reader(signed_in)
    run = reader.run(study.id)
    assert run["info"]["status"] == "FINISHED"
    assert run["info"]["end_time"] >= run["info"]["start_time"]
    assert run["info"]["run_name"] == "study"
    assert _pairs(run["data"]["params"]) == {"lr": "0.05", "optimizer": "sgd"}
    tags = _pairs(run["data"]["tags"])
    assert tags["stage"] == "tuning"
    assert tags["dataset"] == "iris@3"
    assert "armillary.job_id" not in tags  # a user's run, not a job's
    # Every point, in the order and at the steps logged.
    assert reader.history(study.id, "loss") == [
        (s, pytest.approx(math.exp(-s / 100))) for s in range(POINTS)
    ]
    assert [s for s, _ in reader.history(study.id, "acc")] == list(range(POINTS))

    child = reader.run(trial.id)
    assert _pairs(child["data"]["tags"])["mlflow.parentRunId"] == study.id
    assert child["info"]["experiment_id"] == run["info"]["experiment_id"]
    assert child["info"]["status"] == "FINISHED"
    assert _pairs(child["data"]["params"]) == {"depth": "6"}

    # The artifacts come back byte for byte through the proxy.
    root = study.artifact_uri.removeprefix("mlflow-artifacts:")
    proxy = f"/mlflow/{signed_in.project}/api/2.0/mlflow-artifacts/artifacts{root}"
    assert reader.http.get(f"{proxy}/models/model.bin").content == model.read_bytes()
    assert reader.http.get(f"{proxy}/plots/roc/curve.csv").text == "fpr,tpr\n0,0\n1,1\n"
    listed = reader.get("artifacts/list", run_id=study.id, path="plots")["files"]
    assert sorted(f["path"] for f in listed) == ["plots/loss.txt", "plots/roc"]


def test_a_block_that_raises_ends_its_run_failed(signed_in: Account) -> None:
    started: list[tracking.Run] = []

    def train() -> None:
        with tracking.start_run("broken") as broken:
            started.append(broken)
            tracking.log_metric("loss", 1.0, step=0)
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        train()
    assert tracking.active_run() is None
    broken = started[0]
    run = Reader(signed_in).run(broken.id)
    assert run["info"]["status"] == "FAILED"
    assert run["info"]["end_time"] >= run["info"]["start_time"]
    # What was queued before the failure was still sent.
    assert Reader(signed_in).history(broken.id, "loss") == [(0, 1.0)]


def test_a_conflicting_param_is_an_error_at_the_call(signed_in: Account) -> None:
    with tracking.start_run("params"):
        tracking.log_param("lr", 0.1)
        with pytest.raises(tracking.TrackingError) as raised:
            tracking.log_param("lr", 0.2)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"


SCRIPT = """
import sys
from armillary import tracking

run = tracking.start_run("left-open", experiment="exits")
tracking.log_params({"epochs": 3})
for step in range(int(sys.argv[1])):
    tracking.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
print(run.id, flush=True)
# No end_run, no flush: the process just ends.
"""


def test_what_a_process_queued_is_sent_when_it_exits(account: Account, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARMILLARY_", "MLFLOW_"))}
    env.update(
        PYTHONPATH=str(SRC),
        ARMILLARY_URL=account.url,
        ARMILLARY_TOKEN=account.token,
        ARMILLARY_PROJECT=account.project,
        ARMILLARY_CONFIG_DIR=str(tmp_path / "no-login"),
    )
    done = subprocess.run(
        [sys.executable, str(script), str(POINTS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.split()[-1]

    reader = Reader(account)
    assert reader.history(run_id, "loss") == [
        (s, pytest.approx(1.0 / (s + 1))) for s in range(POINTS)
    ]
    run = reader.run(run_id)
    assert run["info"]["status"] == "FINISHED"  # ended at exit, as MLflow's client does
    assert _pairs(run["data"]["params"]) == {"epochs": "3"}
