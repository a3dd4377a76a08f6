"""The SageMaker backend of the ``train`` task type.

Uploads the training table to S3, runs a SageMaker training job with the operator's training
image (its contract is in ``docs/training-image.md``), follows it until it ends, and brings
back the model it wrote: a ``model.skops`` or ``model.onnx`` from the job's ``model.tar.gz``,
extracted with strict checks because the tarball is written by code the platform does not
control. Pickles are refused: the platform never loads them.

Clients come from boto3's standard configuration: credentials and region from the AWS
environment variables, endpoints from ``AWS_ENDPOINT_URL_SAGEMAKER`` / ``AWS_ENDPOINT_URL_S3``
/ ``AWS_ENDPOINT_URL`` (which botocore reads itself).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import signal
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import Any, Literal
from urllib.parse import urlparse

from armillary.contracts.task_base import (
    TaskContext,
    WorkerCall,
    WorkerCallFailed,
    WorkerCallResult,
)
from armillary.contracts.training import SageMakerSettings, TrainParams

ModelFormat = Literal["skops", "onnx"]
Progress = Callable[[dict[str, Any]], None]

#: The files a training image may leave in ``/opt/ml/model`` as the model.
MODEL_FILES: dict[str, ModelFormat] = {"model.skops": "skops", "model.onnx": "onnx"}
#: Serialisations the platform never loads; a tarball holding one is refused as a whole.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
MAX_TARBALL_BYTES = 2 * 1024**3  # compressed, as stored in S3
MAX_MODEL_BYTES = 4 * 1024**3  # declared size of any one member
MAX_MEMBERS = 16  # a model directory holds a few files, not a tree
#: SageMaker's limits on a training job's name and on each hyperparameter value.
JOB_NAME_MAX = 63
JOB_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
HYPERPARAMETER_MAX_CHARS = 2500
TERMINAL = ("Completed", "Failed", "Stopped")


@dataclass(frozen=True)
class SageMakerResult:
    """The model a SageMaker training job produced, extracted into the attempt's workdir."""

    model_path: Path
    format: ModelFormat
    job_name: str
    status_history: list[str] = field(default_factory=list)


class SageMakerTrainingFailed(Exception):
    """The training job failed or was stopped (the message carries SageMaker's reason), or
    what it produced is not a model the platform accepts."""


class UnsafeModelArtifact(SageMakerTrainingFailed):
    """The job's ``model.tar.gz`` breaks a rule of :func:`extract_model`."""


class Terminated(BaseException):
    """SIGTERM while the job runs: unwinds like KeyboardInterrupt so the job is stopped."""


# -- naming and request ----------------------------------------------------------------------


def training_job_name(task: str, attempt_id: str) -> str:
    """A fresh, valid SageMaker training job name: ``armillary-{task}-{attempt}-{random}``."""
    task_part = re.sub(r"[^a-z0-9]+", "-", task.lower()).strip("-")[:30] or "train"
    attempt_part = re.sub(r"[^a-z0-9]", "", attempt_id.lower())[:8] or "x"
    # At most 10 + 30 + 1 + 8 + 1 + 8 = 58 characters.
    return f"armillary-{task_part}-{attempt_part}-{secrets.token_hex(4)}"


def encode_hyperparameters(params: TrainParams) -> dict[str, str]:
    """SageMaker hyperparameters are a str -> str map: each value is JSON, which the training
    image decodes (``docs/training-image.md``)."""
    values: dict[str, Any] = {
        "target": params.target,
        "features": params.features,
        "estimator": params.estimator,
        "hyperparameters": params.hyperparameters,
        "preprocessing": params.preprocessing.model_dump(mode="json"),
    }
    encoded = {name: json.dumps(value, allow_nan=False) for name, value in values.items()}
    for name, value in encoded.items():
        if len(value) > HYPERPARAMETER_MAX_CHARS:
            raise SageMakerTrainingFailed(
                f"the {name!r} hyperparameter is {len(value)} characters of JSON; SageMaker "
                f"allows {HYPERPARAMETER_MAX_CHARS} (leave `features` unset to use every column "
                "but the target)"
            )
    return encoded


def _base_key(settings: SageMakerSettings, context: TaskContext) -> str:
    prefix = settings.prefix.strip("/")
    parts = (context.job_id, context.task, context.attempt_id)
    return "/".join(p for p in (prefix, *parts) if p)


def create_request(
    params: TrainParams, settings: SageMakerSettings, context: TaskContext, job_name: str
) -> dict[str, Any]:
    """The ``CreateTrainingJob`` request of an attempt."""
    base = f"s3://{settings.bucket}/{_base_key(settings, context)}"
    return {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {
            "TrainingImage": settings.image,
            "TrainingInputMode": "File",
        },
        "RoleArn": settings.role_arn,
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        # The trailing slash: a sibling key such as ``input2/`` must not match.
                        "S3Uri": f"{base}/input/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"{base}/output"},
        "ResourceConfig": {
            "InstanceType": settings.instance_type,
            "InstanceCount": settings.instance_count,
            "VolumeSizeInGB": settings.volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_seconds},
        "HyperParameters": encode_hyperparameters(params),
        "Tags": [
            {"Key": "armillary:job-id", "Value": context.job_id},
            {"Key": "armillary:project-id", "Value": context.project_id},
            {"Key": "armillary:task", "Value": context.task},
            {"Key": "armillary:attempt-id", "Value": context.attempt_id},
        ],
    }


