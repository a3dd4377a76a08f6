"""``armillary.tracking.log_model`` and ``register_model`` against the platform served on a
loopback port: a skops model trained on iris is logged, registered with the run's params and
metrics, deployed and answers; a pickled model is refused before anything is sent."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import httpx
import polars as pl
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tests.conftest import auth
from tests.integration.sdk.test_sdk_datasets import Account, StartServer, provision, start_server

from armillary import tracking
from armillary.tracking import sdk

__all__ = ["start_server"]  # a fixture, used by name
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture
def signed_in(start_server: StartServer) -> Iterator[Account]:
    account = provision(start_server())
    tracking.configure(url=account.url, project=account.project, token=account.token)
    try:
        yield account
    finally:
        sdk._tracker.reset()


def test_a_skops_model_is_logged_registered_deployed_and_answers(signed_in: Account) -> None:
    x, labels = load_iris(return_X_y=True)
    features = pl.DataFrame(x, schema=COLUMNS, orient="row")
    model = LogisticRegression(max_iter=500).fit(x, labels)
    signature = tracking.infer_signature(features, model.predict(x))
    assert signature == {"inputs": dict.fromkeys(COLUMNS, "double"), "output": "long"}

    with tracking.start_run("iris-lr", experiment="iris") as run:
        tracking.log_params({"max_iter": 500})
        tracking.log_metrics({"accuracy": float(model.score(x, labels))})
        uri = tracking.log_model(model, "classifier", signature=signature)
    assert uri == f"runs:/{run.id}/classifier"
    version = tracking.register_model(run, "iris")
    assert version["version"] == "1"
    assert version["run_id"] == run.id
    # A second registration by URI: the model exists already, the next version is made.
    assert tracking.register_model(uri, "iris")["version"] == "2"

    account = signed_in
    with httpx.Client(base_url=account.url, headers=auth(account.token), timeout=60) as http:
        models = f"/api/v1/projects/{account.project}/models"
        found = http.get(f"{models}/iris/versions/1")
        assert found.status_code == 200, found.text
        registered = found.json()
        assert registered["format"] == "skops"
        assert registered["params"] == {"max_iter": "500"}
        assert registered["metrics"]["accuracy"] == pytest.approx(model.score(x, labels))
        assert registered["lineage"]["run_id"] == run.id
        assert [c["name"] for c in registered["signature"]["inputs"]] == COLUMNS

        deployments = f"/api/v1/projects/{account.project}/deployments"
        created = http.post(
            deployments,
            json={
                "name": "iris-sdk",
                "routing": {"mode": "random"},
                "variants": [{"model": "iris", "name": "main", "version": 1, "weight": 1}],
            },
        )
        assert created.status_code == 201, created.text
        key = http.post(f"{deployments}/iris-sdk/keys", json={"name": "app"})
        assert key.status_code == 201, key.text
        rows = [0, 50, 100]
        answer = http.post(
            f"{deployments}/iris-sdk/predict",
            json={"instances": features[rows].to_dicts()},
            headers={"X-API-Key": key.json()["key"]},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [int(v) for v in model.predict(x[rows])]


class _Opaque:
    """Something only pickle could save."""


def test_a_model_only_pickle_could_save_is_refused_before_anything_is_sent(
    signed_in: Account,
) -> None:
    with tracking.start_run("opaque") as run:
        with pytest.raises(tracking.UnsafeModel) as refused:
            tracking.log_model(_Opaque())
        with pytest.raises(tracking.UnsafeModel):
            tracking.log_model(pickle.dumps(_Opaque()).decode("latin-1"))
    message = str(refused.value)
    assert "ONNX" in message
    assert "skops" in message
    account = signed_in
    with httpx.Client(base_url=account.url, headers=auth(account.token), timeout=30) as http:
        listed = http.get(
            f"/mlflow/{account.project}/api/2.0/mlflow/artifacts/list", params={"run_id": run.id}
        )
        assert listed.status_code == 200, listed.text
        assert listed.json().get("files", []) == []


def test_a_run_without_a_logged_model_is_not_registered(signed_in: Account) -> None:
    with tracking.start_run("empty") as run:
        pass
    with pytest.raises(tracking.TrackingError) as refused:
        tracking.register_model(run, "nothing")
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "MLmodel" in refused.value.message
