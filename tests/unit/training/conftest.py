"""Fixtures of the training unit tests: the fake platform wired in as the tasks' API."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from tests.unit.training.fakes import FakePlatform

from armillary.training import task_io


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePlatform]:
    platform = FakePlatform()
    monkeypatch.setattr(task_io, "_api_transport", platform.transport)
    yield platform


def iris_frame() -> pl.DataFrame:
    """Iris with the species as strings."""
    bunch = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    frame = pl.DataFrame(bunch.data, schema=names, orient="row")
    species = np.asarray(bunch.target_names)[bunch.target]
    return frame.with_columns(pl.Series("species", [str(s) for s in species]))


def diabetes_frame() -> pl.DataFrame:
    bunch = load_diabetes()
    frame = pl.DataFrame(bunch.data, schema=list(bunch.feature_names), orient="row")
    return frame.with_columns(pl.Series("progression", bunch.target))


def cancer_frame() -> pl.DataFrame:
    bunch = load_breast_cancer()
    names = [n.replace(" ", "_") for n in bunch.feature_names]
    frame = pl.DataFrame(bunch.data, schema=names, orient="row")
    return frame.with_columns(pl.Series("malignant", 1 - bunch.target))
