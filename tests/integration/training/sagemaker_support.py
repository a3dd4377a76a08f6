"""What the SageMaker backend tests share: a fitted iris model as a job's ``model.tar.gz``,
the training table, the settings and the attempt's context."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import polars as pl
import skops.io
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from armillary.contracts.task_base import TaskContext
from armillary.contracts.training import SageMakerSettings, TrainParams

BUCKET = "armillary-training"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/armillary-train:1"
ROLE = "arn:aws:iam::123456789012:role/ArmillarySageMakerTraining"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    data = load_iris()
    return data.data, data.target


def model_tarball() -> bytes:
    """A ``model.tar.gz`` as a training image writes it: ``./`` and ``./model.skops``."""
    x, y = iris()
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())])
    pipeline.fit(x, y)
    model = skops.io.dumps(pipeline)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        directory = tarfile.TarInfo(".")
        directory.type = tarfile.DIRTYPE
        archive.addfile(directory)
        member = tarfile.TarInfo("./model.skops")
        member.size = len(model)
        archive.addfile(member, io.BytesIO(model))
    return buffer.getvalue()


def plant(s3: Any, uri: str, body: bytes) -> None:
    parsed = urlparse(uri)
    s3.put_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"), Body=body)


def train_table(path: Path) -> Path:
    x, y = iris()
    table = pl.DataFrame({name: x[:, i] for i, name in enumerate(FEATURES)})
    table = table.with_columns(pl.Series("species", y))
    table.write_parquet(path)
    return path


def params(**settings: Any) -> TrainParams:
    return TrainParams(
        input="prepare",
        target="species",
        features=FEATURES,
        estimator="LogisticRegression",
        hyperparameters={"C": 0.5, "max_iter": 200},
        backend="sagemaker",
        sagemaker=SageMakerSettings(
            image=IMAGE,
            role_arn=ROLE,
            bucket=BUCKET,
            prefix="runs",
            instance_type="ml.m5.xlarge",
            instance_count=1,
            volume_size_gb=10,
            max_runtime_seconds=3600,
            poll_seconds=0.05,
            **settings,
        ),
    )


def context(tmp_path: Path) -> TaskContext:
    workdir = tmp_path / "attempt"
    (workdir / "artifacts").mkdir(parents=True)
    return TaskContext(
        job_id="0b9c6f8e-job",
        project_id="p-1",
        task="train_model",
        attempt_id="a1b2c3d4e5f6",
        workdir=workdir,
        artifacts_dir=workdir / "artifacts",
        api_url="http://127.0.0.1:1",
    )


def load_and_predict(path: Path) -> np.ndarray[Any, Any]:
    """Load a skops file the way the platform does (explicitly trusted types), and predict."""
    untrusted = skops.io.get_untrusted_types(file=path)
    model = skops.io.load(path, trusted=untrusted)
    x, _ = iris()
    predictions: np.ndarray[Any, Any] = model.predict(x)
    return predictions
