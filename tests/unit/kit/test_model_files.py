"""Safe loading (kit.model_files, the one policy of training, the registry and serving): skops
files are loaded only when every type they name is on the allow-list; anything else (a
builtin, ``os.system``, a pickle) is refused before anything in it runs. Every estimator a
`train` task may name produces files the policy accepts."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import load_iris

from armillary.contracts.training import ESTIMATORS, Preprocessing
from armillary.kit.model_files import ModelFileRefused as UntrustedModel
from armillary.kit.model_files import check_skops, load_skops
from armillary.kit.model_files import onnx_session as load_onnx_session
from armillary.training.estimators import build_pipeline


def _fitted(name: str, **hyper: object) -> object:
    x, y = load_iris(return_X_y=True)
    pipeline = build_pipeline(
        name, hyper, n_features=4, categorical=[], preprocessing=Preprocessing(), seed=0
    )
    return pipeline.fit(x, y)


@pytest.mark.parametrize(
    ("name", "hyper"),
    [
        ("RandomForestClassifier", {"n_estimators": 5}),
        ("HistGradientBoostingClassifier", {"max_iter": 5}),
        ("XGBClassifier", {"n_estimators": 5}),
        ("LGBMClassifier", {"n_estimators": 5}),
        ("LogisticRegression", {}),
    ],
)
def test_our_pipelines_load_and_predict_the_same(
    name: str, hyper: dict[str, object], tmp_path: Path
) -> None:
    model = _fitted(name, **hyper)
    path = tmp_path / "model.skops"
    sio.dump(model, path)
    loaded = load_skops(path)
    x, _ = load_iris(return_X_y=True)
    assert np.array_equal(loaded.predict(x), model.predict(x))  # type: ignore[attr-defined]


def _retarget(node: object, cls: str, module: str, name: str) -> None:
    """Point every schema node of class ``cls`` at ``module.name`` instead."""
    if isinstance(node, dict):
        if node.get("__class__") == cls:
            node["__class__"], node["__module__"] = name, module
        for value in node.values():
            _retarget(value, cls, module, name)
    elif isinstance(node, list):
        for value in node:
            _retarget(value, cls, module, name)


def _rewrite_schema(path: Path, target: Path, edit: object) -> None:
    """Copy a skops archive with its schema.json edited by ``edit(schema)``."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as dest:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "schema.json":
                schema = json.loads(data)
                edit(schema)  # type: ignore[operator]
                data = json.dumps(schema).encode()
            dest.writestr(item, data)


@pytest.mark.parametrize(
    ("module", "name"), [("builtins", "eval"), ("os", "system"), ("subprocess", "Popen")]
)
def test_a_skops_file_naming_a_dangerous_callable_is_refused(
    tmp_path: Path, module: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real model, its estimator's class replaced by a dangerous callable in the schema.
    original = tmp_path / "good.skops"
    sio.dump(_fitted("LogisticRegression"), original)
    hostile = tmp_path / "model.skops"
    _rewrite_schema(
        original, hostile, lambda schema: _retarget(schema, "LogisticRegression", module, name)
    )
    assert f"{module}.{name}" in sio.get_untrusted_types(file=hostile)
    called: list[object] = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a))
    with pytest.raises(UntrustedModel, match=f"{module}.{name}|not trusted"):
        load_skops(hostile)
    assert called == []


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_allow_listed_estimator_passes_the_policy(name: str, tmp_path: Path) -> None:
    # With one-hot encoding and imputation in front, as `train` builds it: what training
    # writes, the registry must accept and serving must load.
    problem = ESTIMATORS[name].problem
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] > 0).astype(int) if problem == "classification" else x[:, 0] * 2.0
    hyper = {"n_estimators": 3} if "n_estimators" in _params(name) else {}
    pipeline = build_pipeline(
        name, hyper, n_features=3, categorical=[], preprocessing=Preprocessing(), seed=0
    )
    pipeline.fit(x, y)
    path = tmp_path / "model.skops"
    sio.dump(pipeline, path)
    check_skops(path)
    assert np.array_equal(load_skops(path).predict(x), pipeline.predict(x))


def _params(name: str) -> set[str]:
    from armillary.contracts.training import estimator_class

    return set(estimator_class(ESTIMATORS[name])().get_params(deep=False))


class _WritesMarker:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.write_text, (Path(self.marker), "pwned"))


def test_a_pickle_renamed_to_model_skops_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "model.skops"
    path.write_bytes(pickle.dumps(_WritesMarker(str(marker))))
    with pytest.raises(UntrustedModel, match=r"(?i)not a skops archive"):
        load_skops(path)
    # A pickle wrapped in a zip is no skops file either.
    zipped = tmp_path / "zipped.skops"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("schema.json", pickle.dumps(_WritesMarker(str(marker))))
    with pytest.raises(UntrustedModel):
        load_skops(zipped)
    assert not marker.exists()


def test_a_corrupt_onnx_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(UntrustedModel):
        load_onnx_session(path)
