"""Run by the MLflow peer's Python (not Armillary's): a user's scikit-learn training on iris,
tracked and registered with MLflow's own client against MLFLOW_TRACKING_URI. Prints what it
logged and what MLflow read back, as JSON, for the test to compare.

``argv[1]``: where a pickle's unpickling would write its marker file (it must never run).
"""

import json
import os
import pickle
import sys
import tempfile
from pathlib import Path

import mlflow
import mlflow.sklearn
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

MARKER = Path(sys.argv[1])
# Given, so that MLflow does not infer them by loading the model in a subprocess (seconds).
REQUIREMENTS = ["scikit-learn", "skops"]


class WritesMarker:
    """Unpickling this writes MARKER: proof that a pickle ran on the server."""

    def __reduce__(self):
        return (Path.write_text, (MARKER, "unpickled"))


def autologged() -> dict:
    """MLflow's autolog without models (a pickle-free script): params and training metrics."""
    mlflow.set_experiment("iris-autolog")
    mlflow.sklearn.autolog(log_models=False, log_datasets=False, silent=True)
    features, labels = load_iris(return_X_y=True, as_frame=True)
    with mlflow.start_run() as run:
        LogisticRegression(C=0.5, max_iter=400).fit(features, labels)
    mlflow.sklearn.autolog(disable=True)
    return {"run_id": run.info.run_id}


def overwrite_with_marker_pickle(run_id: str) -> None:
    """Replace the logged model's pickle by one whose unpickling writes MARKER: what the
    server would run, if it ever loaded a pickle flavour."""
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "model.pkl")
        with open(path, "wb") as f:
            pickle.dump(WritesMarker(), f)
        mlflow.log_artifact(path, "model", run_id=run_id)


def registered() -> dict:
    mlflow.set_experiment("iris")
    features, labels = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    signature = infer_signature(features, model.predict(features))
    with mlflow.start_run(run_name="iris-lr") as run:
        mlflow.log_params({"C": 1.0, "max_iter": 500})
        mlflow.log_metric("accuracy", float(model.score(features, labels)))
        mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="skops",
            signature=signature,
            pip_requirements=REQUIREMENTS,
        )
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "iris")
    client = MlflowClient()
    client.set_registered_model_alias("iris", "champion", version.version)
    by_alias = client.get_model_version_by_alias("iris", "champion")
    found = client.search_registered_models(filter_string="name = 'iris'")
    versions = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    return {
        "run_id": run.info.run_id,
        "version": version.version,
        "version_run_id": version.run_id,
        "by_alias": [by_alias.version, by_alias.run_id, list(by_alias.aliases)],
        "registered": [m.name for m in found],
        "aliases": dict(client.get_registered_model("iris").aliases),
        "versions": [(v.name, v.version) for v in versions],
        "download_uri": client.get_model_version_download_uri("iris", version.version),
        "accuracy": float(model.score(features, labels)),
        "sample": features.iloc[[0, 50, 100]].to_dict(orient="records"),
        "expected": [int(v) for v in model.predict(features.iloc[[0, 50, 100]])],
    }


def refused() -> dict:
    """A cloudpickle model: registering it must fail, naming the safe flavours."""
    features, labels = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    with mlflow.start_run(run_name="pickled") as run:
        mlflow.sklearn.log_model(
            model, name="model", serialization_format="cloudpickle", pip_requirements=REQUIREMENTS
        )
        overwrite_with_marker_pickle(run.info.run_id)
    try:
        mlflow.register_model(f"runs:/{run.info.run_id}/model", "pickled")
    except MlflowException as exc:
        return {"error_code": exc.error_code, "message": exc.message}
    return {"error_code": None, "message": "registered"}


print(json.dumps({"autolog": autologged(), "registered": registered(), "refused": refused()}))