def _clients(settings: SageMakerSettings) -> tuple[Any, Any]:
    import boto3  # imported by the attempts that use it, not by the fork server
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5})
    sagemaker = boto3.client("sagemaker", region_name=settings.region, config=config)
    s3 = boto3.client("s3", region_name=settings.region, config=config)
    return sagemaker, s3


# -- the job ---------------------------------------------------------------------------------


def train_on_sagemaker(
    params: TrainParams,
    train_table: Path,
    context: TaskContext,
    progress: Progress,
    *,
    client: Any = None,
    s3: Any = None,
    stop: threading.Event | None = None,
) -> SageMakerResult:
    """Train on SageMaker: upload ``train_table``, run the job, return the model it wrote.

    Raises :class:`SageMakerTrainingFailed` when the job fails or is stopped, or its model
    is refused. If the attempt is interrupted (KeyboardInterrupt, SIGTERM) while the job runs,
    the job is stopped (best effort) before the interruption propagates; so it is when
    ``stop`` is set (the worker runs this for a sandboxed task and sets it when the attempt
    ends).
    """
    settings = params.sagemaker
    if settings is None:
        raise ValueError("train_on_sagemaker needs `sagemaker` settings")
    if client is None or s3 is None:
        default_client, default_s3 = _clients(settings)
        client = client if client is not None else default_client
        s3 = s3 if s3 is not None else default_s3
    job_name = training_job_name(context.task, context.attempt_id)
    request = create_request(params, settings, context, job_name)  # refuses before uploading
    input_key = f"{_base_key(settings, context)}/input/train.parquet"
    progress({"stage": "sagemaker", "message": f"uploading the training table ({job_name})"})
    s3.upload_file(str(train_table), settings.bucket, input_key)
    history: list[str] = []
    finished = False
    try:
        with _sigterm_unwinds():
            client.create_training_job(**request)
            description = _wait(
                client,
                job_name,
                settings.poll_seconds,
                history,
                progress,
                stop or threading.Event(),
            )
            finished = True
    finally:
        if not finished:  # interrupted, or the job's state could not be read: do not leave it
            _stop(client, job_name)
    status = description["TrainingJobStatus"]
    if status == "Failed":
        reason = description.get("FailureReason") or "no reason given"
        raise SageMakerTrainingFailed(f"SageMaker training job {job_name} failed: {reason}")
    if status == "Stopped":
        raise SageMakerTrainingFailed(f"SageMaker training job {job_name} was stopped")
    artifact = description.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if not artifact:
        raise SageMakerTrainingFailed(f"SageMaker training job {job_name} reported no model")
    output = f"s3://{settings.bucket}/{_base_key(settings, context)}/output/"
    if not str(artifact).startswith(output) or ".." in str(artifact):
        # The worker's credentials fetch it: only from where this job was told to write.
        raise SageMakerTrainingFailed(
            f"SageMaker training job {job_name} reported a model outside its output path"
        )
    progress({"stage": "sagemaker", "message": "downloading the model"})
    tarball = _download(s3, str(artifact), context.workdir / "sagemaker")
    model_path, model_format = extract_model(tarball, context.workdir / "sagemaker" / "model")
    return SageMakerResult(
        model_path=model_path, format=model_format, job_name=job_name, status_history=history
    )


def _wait(
    client: Any,
    job_name: str,
    poll_seconds: float,
    history: list[str],
    progress: Progress,
    stop: threading.Event,
) -> dict[str, Any]:
    """Poll until the job ends; report each change of (status, secondary status). Raises
    :class:`Terminated` when ``stop`` is set first."""
    while True:
        description: dict[str, Any] = client.describe_training_job(TrainingJobName=job_name)
        status = str(description["TrainingJobStatus"])
        secondary = str(description.get("SecondaryStatus", ""))
        entry = f"{status}:{secondary}"
        if not history or history[-1] != entry:
            history.append(entry)
            progress(
                {
                    "stage": "sagemaker",
                    "message": f"{status}/{secondary}",
                    "metrics": _final_metrics(description),
                }
            )
        if status in TERMINAL:
            return description
        if stop.wait(poll_seconds):
            raise Terminated("the attempt ended")


