"""A training job's life as the backend follows it, against a fake SageMaker speaking botocore's
JSON protocol over HTTP (moto completes jobs at once) and S3 on the moto server: each status is
reported, a failure raises with SageMaker's reason, an interrupted attempt stops its job."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.integration.training.sagemaker_fake import COMPLETED, RUNNING, FakeSageMaker, serve
from tests.integration.training.sagemaker_support import (
    BUCKET,
    context,
    load_and_predict,
    model_tarball,
    params,
    plant,
    train_table,
)

from armillary.contracts.task_base import WorkerCall, WorkerCallFailed
from armillary.training.sagemaker import (
    SageMakerTrainingFailed,
    Terminated,
    run_for_worker,
    train_on_sagemaker,
)

FAILED = {
    "TrainingJobStatus": "Failed",
    "SecondaryStatus": "Failed",
    "FailureReason": "AlgorithmError: ValueError: could not convert string to float: 'setosa'",
}


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    client = boto3.client("s3", region_name="us-east-1")
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    return client


def _fake(
    script: list[dict[str, Any]], s3: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeSageMaker]:
    def plant_model(description: dict[str, Any]) -> None:
        plant(s3, description["ModelArtifacts"]["S3ModelArtifacts"], model_tarball())

    with serve(FakeSageMaker(script, on_complete=plant_model)) as fake:
        # Only SageMaker goes to the fake: S3 stays on moto through AWS_ENDPOINT_URL.
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", fake.url)
        yield fake


@pytest.fixture
def completing(s3: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSageMaker]:
    yield from _fake([*RUNNING, COMPLETED], s3, monkeypatch)


@pytest.fixture
def failing(s3: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSageMaker]:
    yield from _fake([*RUNNING, FAILED], s3, monkeypatch)


@pytest.fixture
def endless(s3: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSageMaker]:
    yield from _fake(RUNNING, s3, monkeypatch)


def test_every_status_is_reported_until_the_model_comes_back(
    completing: FakeSageMaker, tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    result = train_on_sagemaker(
        params(), train_table(tmp_path / "t.parquet"), context(tmp_path), seen.append
    )

    assert result.status_history == [
        "InProgress:Starting",
        "InProgress:Downloading",
        "InProgress:Training",
        "Completed:Completed",
    ]
    messages = [event["message"] for event in seen if "/" in event["message"]]
    assert messages == [
        "InProgress/Starting",
        "InProgress/Downloading",
        "InProgress/Training",
        "Completed/Completed",
    ]
    assert seen[-2]["metrics"] == {"validation:f1": 0.93}  # the job's final metrics
    assert load_and_predict(result.model_path).shape == (150,)
    assert completing.operations()[0] == "CreateTrainingJob"
    assert "StopTrainingJob" not in completing.operations()


def test_a_failed_job_raises_with_its_failure_reason(
    failing: FakeSageMaker, tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    with pytest.raises(SageMakerTrainingFailed, match="could not convert string to float"):
        train_on_sagemaker(
            params(), train_table(tmp_path / "t.parquet"), context(tmp_path), seen.append
        )
    assert [event["message"] for event in seen][-1] == "Failed/Failed"
    assert "StopTrainingJob" not in failing.operations()
    assert not (tmp_path / "attempt" / "sagemaker" / "model").exists()


def test_an_interrupted_attempt_stops_its_job(endless: FakeSageMaker, tmp_path: Path) -> None:
    def interrupt(event: dict[str, Any]) -> None:
        if event["message"] == "InProgress/Training":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_on_sagemaker(
            params(), train_table(tmp_path / "t.parquet"), context(tmp_path), interrupt
        )
    [(_, stop)] = [call for call in endless.calls if call[0] == "StopTrainingJob"]
    [job_name] = endless.jobs
    assert stop == {"TrainingJobName": job_name}


def test_sigterm_stops_the_job_and_restores_the_handler(
    endless: FakeSageMaker, tmp_path: Path
) -> None:
    before = signal.getsignal(signal.SIGTERM)

    def terminate(event: dict[str, Any]) -> None:
        if event["message"] == "InProgress/Downloading":
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Terminated):
        train_on_sagemaker(
            params(), train_table(tmp_path / "t.parquet"), context(tmp_path), terminate
        )
    assert "StopTrainingJob" in endless.operations()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_job_stopped_elsewhere_fails_the_attempt(
    s3: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stopped = {"TrainingJobStatus": "Stopped", "SecondaryStatus": "Stopped"}
    for _ in _fake([RUNNING[0], stopped], s3, monkeypatch):
        with pytest.raises(SageMakerTrainingFailed, match="was stopped"):
            train_on_sagemaker(
                params(), train_table(tmp_path / "t.parquet"), context(tmp_path), lambda _: None
            )


def test_a_model_outside_the_jobs_output_path_is_not_fetched(
    s3: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Another object in the bucket, which the worker's credentials could read.
    plant(s3, f"s3://{BUCKET}/elsewhere/model.tar.gz", model_tarball())
    for fake in _fake([COMPLETED], s3, monkeypatch):
        fake.model_uri = f"s3://{BUCKET}/elsewhere/model.tar.gz"
        with pytest.raises(SageMakerTrainingFailed, match="outside its output path"):
            train_on_sagemaker(
                params(), train_table(tmp_path / "t.parquet"), context(tmp_path), lambda _: None
            )
    assert not (tmp_path / "attempt" / "sagemaker").exists()


# -- as the worker runs it for a sandboxed `train` task (worker call `sagemaker_train`) -------


def _call(tmp_path: Path, stop: threading.Event | None = None) -> WorkerCall:
    ctx = context(tmp_path)
    return WorkerCall(
        params=params().model_dump(mode="json"),
        context=ctx,
        upload=train_table(tmp_path / "upload"),
        stop=stop or threading.Event(),
    )


def test_the_worker_call_runs_the_job_and_returns_the_model(
    completing: FakeSageMaker, tmp_path: Path
) -> None:
    result = run_for_worker(_call(tmp_path))

    assert result.info["format"] == "skops"
    assert result.info["history"][-1] == "Completed:Completed"
    assert result.info["job_name"] == next(iter(completing.jobs))
    assert load_and_predict(result.file).shape == (150,)


def test_the_worker_call_reports_the_jobs_failure(failing: FakeSageMaker, tmp_path: Path) -> None:
    with pytest.raises(WorkerCallFailed, match="could not convert string to float"):
        run_for_worker(_call(tmp_path))


def test_the_worker_call_stops_the_job_when_the_attempt_ends(
    endless: FakeSageMaker, tmp_path: Path
) -> None:
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)  # the attempt ends while the job runs
    timer.start()
    try:
        with pytest.raises(WorkerCallFailed, match="the attempt ended"):
            run_for_worker(_call(tmp_path, stop))
    finally:
        timer.cancel()
    [job_name] = endless.jobs
    assert ("StopTrainingJob", {"TrainingJobName": job_name}) in endless.calls


def test_the_worker_call_refuses_a_train_task_without_sagemaker(tmp_path: Path) -> None:
    call = _call(tmp_path)
    local = {**call.params, "backend": "local", "sagemaker": None}
    with pytest.raises(WorkerCallFailed, match="does not use the sagemaker backend"):
        run_for_worker(WorkerCall(local, call.context, call.upload, call.stop))
