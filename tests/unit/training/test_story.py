"""What the training tasks write to their log (stdout, which the worker stores): the lines of a
failed trial, a failed stage, a dropped ONNX export and a champion comparison, and the task log's
guards (one line per event, the job token never written). The lines of a whole job are checked
against the real platform in tests/integration/training."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier
from tests.unit.training.conftest import iris_frame
from tests.unit.training.fakes import TOKEN, FakePlatform

from armillary.contracts.training import Search
from armillary.sdk.task_log import TaskLog, plain_url, size
from armillary.training.progress import Progress
from armillary.training.search import run_search
from armillary.training.tasks import run_evaluate, run_train


def test_the_task_log_writes_one_line_per_event_and_never_the_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = TaskLog("train", hide=[TOKEN])
    log(f"fetch failed:\nBearer {TOKEN}")
    with pytest.raises(RuntimeError), log.stage("fit"):
        raise RuntimeError("boom")
    with log.stage("score"):
        pass
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[train] fetch failed: Bearer [redacted]"
    assert re.fullmatch(r"\[train\] stage fit failed after \d+\.\d\d s", lines[1])
    assert re.fullmatch(r"\[train\] stage score: \d+\.\d\d s", lines[2])
    assert len(lines) == 3


def test_sizes_and_urls_are_written_plainly() -> None:
    assert size(512) == "512 bytes"
    assert size(98_914) == "96.6 KiB (98,914 bytes)"
    assert size(3 * 1024**3) == "3.0 GiB (3,221,225,472 bytes)"
    assert plain_url("https://user:pw@example.com:8443/a/b.csv?sig=SECRET#x") == (
        "https://example.com:8443/a/b.csv"
    )


def test_a_failed_trial_is_a_line_and_the_search_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def make(hyper: Any) -> Any:
        return DecisionTreeClassifier(**hyper)

    x = np.tile(np.arange(20.0), (2, 1)).T
    y = np.array([0, 1] * 10)
    search = Search(space={"max_depth": [2, -3]}, folds=2, metric="accuracy")
    run_search(make, x, y, "classification", search, stratify=True, seed=0, progress=Progress(None))
    out = capsys.readouterr().out
    assert "[train] search: grid search over 2 candidates, 2-fold cross-validation on 20" in out
    assert re.search(r"^\[train\] trial 1/2: max_depth=2: accuracy=\S+ \(", out, re.MULTILINE)
    assert re.search(r"^\[train\] trial 2/2: max_depth=-3: failed: \w+", out, re.MULTILINE)
    assert "[train] search: best trial 1, accuracy=" in out


def test_a_dropped_onnx_export_and_a_champion_comparison_are_told(
    fake: FakePlatform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = {"load": fake.add_table("load", iris_frame(), tmp_path)}
    # String features: no ONNX export, and the log says so.
    frame = iris_frame().with_columns(sepal_length=iris_frame()["sepal_length"].cast(str))
    strings = {"strs": fake.add_table("strs", frame, tmp_path)}
    params = {"target": "species", "estimator": "RandomForestClassifier"}
    forest = {**params, "input": "strs", "hyperparameters": {"n_estimators": 5}}
    run_train(forest, strings, fake.context(tmp_path, "s"))
    out = capsys.readouterr().out
    features = "sepal_length, sepal_width, petal_length, petal_width"
    assert f"[train] columns: 4 features ({features}), 1 categorical (sepal_length)" in out
    assert (
        "[train] onnx: no ONNX export for categorical (string) features; the model is served "
        "from model.skops" in out
    )

    context = fake.context(tmp_path, "fit")
    trained = run_train({**params, "input": "load", "onnx": False}, inputs, context)
    fake.upload(context)
    assert "[train] onnx: not requested" in capsys.readouterr().out
    evaluate = {"model": "fit", "compare": {"model": "iris", "metric": "accuracy"}}
    run_evaluate(evaluate, {"fit": trained}, fake.context(tmp_path, "judge"))
    out = capsys.readouterr().out
    assert "[evaluate] champion: iris has no champion yet: nothing to beat" in out
    assert "[evaluate] result: passed" in out
