"""Run by the MLflow peer's Python (not Armillary's): MLflow's own client, logging to the
tracking URI in MLFLOW_TRACKING_URI with MLFLOW_TRACKING_TOKEN, as a user's training script
would. Prints what it logged and what MLflow read back, as JSON, for the test to compare."""

import json
import math
import os
import sys
import tempfile

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

STEPS = int(sys.argv[1])  # the test says how many
# Bytes the test checks on both sides: one file, and a directory with a nested one.
FILES = {
    "report.txt": b"loss went down\n",
    "plots/curve.csv": b"step,loss\n0,1.0\n1,0.5\n",
    "plots/raw/weights.bin": bytes(range(256)) * 4096,
}


def log_and_read_artifacts(client: MlflowClient, run_id: str) -> dict:
    """log_artifact, log_artifacts of a directory, then list and download through MLflow."""
    with tempfile.TemporaryDirectory() as work:
        for name, data in FILES.items():
            path = os.path.join(work, "out", name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        mlflow.log_artifact(os.path.join(work, "out", "report.txt"))
        mlflow.log_artifacts(os.path.join(work, "out", "plots"), artifact_path="plots")
    listed = {
        "root": [[f.path, f.is_dir, f.file_size] for f in client.list_artifacts(run_id)],
        "plots": [[f.path, f.is_dir, f.file_size] for f in client.list_artifacts(run_id, "plots")],
    }
    with tempfile.TemporaryDirectory() as back:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=back)
        round_trip = {}
        for name, data in FILES.items():
            with open(os.path.join(local, name), "rb") as f:
                round_trip[name] = f.read() == data
    return {"listed": listed, "round_trip": round_trip}


def main() -> None:
    client = MlflowClient()
    experiment = mlflow.set_experiment("mlflow-client")
    with mlflow.start_run(run_name="study") as parent:
        mlflow.log_param("optimizer", "sgd")
        mlflow.log_params({"lr": 0.05, "epochs": STEPS})
        mlflow.set_tag("stage", "tuning")
        for step in range(STEPS):  # a hand-written training loop
            mlflow.log_metric("loss", math.exp(-step / 10), step=step)
            mlflow.log_metric("accuracy", 1 - math.exp(-step / 5), step=step)
        artifacts = log_and_read_artifacts(client, parent.info.run_id)
        with mlflow.start_run(run_name="trial-1", nested=True) as child:
            client.log_batch(
                child.info.run_id,
                metrics=[
                    Metric("val_loss", 0.3 - s / 100, 1_700_000_000_000 + s, s) for s in range(5)
                ],
                params=[Param("depth", "6"), Param("seed", "42")],
                tags=[RunTag("trial", "1")],
            )
    found = mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string="params.depth = '6' and metrics.val_loss < 0.5",
        output_format="list",
    )
    by_tag = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.stage = 'tuning'",
        order_by=["start_time DESC"],
    )
    experiments = mlflow.search_experiments(filter_string="name LIKE 'mlflow-%'")
    history = client.get_metric_history(parent.info.run_id, "loss")
    finished = client.get_run(parent.info.run_id)
    print(
        json.dumps(
            {
                "experiment_id": experiment.experiment_id,
                "parent": parent.info.run_id,
                "child": child.info.run_id,
                "found": [r.info.run_id for r in found],
                "by_tag": [r.info.run_id for r in by_tag],
                "history": [[m.step, m.value] for m in history],
                "experiments": [e.name for e in experiments],
                "status": finished.info.status,
                "artifacts": artifacts,
                "parent_tag": client.get_run(child.info.run_id).data.tags.get("mlflow.parentRunId"),
            }
        )
    )


if __name__ == "__main__":
    main()
