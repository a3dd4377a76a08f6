"""What the SageMaker backend asks SageMaker for: valid job names, str -> str hyperparameters,
and paths built from the attempt's ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from armillary.contracts.data_tasks import TASK_NAME_PATTERN
from armillary.contracts.task_base import TaskContext
from armillary.contracts.training import SageMakerSettings, TrainParams
from armillary.training.sagemaker import (
    JOB_NAME_MAX,
    JOB_NAME_PATTERN,
    SageMakerTrainingFailed,
    create_request,
    encode_hyperparameters,
    train_on_sagemaker,
    training_job_name,
)

SETTINGS = SageMakerSettings(
    image="img:1",
    role_arn="arn:aws:iam::123456789012:role/r",
    bucket="bucket-1",
    prefix="/team/runs/",
)


def _params(**changes: object) -> TrainParams:
    values: dict[str, object] = {
        "input": "prep",
        "target": "y",
        "estimator": "Ridge",
        "hyperparameters": {"alpha": 0.1},
        "backend": "sagemaker",
        "sagemaker": SETTINGS,
        **changes,
    }
    return TrainParams.model_validate(values)


CONTEXT = TaskContext(
    job_id="job-1",
    project_id="p",
    task="fit",
    attempt_id="att-1",
    workdir=Path("/w"),
    artifacts_dir=Path("/w/artifacts"),
    api_url="http://api",
)


@given(
    task=st.from_regex(TASK_NAME_PATTERN, fullmatch=True),
    attempt=st.text(min_size=0, max_size=80),
)
def test_job_names_are_valid_sagemaker_names(task: str, attempt: str) -> None:
    name = training_job_name(task, attempt)
    assert len(name) <= JOB_NAME_MAX
    assert JOB_NAME_PATTERN.fullmatch(name)


def test_job_names_are_unique_per_call() -> None:
    assert training_job_name("train", "a1") != training_job_name("train", "a1")


def test_hyperparameters_are_json_strings() -> None:
    encoded = encode_hyperparameters(_params(features=["a", "b"]))
    assert all(isinstance(value, str) for value in encoded.values())
    assert json.loads(encoded["features"]) == ["a", "b"]
    assert json.loads(encoded["hyperparameters"]) == {"alpha": 0.1}
    assert json.loads(encoded["target"]) == "y"
    assert json.loads(encoded["estimator"]) == "Ridge"
    assert json.loads(encoded["preprocessing"])["impute"] == "median"


def test_a_hyperparameter_longer_than_sagemaker_allows_is_refused() -> None:
    features = [f"feature_{i:04d}" for i in range(400)]
    with pytest.raises(SageMakerTrainingFailed, match=r"'features'.*2500"):
        encode_hyperparameters(_params(features=features))


def test_paths_come_from_the_attempts_ids_under_the_prefix() -> None:
    request = create_request(_params(), SETTINGS, CONTEXT, "name-1")
    source = request["InputDataConfig"][0]["DataSource"]["S3DataSource"]
    assert source["S3Uri"] == "s3://bucket-1/team/runs/job-1/fit/att-1/input/"
    assert request["OutputDataConfig"]["S3OutputPath"] == (
        "s3://bucket-1/team/runs/job-1/fit/att-1/output"
    )


def test_local_params_are_refused() -> None:
    local = TrainParams(input="prep", target="y", estimator="Ridge")
    with pytest.raises(ValueError, match="sagemaker"):
        train_on_sagemaker(local, Path("/nonexistent"), CONTEXT, lambda _: None)


class _Recorder:
    """Stands in for the boto3 clients: records each call; ``describe`` fails."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if name == "describe_training_job":
                raise ConnectionError("endpoint unreachable")
            return {}

        return call


def test_a_refused_request_uploads_nothing() -> None:
    recorder = _Recorder()
    params = _params(features=[f"feature_{i:04d}" for i in range(400)])
    with pytest.raises(SageMakerTrainingFailed):
        train_on_sagemaker(params, Path("t"), CONTEXT, lambda _: None, client=recorder, s3=recorder)
    assert recorder.calls == []


def test_a_job_whose_state_cannot_be_read_is_stopped() -> None:
    recorder = _Recorder()
    with pytest.raises(ConnectionError):
        train_on_sagemaker(
            _params(), Path("t"), CONTEXT, lambda _: None, client=recorder, s3=recorder
        )
    assert recorder.calls == [
        "upload_file",
        "create_training_job",
        "describe_training_job",
        "stop_training_job",
    ]
