"""The SageMaker backend with real boto3 against the moto server process: the training table
goes up, the job is created with the request the contract promises, and the model the job
left in S3 comes back as a loadable skops file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from tests.integration.training.sagemaker_support import (
    BUCKET,
    FEATURES,
    IMAGE,
    ROLE,
    context,
    iris,
    load_and_predict,
    model_tarball,
    params,
    plant,
    train_table,
)

from armillary.training.sagemaker import train_on_sagemaker


@pytest.fixture
def moto_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    # The code under test builds its own clients: the standard variable points them at moto.
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL_SAGEMAKER", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    s3 = boto3.client("s3", region_name="us-east-1")
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    return moto_endpoint


def test_a_job_on_moto_returns_the_model_it_wrote(
    moto_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    created: list[str] = []

    def plant_model(parsed: dict[str, Any], **_: Any) -> None:
        # moto completes a job at once and writes nothing: put the image's model where the
        # job's description says it is, before the first poll.
        name = parsed["TrainingJobArn"].rsplit("/", 1)[-1]
        created.append(name)
        uri = sagemaker.describe_training_job(TrainingJobName=name)["ModelArtifacts"]
        plant(s3, uri["S3ModelArtifacts"], model_tarball())

    # The clients the code builds itself come from boto3's default session: hook it.
    session = boto3.Session(region_name="us-east-1")
    session.events.register("after-call.sagemaker.CreateTrainingJob", plant_model)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    ctx = context(tmp_path)
    seen: list[dict[str, Any]] = []

    result = train_on_sagemaker(params(), train_table(tmp_path / "train.parquet"), ctx, seen.append)

    assert result.job_name == created[0]
    assert result.format == "skops"
    assert result.model_path.name == "model.skops"
    assert result.model_path.is_relative_to(ctx.workdir)
    assert result.status_history == ["Completed:Completed"]
    assert "Completed/Completed" in [event["message"] for event in seen]
    assert all(event["stage"] == "sagemaker" for event in seen)
    _, y = iris()
    assert np.mean(load_and_predict(result.model_path) == y) > 0.9

    base = f"runs/{ctx.job_id}/{ctx.task}/{ctx.attempt_id}"
    uploaded = s3.get_object(Bucket=BUCKET, Key=f"{base}/input/train.parquet")["Body"].read()
    assert uploaded == (tmp_path / "train.parquet").read_bytes()

    job = sagemaker.describe_training_job(TrainingJobName=result.job_name)
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert job["RoleArn"] == ROLE
    assert job["ResourceConfig"] == {
        "InstanceType": "ml.m5.xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 10,
    }
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == 3600
    [channel] = job["InputDataConfig"]
    assert channel["ChannelName"] == "train"
    source = channel["DataSource"]["S3DataSource"]
    assert source["S3DataType"] == "S3Prefix"
    assert source["S3Uri"] == f"s3://{BUCKET}/{base}/input/"
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/{base}/output"
    hyper = job["HyperParameters"]
    assert all(isinstance(value, str) for value in hyper.values())
    assert {name: json.loads(value) for name, value in hyper.items()} == {
        "target": "species",
        "features": FEATURES,
        "estimator": "LogisticRegression",
        "hyperparameters": {"C": 0.5, "max_iter": 200},
        "preprocessing": {
            "impute": "median",
            "scale": "standard",
            "one_hot": True,
            "categorical": None,
        },
    }
    tags = sagemaker.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    assert {"Key": "armillary:job-id", "Value": ctx.job_id} in tags


def test_two_attempts_get_distinct_valid_job_names(moto_env: str, tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    sagemaker.meta.events.register(
        "after-call.sagemaker.CreateTrainingJob",
        lambda parsed, **_: plant(
            s3,
            sagemaker.describe_training_job(
                TrainingJobName=parsed["TrainingJobArn"].rsplit("/", 1)[-1]
            )["ModelArtifacts"]["S3ModelArtifacts"],
            model_tarball(),
        ),
    )
    table = train_table(tmp_path / "train.parquet")
    names = set()
    for attempt in ("one", "two"):
        ctx = context(tmp_path / attempt)
        result = train_on_sagemaker(params(), table, ctx, lambda _: None, client=sagemaker, s3=s3)
        names.add(result.job_name)
    assert len(names) == 2
