"""Model versions: registered from a job's artifacts or uploaded by a user, then read, compared
and downloaded. Every model file is checked before it is stored (``model_files``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.drift import DriftReference
from armillary.contracts.registry import (
    MODEL_FILE_ONNX,
    DatasetVersionUsed,
    ModelVersionRegistered,
    OnnxExportRequested,
)
from armillary.kit import audit, run_job_link
from armillary.kit.authz import ProjectAccess
from armillary.kit.db import new_id, next_number, on_rollback, utcnow
from armillary.kit.errors import Conflict, Forbidden, NotFound, Unprocessable
from armillary.kit.events import publish
from armillary.kit.storage import (
    InvalidObjectKey,
    ObjectClass,
    ObjectNotFound,
    class_tags,
    model_artifact_key,
    project_prefix,
    validate_key,
)
from armillary.kit.storage.keys import run_artifact_key

from ..access import refuse_job
from ..catalog.models import RegisteredModel
from ..catalog.schemas import Tags
from ..catalog.service import get_model
from ..components import SERVICE, Registry
from . import job_registrations, model_files
from . import lineage as lineage_of
from . import repository as repo
from .models import ModelVersion, VersionDataset
from .schemas import Metrics, VersionCreate, VersionFromRun, VersionUpdate
from .upload import SpooledModel

_CHUNK = 1024 * 1024
_JSON_ARTIFACTS = {"signature.json", "environment.json"}


class JobRegistrationRace(Conflict):
    title = "Registration in progress"


@dataclass(frozen=True, slots=True)
class Staged:
    name: str
    path: Path
    size: int
    sha256: str


class UploadMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(default="", max_length=10_000)
    tags: Tags = Field(default_factory=dict)
    metrics: Metrics = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    signature: dict[str, Any] = Field(default_factory=dict)
    drift_reference: DriftReference | None = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def create_from_job(
    session: AsyncSession, registry: Registry, access: ProjectAccess, ref: str, body: VersionCreate
) -> tuple[RegisteredModel, ModelVersion]:
    """The next version of model ``ref`` from the artifacts of the caller's own job (the job
    and project come from its token, never from the body)."""
    principal = access.principal
    if principal.job_id is None:
        raise Forbidden(
            "Only a running job registers a version from its artifacts; users upload a model "
            "file to .../versions/upload"
        )
    await get_model(session, access, ref)
    names = list(body.source.artifacts)
    if model_files.FILE_NAMES[body.format] not in names:
        raise Unprocessable(
            f"format is {body.format!r} but {model_files.FILE_NAMES[body.format]} "
            "is not among the artifacts"
        )
    job = await registry.require_workflows().job(principal.token, str(principal.job_id))
    if job is None:
        raise Unprocessable("The caller's job cannot be found")
    plan = lineage_of.plan(job, body.source.task, body.evaluation_task)
    datasets = await lineage_of.resolve(
        registry.require_datasets(), principal.token, str(access.project_id), plan.datasets
    )
    recorded = recorded_artifacts(job, body.source.task)
    with tempfile.TemporaryDirectory(prefix="armillary-reg-", dir=registry.settings.spool_dir) as d:
        staged = [
            await stage_job_artifact(registry, access, body.source.task, n, recorded, Path(d))
            for n in names
        ]
        environment = body.environment or await _json_artifact(registry, staged, "environment.json")
        signature = body.signature or await _json_artifact(registry, staged, "signature.json")
        key = job_registrations.registration_key(principal.job_id, body.source.task, staged)
        model = await get_model(session, access, ref)
        before = await job_registrations.registered_before(session, model.id, key)
        if before is not None:
            return model, before
        lineage = {
            "job_id": str(principal.job_id),
            "task": body.source.task,
            "workflow": plan.workflow,
            "evaluation_task": body.evaluation_task,
            "datasets": [used.as_json() for used in datasets],
        }
        candidate = ModelVersion(
            metrics=dict(body.metrics),
            params=body.params,
            signature=signature,
            estimator=body.estimator,
            problem=body.problem,
            format=body.format,
            environment={str(k): str(v) for k, v in environment.items()},
            description=body.description,
            tags=dict(body.tags),
            lineage=lineage,
            source="job",
            job_registration_key=key,
            drift_reference=_reference(body.drift_reference),
            **_onnx_at_registration(body, names),
        )
        try:
            model, version = await _add_version(session, registry, access, ref, staged, candidate)
        except IntegrityError:
            # The unique key's last word, should a twin ever commit past the model's lock.
            raise JobRegistrationRace(
                "This job is registering these artifacts in another request; retry"
            ) from None
    if version is not candidate:  # a twin request of the job registered it first
        return model, version
    _record_datasets(session, access, version, datasets)
    _registered(session, access, model, version, datasets)
    if version.onnx_status == "pending":
        _request_export(session, access, model, version, body.source.task)
    return model, version


def _record_datasets(
    session: AsyncSession,
    access: ProjectAccess,
    version: ModelVersion,
    datasets: list[lineage_of.ResolvedDataset],
) -> None:
    """The dataset versions the version was trained (or evaluated) on: what the reverse
    lineage query and the deletion hold read."""
    for used in datasets:
        session.add(
            VersionDataset(
                model_version_id=version.id,
                project_id=access.project_id,
                dataset_id=used.dataset_id,
                dataset_name=used.name,
                dataset_version=used.version,
                dataset_version_id=used.version_id,
                sha256=used.sha256,
                role=used.role,
            )
        )


def _onnx_at_registration(body: VersionCreate, names: Sequence[str]) -> dict[str, Any]:
    """The version's ONNX state: ready when the job already made ``model.onnx``; pending (with
    the id of the export job to come) when the train task deferred it (ADR 0018)."""
    if MODEL_FILE_ONNX in names:
        return {"onnx_status": "ready"}
    if body.onnx is None:
        return {}
    if body.onnx.status == "pending":
        return {"onnx_status": "pending", "onnx_job_id": new_id()}
    return {"onnx_status": "failed", "onnx_reason": body.onnx.reason or "not exported"}


def _request_export(
    session: AsyncSession,
    access: ProjectAccess,
    model: RegisteredModel,
    version: ModelVersion,
    task: str,
) -> None:
    assert version.onnx_job_id is not None  # noqa: S101 - set with the pending state
    assert access.principal.job_id is not None  # noqa: S101 - only jobs register from jobs
    event = OnnxExportRequested(
        project_id=access.project_id,
        model_id=model.id,
        model=model.name,
        model_version_id=version.id,
        version=version.number,
        export_job_id=version.onnx_job_id,
        source_job_id=access.principal.job_id,
        source_task=task,
        requested_by=access.principal.user_id,
        occurred_at=utcnow(),
    )
    publish(session, OnnxExportRequested.TYPE, event)


def recorded_artifacts(job: dict[str, Any], task: str) -> dict[str, str]:
    """The artifact keys the workflows service recorded for ``task`` of the job: those of the
    attempt that succeeded (another attempt's files may sit beside them)."""
    for run in job.get("tasks") or []:
        if isinstance(run, dict) and run.get("name") == task:
            artifacts = run.get("artifacts") or {}
            return artifacts if isinstance(artifacts, dict) else {}
    return {}


async def stage_job_artifact(
    registry: Registry,
    access: ProjectAccess,
    task: str,
    name: str,
    recorded: dict[str, str],
    directory: Path,
) -> Staged:
    missing = Unprocessable(f"Task {task!r} of this job has no artifact {name!r}")
    key = recorded.get(name)
    # Only a job file of the caller's own project (a cached task's may be another job's).
    if not isinstance(key, str) or not key.startswith(f"{project_prefix(access.project_id)}/jobs/"):
        raise missing
    try:
        validate_key(key)
    except InvalidObjectKey:
        raise missing from None
    try:
        info = await registry.store.head(key)
        if info.size > registry.settings.max_artifact_bytes:
            raise Unprocessable(f"Artifact {name!r} is larger than the registry accepts")
        path = directory / name
        await registry.store.get_to_file(key, path)
    except ObjectNotFound:
        raise missing from None
    if name in model_files.FILE_NAMES.values():
        await asyncio.to_thread(model_files.check_named, name, path)
    return Staged(name, path, info.size, await asyncio.to_thread(_sha256, path))


def _reference(reference: DriftReference | None) -> dict[str, Any] | None:
    return None if reference is None else reference.model_dump(mode="json")


async def _json_artifact(registry: Registry, staged: list[Staged], name: str) -> dict[str, Any]:
    """A small JSON artifact's object (signature, environment), or {} when absent."""
    found = next((s for s in staged if s.name == name), None)
    if found is None:
        return {}
    if found.size > registry.settings.max_json_artifact_bytes:
        raise Unprocessable(f"{name} is too large")
    try:
        value = json.loads(await asyncio.to_thread(found.path.read_bytes))
    except (ValueError, RecursionError) as exc:
        raise Unprocessable(f"{name} is not JSON") from exc
    if not isinstance(value, dict):
        raise Unprocessable(f"{name} must hold a JSON object")
    return value


async def _add_version(
    session: AsyncSession,
    registry: Registry,
    access: ProjectAccess,
    ref: str,
    staged: list[Staged],
    version: ModelVersion,
) -> tuple[RegisteredModel, ModelVersion]:
    """Store the staged files under the new version's own id, then allocate its number under
    the model's row lock. Keys no other request can own mean a rolled-back transaction deletes
    only its own files, and the (possibly slow) uploads happen before the lock is taken.

    A job's registration (``version.job_registration_key``) that a twin request committed
    while this one stored its files is returned instead of ``version``: this request's files
    are removed, and nothing is added."""
    model = await get_model(session, access, ref)
    version.id = new_id()
    artifacts: dict[str, dict[str, Any]] = {}
    for item in staged:
        key = model_artifact_key(access.project_id, model.id, version.id, item.name)

        async def remove(key: str = key) -> None:
            await registry.store.delete(key)

        on_rollback(session, remove)
        await registry.store.put_file(key, item.path, tags=class_tags(ObjectClass.MODEL))
        artifacts[item.name] = {"key": key, "size_bytes": item.size, "sha256": item.sha256}
    # Locked again: the model may have been deleted meanwhile, and aliases wait for us.
    model = await get_model(session, access, ref, for_update=True)
    if version.job_registration_key is not None:
        # Under the lock, twins of one job's registration (register tasks after one training)
        # see the one that committed first, instead of failing on its unique key.
        twin = await job_registrations.registered_before(
            session, model.id, version.job_registration_key
        )
        if twin is not None:
            for stored in artifacts.values():
                await registry.store.delete(stored["key"])
            return model, twin
    number = await next_number(session, model, RegisteredModel.version_counter)
    version.model_id = model.id
    version.project_id = access.project_id
    version.number = number
    version.artifacts = artifacts
    version.created_by = access.principal.user_id
    session.add(version)
    await session.flush()
    return model, version


def _registered(
    session: AsyncSession,
    access: ProjectAccess,
    model: RegisteredModel,
    version: ModelVersion,
    datasets: list[lineage_of.ResolvedDataset],
) -> None:
    event = ModelVersionRegistered(
        project_id=access.project_id,
        model_id=model.id,
        model=model.name,
        model_version_id=version.id,
        version=version.number,
        datasets=[
            DatasetVersionUsed(
                dataset_id=d.dataset_id, dataset=d.name, version=d.version, sha256=d.sha256
            )
            for d in datasets
        ],
        occurred_at=utcnow(),
    )
    publish(session, ModelVersionRegistered.TYPE, event)
    audit.record(
        session,
        action="models.version_create",
        resource_type="model_version",
        resource_id=version.id,
        details={
            "model": model.name,
            "version": version.number,
            "source": version.source,
            "job_id": str(access.principal.job_id) if access.principal.job_id else None,
            "artifacts": {n: a["sha256"] for n, a in version.artifacts.items()},
        },
        service=SERVICE,
    )


def _metadata(fields: dict[str, str]) -> UploadMetadata:
    values: dict[str, Any] = {}
    for name, raw in fields.items():
        if name in {"tags", "metrics", "params", "signature", "drift_reference"}:
            try:
                values[name] = json.loads(raw) if raw.strip() else {}
            except (ValueError, RecursionError) as exc:
                raise Unprocessable(f"'{name}' must be a JSON object") from exc
        else:
            values[name] = raw
    try:
        return UploadMetadata.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise Unprocessable(f"Invalid upload fields: {problems}") from None


async def create_from_upload(
    session: AsyncSession, registry: Registry, access: ProjectAccess, ref: str, upload: SpooledModel
) -> tuple[RegisteredModel, ModelVersion]:
    """The next version from a user's model file: ONNX or skops by content, checked first."""
    try:
        refuse_job(access, "upload model files; register the job's artifacts instead")
        metadata = _metadata(upload.fields)
        fmt = await asyncio.to_thread(model_files.detect_and_check, upload.path)
        name = model_files.FILE_NAMES[fmt]
        staged = [Staged(name, upload.path, upload.size, upload.sha256)]
        model, version = await _add_version(
            session,
            registry,
            access,
            ref,
            staged,
            ModelVersion(
                metrics=dict(metadata.metrics),
                params=metadata.params,
                signature=metadata.signature,
                estimator=None,
                problem=None,
                format=fmt,
                environment={},
                description=metadata.description,
                tags=dict(metadata.tags),
                lineage={"source": "upload", "filename": upload.filename},
                source="upload",
                drift_reference=_reference(metadata.drift_reference),
                onnx_status="ready" if fmt == "onnx" else None,
            ),
        )
        _registered(session, access, model, version, [])
        return model, version
    finally:
        upload.discard()


async def create_from_run(
    session: AsyncSession,
    registry: Registry,
    access: ProjectAccess,
    ref: str,
    body: VersionFromRun,
) -> tuple[RegisteredModel, ModelVersion]:
    """The next version from the model file an MLflow run of the caller's project logged. The
    key is made here from the caller's project and the run's id, so no other project's file
    can be named; the file is checked as ``body.format`` says before it is stored, and never
    loaded."""
    await get_model(session, access, ref)
    source = body.source
    job_lineage, datasets = await _run_job_lineage(registry, access, body)
    missing = Unprocessable(f"Run {source.run_id.hex} has no artifact {source.path!r}")
    try:
        key = run_artifact_key(access.project_id, source.run_id, source.path)
    except InvalidObjectKey:
        raise missing from None
    name = model_files.FILE_NAMES[body.format]
    with tempfile.TemporaryDirectory(prefix="armillary-reg-", dir=registry.settings.spool_dir) as d:
        path = Path(d) / name
        try:
            info = await registry.store.head(key)
            if info.size > registry.settings.max_artifact_bytes:
                raise Unprocessable(f"Artifact {source.path!r} is larger than the registry accepts")
            await registry.store.get_to_file(key, path)
        except ObjectNotFound:
            raise missing from None
        await asyncio.to_thread(model_files.check_named, name, path)
        staged = [Staged(name, path, info.size, await asyncio.to_thread(_sha256, path))]
        model, version = await _add_version(
            session,
            registry,
            access,
            ref,
            staged,
            ModelVersion(
                metrics=dict(body.metrics),
                params=body.params,
                signature=body.signature,
                estimator=None,
                problem=body.problem,
                format=body.format,
                environment={},
                description=body.description,
                tags=dict(body.tags),
                lineage={
                    "source": "mlflow",
                    "run_id": source.run_id.hex,
                    "run_name": source.run_name,
                    "experiment_id": source.experiment_id.hex,
                    "artifact": source.path,
                    "mlflow_source": source.uri,
                    "job_id": str(access.principal.job_id) if access.principal.job_id else None,
                    **job_lineage,
                },
                source="mlflow",
                onnx_status="ready" if body.format == "onnx" else None,
            ),
        )
    _record_datasets(session, access, version, datasets)
    _registered(session, access, model, version, datasets)
    return model, version


async def _run_job_lineage(
    registry: Registry, access: ProjectAccess, body: VersionFromRun
) -> tuple[dict[str, Any], list[lineage_of.ResolvedDataset]]:
    """The lineage of the job that started the run, as for a version a ``register`` task
    makes: the job, its workflow version, and the dataset versions ingested upstream of the
    run's task. The job is read with the caller's token and must be of this project and have
    the task; its datasets come from the job itself, never from the request."""
    link = body.source.job
    if link is None:
        return {}, []
    settings = registry.runtime.settings
    secrets = [settings.resolved_secret_key()]
    secrets += [key.get_secret_value() for key in settings.previous_secret_keys]
    sealed = run_job_link.verified(
        secrets, access.project_id, body.source.run_id, link.job_id, link.task, link.seal
    )
    if not sealed:
        raise Unprocessable("The run's job link was not made by the tracking service")
    token = access.principal.token
    job = await registry.require_workflows().job(token, str(link.job_id))
    if job is None or str(job.get("project_id")) != str(access.project_id):
        raise Unprocessable("The job that started the run cannot be found")
    plan = lineage_of.plan(job, link.task, None)
    datasets = await lineage_of.resolve(
        registry.require_datasets(), token, str(access.project_id), plan.datasets
    )
    lineage = {
        "job_id": str(link.job_id),
        "task": link.task,
        "workflow": plan.workflow,
        "datasets": [used.as_json() for used in datasets],
    }
    return lineage, datasets


async def get_version(
    session: AsyncSession, access: ProjectAccess, ref: str, number: int
) -> tuple[RegisteredModel, ModelVersion]:
    model = await get_model(session, access, ref)
    version = await repo.version(session, model.id, number)
    if version is None:
        raise NotFound("Model version not found")
    return model, version


async def update_version(
    session: AsyncSession, access: ProjectAccess, ref: str, number: int, data: VersionUpdate
) -> tuple[RegisteredModel, ModelVersion]:
    refuse_job(access, "change a model version")
    model, version = await get_version(session, access, ref, number)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if "description" in changes:
        version.description = changes["description"]
    if "tags" in changes:
        version.tags = dict(changes["tags"])
    await session.flush()
    audit.record(
        session,
        action="models.version_update",
        resource_type="model_version",
        resource_id=version.id,
        details={"model": model.name, "version": number, "fields": sorted(changes)},
        service=SERVICE,
    )
    return model, version


def record_download(
    session: AsyncSession, model: RegisteredModel, version: ModelVersion, name: str
) -> None:
    audit.record(
        session,
        action="models.artifact_download",
        resource_type="model_version",
        resource_id=version.id,
        details={"model": model.name, "version": version.number, "artifact": name},
        service=SERVICE,
    )
