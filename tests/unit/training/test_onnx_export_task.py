"""The ``onnx_export`` task (ADR 0018): the train task only leaves the rows the export must
reproduce; the export, run later on the registered version, converts and checks them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from tests.unit.training.fakes import JOB, FakePlatform
from tests.unit.training.test_tasks import iris_frame

from armillary.contracts.training import OnnxExportOutputs, TrainOutputs
from armillary.kit.model_files import onnx_session
from armillary.training import artifacts
from armillary.training.tasks import run_onnx_export, run_train


def _trained(
    fake: FakePlatform, tmp_path: Path, estimator: str, frame: pl.DataFrame | None = None
) -> TrainOutputs:
    inputs = {"load": fake.add_table("load", iris_frame() if frame is None else frame, tmp_path)}
    context = fake.context(tmp_path, "fit")
    params = {"input": "load", "target": "species", "estimator": estimator}
    outputs = TrainOutputs.model_validate(run_train(params, inputs, context))
    fake.upload(context)
    fake.model_files[("iris", 1, "model.skops")] = fake.artifacts[(JOB, "fit", "model.skops")]
    fake.versions[("iris", 1)] = {"estimator": estimator, "problem": "classification"}
    return outputs


def _export(fake: FakePlatform, tmp_path: Path) -> tuple[OnnxExportOutputs, Path]:
    context = fake.context(tmp_path, "export")
    params = {
        "model": "iris",
        "version": 1,
        "parity": {"job_id": JOB, "task": "fit", "name": "onnx_parity.npy"},
    }
    outputs = OnnxExportOutputs.model_validate(run_onnx_export(params, {}, context))
    return outputs, context.artifacts_dir / "model.onnx"


def test_training_defers_the_export_and_keeps_the_rows_it_must_reproduce(
    fake: FakePlatform, tmp_path: Path
) -> None:
    trained = _trained(fake, tmp_path, "RandomForestClassifier")
    assert trained.onnx is not None
    assert trained.onnx.status == "pending"
    assert trained.artifacts.onnx is None
    assert trained.artifacts.onnx_parity is not None
    rows = artifacts.load_parity_rows(next(tmp_path.glob("work-fit-*/artifacts/onnx_parity.npy")))
    # Every training row (k-fold or hold-out, the final model's rows are all of them here).
    assert rows.shape[1] == 4
    assert len(rows) >= 120


def test_the_export_task_converts_the_version_and_checks_it_on_the_training_rows(
    fake: FakePlatform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _trained(fake, tmp_path, "RandomForestClassifier")
    outputs, path = _export(fake, tmp_path)
    assert outputs.reason is None
    assert outputs.onnx is not None
    assert outputs.onnx.name == "model.onnx"
    assert outputs.parity_rows >= 120
    assert path.is_file()
    session = onnx_session(path)
    [labels, _] = session.run(None, {"input": np.array([[5.1, 3.5, 1.4, 0.2]], np.float32)})
    assert labels.tolist() == ["setosa"]
    assert "[onnx_export] onnx: exported; parity check passed" in capsys.readouterr().out


def test_an_export_that_predicts_differently_is_not_kept_and_says_why(
    fake: FakePlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _trained(fake, tmp_path, "LogisticRegression")
    real = artifacts.load_onnx_session

    class Wrong:
        def __init__(self, session: Any) -> None:
            self._session = session

        def get_inputs(self) -> Any:
            return self._session.get_inputs()

        def run(self, names: Any, feed: Any) -> Any:
            labels, proba = self._session.run(names, feed)
            return [np.full_like(labels, "setosa"), proba]

    monkeypatch.setattr(artifacts, "load_onnx_session", lambda p: Wrong(real(p)))
    outputs, path = _export(fake, tmp_path)
    assert outputs.onnx is None
    assert outputs.reason is not None
    assert outputs.reason.startswith("parity check failed: the ONNX export predicts")
    assert not path.exists()


def test_a_model_without_a_converter_is_failed_at_training_with_its_reason(
    fake: FakePlatform, tmp_path: Path
) -> None:
    codes = {"setosa": 0, "versicolor": 1, "virginica": 2}
    frame = iris_frame().with_columns(pl.col("species").replace_strict(codes))
    trained = _trained(fake, tmp_path, "XGBClassifier", frame)
    assert trained.onnx is not None
    assert trained.onnx.status == "failed"
    assert trained.onnx.reason == "no ONNX converter installed for XGBClassifier"
    assert trained.artifacts.onnx_parity is None
