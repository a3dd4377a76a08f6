"""A version served from skops switches to ONNX once its export arrives (ADR 0018): by the
registry's event (the loaded model is forgotten), or, in a process that did not consume it,
as soon as its directory lists ``model.onnx``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tests.unit.serving.runtime.conftest import Trained

from armillary.serving.deployments.artifacts import ModelFile
from armillary.serving.predict.log import PredictionLog
from armillary.serving.predict.service import Batching, Predictor
from armillary.serving.predict.settings import PredictSettings


@dataclass
class Variant:
    model_version_id: str = "version-1"
    name: str = "champion"


class Files:
    """The directory's view of one version: skops only until ``onnx`` is set."""

    def __init__(self, trained: Trained) -> None:
        self.trained = trained
        self.onnx = False
        self.loads: list[str] = []

    async def model_file(self, variant: Any) -> ModelFile:
        fmt = "onnx" if self.onnx else "skops"
        self.loads.append(fmt)
        path = self.trained.onnx if self.onnx else self.trained.skops
        return ModelFile(fmt, self.trained.signature, cast(Path, path))

    def has_onnx(self, model_version_id: str) -> bool:
        return self.onnx


def _predictor(files: Files) -> Predictor:
    batching = Batching(max_batch_rows=8, max_wait_ms=1.0, max_models=4, sample_rate=0.0)
    # The log writer is not used by model loading.
    return Predictor(files, cast(PredictionLog, None), batching, PredictSettings())


async def test_a_skops_model_gives_way_to_onnx_once_the_version_lists_it(iris_lr: Trained) -> None:
    files = Files(iris_lr)
    predictor = _predictor(files)
    assert (await predictor.model(Variant())).format == "skops"
    assert (await predictor.model(Variant())).format == "skops"
    assert files.loads == ["skops"]
    files.onnx = True
    assert (await predictor.model(Variant())).format == "onnx"
    assert (await predictor.model(Variant())).format == "onnx"
    assert files.loads == ["skops", "onnx"]


async def test_the_event_makes_the_next_request_load_the_model_again(iris_lr: Trained) -> None:
    files = Files(iris_lr)
    predictor = _predictor(files)
    await predictor.model(Variant())
    predictor.version_changed("version-1")
    assert "version-1" not in predictor.cache
    await predictor.model(Variant())
    assert files.loads == ["skops", "skops"]
