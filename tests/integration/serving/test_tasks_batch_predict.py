"""``run_batch_predict`` against a stand-in of the API, with real models (scikit-learn trained
here, saved as skops and exported to ONNX the way training does): the predictions written equal
the model's own, batch by batch; the artifact chosen (ONNX first), the table written and
uploaded, the lineage recorded and the outputs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import polars as pl
import pytest
import skops.io as sio
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from tests.integration.serving.test_tasks_fake_api import FakeServingPlatform
from tests.unit.training.fakes import JOB, PROJECT

from armillary.contracts.serving import BatchPredictOutputs
from armillary.serving import tasks
from armillary.serving.tasks import ServingTaskError, run_batch_predict
from armillary.training.artifacts import export_onnx

CANCER = ["mean_radius", "mean_texture", "mean_perimeter", "mean_area", "mean_smoothness"]
IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeServingPlatform:
    platform = FakeServingPlatform()
    monkeypatch.setattr(tasks, "_api_transport", platform.transport)
    return platform


def _signature(features: list[str], target: str, dtype: str, classes: list[Any]) -> dict[str, Any]:
    return {
        "inputs": [{"name": f, "dtype": "Float64"} for f in features],
        "target": {"name": target, "dtype": dtype},
        "problem": "classification",
        "classes": classes,
    }


def _cancer(directory: Path) -> tuple[pl.DataFrame, Any, dict[str, bytes]]:
    """The breast-cancer table (with an id), a fitted pipeline and its skops + ONNX files."""
    data = load_breast_cancer()
    x = data.data[:, : len(CANCER)]
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    pipeline.fit(x, data.target)
    frame = pl.DataFrame(x, schema=CANCER, orient="row").with_columns(
        pl.Series("id", range(len(x))), pl.Series("diagnosis", data.target)
    )
    return frame, pipeline, _files(pipeline, x, "LogisticRegression", directory)


def _files(
    pipeline: Any, x: np.ndarray[Any, Any], estimator: str, directory: Path
) -> dict[str, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    sio.dump(pipeline, directory / "model.skops")
    files = {"model.skops": (directory / "model.skops").read_bytes()}
    onnx = export_onnx(pipeline, x, "classification", estimator, directory)
    if onnx is not None:
        files["model.onnx"] = onnx.read_bytes()
    return files


def _run(
    fake: FakeServingPlatform,
    tmp_path: Path,
    frame: pl.DataFrame,
    **params: Any,
) -> tuple[dict[str, Any], pl.DataFrame]:
    inputs = {"load": fake.add_table("load", frame, tmp_path)}
    context = fake.context(tmp_path, "score")
    outputs = run_batch_predict({"input": "load", "dataset": "scored", **params}, inputs, context)
    written = pl.read_parquet(context.artifacts_dir / "table.parquet")
    return outputs, written


def _fetched_artifacts(fake: FakeServingPlatform) -> list[str]:
    return [path.rsplit("/", 1)[1] for method, path, _ in fake.calls if "/artifacts/" in path]


def test_a_deployment_primary_variant_scores_with_onnx_like_the_model_itself(
    fake: FakeServingPlatform, tmp_path: Path
) -> None:
    frame, _, files = _cancer(tmp_path / "model")
    assert "model.onnx" in files
    fake.add_version("cancer", 2, files, _signature(CANCER, "diagnosis", "Int64", [0, 1]))
    fake.add_version("cancer", 1, files, _signature(CANCER, "diagnosis", "Int64", [0, 1]))
    fake.add_deployment(
        "demo",
        [
            {"name": "champion", "model": "cancer", "version": 2, "weight": 70.0, "shadow": False},
            {"name": "canary", "model": "cancer", "version": 1, "weight": 30.0, "shadow": False},
            {"name": "mirror", "model": "cancer", "version": 1, "weight": 90.0, "shadow": True},
        ],
    )
    outputs, written = _run(
        fake, tmp_path, frame, deployment="demo", keep_columns=["id"], batch_rows=100
    )

    # The primary (largest non-shadow) variant's version, its ONNX file.
    assert _fetched_artifacts(fake) == ["table.parquet", "model.onnx"]
    session = ort.InferenceSession(files["model.onnx"], providers=["CPUExecutionProvider"])
    x = frame.select(CANCER).to_numpy().astype(np.float32)
    labels, proba = session.run(None, {session.get_inputs()[0].name: x})
    assert written.columns == ["id", "prediction", "proba_0", "proba_1"]
    assert written["id"].to_list() == frame["id"].to_list()
    assert written["prediction"].to_list() == [int(v) for v in labels]
    np.testing.assert_allclose(written.select("proba_0", "proba_1").to_numpy(), proba, rtol=1e-5)

    out = BatchPredictOutputs.model_validate(outputs)
    assert (out.model, out.model_version, out.deployment, out.variant) == (
        "cancer",
        2,
        "demo",
        "champion",
    )
    assert (out.dataset, out.version, out.created, out.rows) == ("scored", 1, True, frame.height)
    assert out.table.model_dump() == {"job_id": JOB, "task": "score", "name": "table.parquet"}

    # The uploaded version is the written table, with its lineage.
    [version] = fake.datasets["scored"]
    assert version["format"] == "parquet"
    assert pl.read_parquet(io.BytesIO(version["bytes"])).equals(written)
    assert version["lineage"] == {
        "job_id": JOB,
        "task": "score",
        "inputs": ["load"],
        "source": {"name": "source", "version": 3},
        "model": "cancer",
        "model_version": 2,
        "model_version_id": fake.versions[("cancer", 2)]["id"],
        "deployment": "demo",
        "variant": "champion",
    }


def test_a_skops_version_in_small_batches_gives_the_estimators_own_answers(
    fake: FakeServingPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bunch = load_iris()
    species = [str(s) for s in np.asarray(bunch.target_names)[bunch.target]]
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(bunch.data, species)
    path = tmp_path / "tree.skops"
    sio.dump(tree, path)
    classes = ["setosa", "versicolor", "virginica"]
    fake.add_version(
        "iris",
        4,
        {"model.skops": path.read_bytes()},
        _signature(IRIS, "species", "String", classes),
    )
    frame = pl.DataFrame(bunch.data, schema=IRIS, orient="row").with_columns(
        pl.Series("species", species)
    )
    batches: list[int] = []
    original = tasks.feature_matrix

    def counting(batch: pl.DataFrame, features: Any) -> Any:
        batches.append(batch.height)
        return original(batch, features)

    monkeypatch.setattr(tasks, "feature_matrix", counting)
    outputs, written = _run(fake, tmp_path, frame, model="iris", version=4, batch_rows=64)

    assert batches == [64, 64, 22]
    assert _fetched_artifacts(fake) == ["table.parquet", "model.skops"]
    # Every input column kept, then the prediction and one probability column per class.
    assert written.columns == [*IRIS, "species", "prediction"] + [f"proba_{c}" for c in classes]
    assert written["prediction"].to_list() == list(tree.predict(bunch.data))
    np.testing.assert_allclose(
        written.select([f"proba_{c}" for c in classes]).to_numpy(), tree.predict_proba(bunch.data)
    )
    assert outputs["deployment"] is None
    assert outputs["model_version"] == 4


def test_an_alias_picks_the_version_and_probabilities_can_be_left_out(
    fake: FakeServingPlatform, tmp_path: Path
) -> None:
    frame, pipeline, files = _cancer(tmp_path / "model")
    fake.add_version("cancer", 3, files, _signature(CANCER, "diagnosis", "Int64", [0, 1]))
    fake.aliases[("cancer", "champion")] = {"alias": "champion", "version": 3}
    outputs, written = _run(
        fake, tmp_path, frame, model="cancer", alias="champion", probabilities=False
    )
    assert "proba_0" not in written.columns
    assert written.columns[-1] == "prediction"
    assert outputs["model_version"] == 3
    # The ONNX export reproduces the pipeline (training checks it), so these are its answers.
    agree = np.mean(
        written["prediction"].to_numpy() == pipeline.predict(frame.select(CANCER).to_numpy())
    )
    assert agree > 0.99


def test_missing_pieces_fail_with_a_clear_message(
    fake: FakeServingPlatform, tmp_path: Path
) -> None:
    frame, _, files = _cancer(tmp_path / "model")
    with pytest.raises(ServingTaskError, match="deployment 'nope' does not exist"):
        _run(fake, tmp_path, frame, deployment="nope")
    with pytest.raises(ServingTaskError, match="has no alias"):
        _run(fake, tmp_path, frame, model="cancer", alias="champion")
    fake.add_version("cancer", 1, files, _signature(CANCER, "diagnosis", "Int64", [0, 1]))
    with pytest.raises(ServingTaskError, match="no column"):
        _run(fake, tmp_path, frame.drop("mean_area"), model="cancer", version=1)
    with pytest.raises(ServingTaskError, match="already has column"):
        _run(fake, tmp_path, frame.rename({"id": "prediction"}), model="cancer", version=1)
    with pytest.raises(ServingTaskError, match="direct upstream task"):
        run_batch_predict(
            {"input": "load", "dataset": "scored", "model": "cancer", "version": 1},
            {},
            fake.context(tmp_path, "score"),
        )
    assert PROJECT not in fake.datasets
    assert fake.datasets == {}