def run_for_worker(call: WorkerCall) -> WorkerCallResult:
    """The ``sagemaker_train`` worker call: the sandboxed ``train`` task sent its training
    table; the worker, which holds the AWS credentials, runs the job and returns the model."""
    from botocore.exceptions import BotoCoreError, ClientError

    from armillary.sdk.task_api import TaskApi
    from armillary.training.progress import Progress as Reporter

    try:
        params = TrainParams.model_validate(dict(call.params))
    except ValueError as exc:
        raise WorkerCallFailed(f"the train task's params are not valid: {exc}") from None
    if params.backend != "sagemaker":
        raise WorkerCallFailed("this train task does not use the sagemaker backend")
    with TaskApi(call.context) as api:
        try:
            result = train_on_sagemaker(
                params, call.upload, call.context, Reporter(api).report, stop=call.stop
            )
        except (SageMakerTrainingFailed, ValueError) as exc:
            raise WorkerCallFailed(str(exc)) from None
        except Terminated:
            raise WorkerCallFailed("stopped: the attempt ended") from None
        except (BotoCoreError, ClientError) as exc:  # no credentials, access denied, a bad image
            raise WorkerCallFailed(f"SageMaker: {exc}") from None
    info = {"format": result.format, "job_name": result.job_name, "history": result.status_history}
    return WorkerCallResult(file=result.model_path, info=info)


def _final_metrics(description: dict[str, Any]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for item in description.get("FinalMetricDataList") or []:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            metrics[str(item["MetricName"])] = float(item["Value"])
    return metrics


def _stop(client: Any, job_name: str) -> None:
    # Best effort: the attempt is going away either way, and a job left running costs money.
    with contextlib.suppress(Exception):
        client.stop_training_job(TrainingJobName=job_name)


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While the job runs, SIGTERM raises instead of ending the process on the spot, so the
    ``finally`` that stops the job runs. Signals can only be handled on the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _download(s3: Any, uri: str, directory: Path) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise SageMakerTrainingFailed("the training job reported a model location that is not S3")
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    size = int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    if size > MAX_TARBALL_BYTES:
        raise UnsafeModelArtifact(
            f"the model tarball is {size} bytes, more than the limit of {MAX_TARBALL_BYTES}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.tar.gz"
    s3.download_file(bucket, key, str(path))
    return path


# -- the tarball -----------------------------------------------------------------------------


def extract_model(tarball: Path, destination: Path) -> tuple[Path, ModelFormat]:
    """Extract the one model file of a training job's ``model.tar.gz`` into ``destination``.

    Refused (:class:`UnsafeModelArtifact`): anything that is not a gzip tarball; more than
    :data:`MAX_MEMBERS` members; links, devices and other special members; absolute names,
    ``..`` and files below a subdirectory; a member larger than :data:`MAX_MODEL_BYTES`; any
    pickle (``*.pkl``, ``*.pickle``, ``*.joblib``); no model or both; a ``model.skops`` that
    is not a skops (zip) file. Other plain files (logs, metrics) are left unextracted.
    """
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            member = _model_member(archive)
            destination.mkdir(parents=True, exist_ok=True)
            # tarfile's own "data" filter as a second line: it refuses what the checks above
            # refuse, and strips modes and owners.
            archive.extract(member, destination, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnsafeModelArtifact(f"the model tarball cannot be read: {exc}") from None
    name = PurePosixPath(member.name).name
    path = destination / name
    model_format = MODEL_FILES[name]
    if model_format == "skops" and not zipfile.is_zipfile(path):
        path.unlink()
        raise UnsafeModelArtifact("model.skops is not a skops file")
    return path, model_format


def _model_member(archive: tarfile.TarFile) -> tarfile.TarInfo:
    models: list[tarfile.TarInfo] = []
    count = 0
    while (member := archive.next()) is not None:
        count += 1
        if count > MAX_MEMBERS:
            raise UnsafeModelArtifact(f"the model tarball has more than {MAX_MEMBERS} members")
        parts = _member_parts(member.name)
        if member.isdir() and not parts:
            continue  # "./", as `tar -C /opt/ml/model .` writes it
        if not (member.isfile() or member.isdir()):
            raise UnsafeModelArtifact(f"the model tarball holds a link or device: {member.name}")
        if member.size > MAX_MODEL_BYTES:
            raise UnsafeModelArtifact(f"{member.name} is larger than {MAX_MODEL_BYTES} bytes")
        if len(parts) != 1:
            raise UnsafeModelArtifact(f"the model tarball holds a nested path: {member.name}")
        name = parts[0]
        if name.lower().endswith(PICKLE_SUFFIXES):
            raise UnsafeModelArtifact(
                f"the model tarball holds a pickle ({name}); write model.skops or model.onnx"
            )
        if member.isfile() and name in MODEL_FILES:
            models.append(member)
    if len(models) != 1:
        found = ", ".join(m.name for m in models) or "none"
        raise UnsafeModelArtifact(
            f"the model tarball must hold exactly one of model.skops and model.onnx; it holds "
            f"{found}"
        )
    return models[0]


def _member_parts(name: str) -> tuple[str, ...]:
    """The member's path without ``.`` segments; absolute names and ``..`` are refused."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        raise UnsafeModelArtifact(f"the model tarball holds an unsafe path: {name}")
    return tuple(part for part in path.parts if part != ".")
