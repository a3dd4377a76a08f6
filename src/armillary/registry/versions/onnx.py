"""A version's ONNX export, finished after its training job (ADR 0018): the export job the
registry asked for attaches ``model.onnx`` (copied from its own task's artifacts and checked
like any model file) or says why there is none; an export job that ends without saying so
leaves the version ``failed``. Either way the prediction service hears of it."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.registry import MODEL_FILE_ONNX, ModelVersionOnnxChanged
from armillary.kit import audit
from armillary.kit.authz import ProjectAccess
from armillary.kit.db import on_rollback, utcnow
from armillary.kit.errors import Conflict, Forbidden, Unprocessable
from armillary.kit.events import publish
from armillary.kit.storage import ObjectClass, class_tags, model_artifact_key

from ..catalog.models import RegisteredModel
from ..components import SERVICE, Registry
from .models import ModelVersion
from .schemas import OnnxAttach
from .service import get_version, recorded_artifacts, stage_job_artifact


async def attach(
    session: AsyncSession,
    registry: Registry,
    access: ProjectAccess,
    ref: str,
    number: int,
    body: OnnxAttach,
) -> tuple[RegisteredModel, ModelVersion]:
    """Record what the version's export job found. Only that job may (403 for anyone else);
    a repeat of the recorded outcome returns the version, another outcome is 409."""
    job_id = access.principal.job_id
    model, version = await get_version(session, access, ref, number)
    if job_id is None or version.onnx_job_id != job_id:
        raise Forbidden("Only this version's ONNX export job records its export")
    if version.onnx_status != "pending":
        if version.onnx_status == body.status:
            return model, version
        raise Conflict(f"The ONNX export of this version is already {version.onnx_status}")
    if body.status == "failed":
        _finish(session, model, version, "failed", body.reason or "the export failed")
        return model, version
    if body.task is None:
        raise Unprocessable("Name the task whose model.onnx is attached")
    job = await registry.require_workflows().job(access.principal.token, str(job_id))
    if job is None:
        raise Unprocessable("The caller's job cannot be found")
    recorded = recorded_artifacts(job, body.task)
    with tempfile.TemporaryDirectory(
        prefix="armillary-onnx-", dir=registry.settings.spool_dir
    ) as d:
        staged = await stage_job_artifact(
            registry, access, body.task, MODEL_FILE_ONNX, recorded, Path(d)
        )
        key = model_artifact_key(access.project_id, model.id, version.id, MODEL_FILE_ONNX)

        async def remove() -> None:
            await registry.store.delete(key)

        on_rollback(session, remove)
        await registry.store.put_file(key, staged.path, tags=class_tags(ObjectClass.MODEL))
    # A new dict: the JSON column sees an assignment, not an in-place change.
    version.artifacts = {
        **version.artifacts,
        MODEL_FILE_ONNX: {"key": key, "size_bytes": staged.size, "sha256": staged.sha256},
    }
    _finish(session, model, version, "ready", None)
    return model, version


async def export_job_ended(session: AsyncSession, job_id: uuid.UUID, status: str) -> bool:
    """An export job that failed or was cancelled before attaching anything leaves its
    version ``failed``; returns whether one was pending."""
    found = (
        await session.execute(
            select(RegisteredModel, ModelVersion)
            .join(ModelVersion, ModelVersion.model_id == RegisteredModel.id)
            .where(ModelVersion.onnx_job_id == job_id, ModelVersion.onnx_status == "pending")
            .with_for_update()
        )
    ).first()
    if found is None:
        return False
    model, version = found
    reason = f"the export job {status} before it attached model.onnx (see job {job_id})"
    _finish(session, model, version, "failed", reason)
    return True


def _finish(
    session: AsyncSession,
    model: RegisteredModel,
    version: ModelVersion,
    status: str,
    reason: str | None,
) -> None:
    version.onnx_status = status
    version.onnx_reason = reason
    publish(
        session,
        ModelVersionOnnxChanged.TYPE,
        ModelVersionOnnxChanged(
            project_id=version.project_id,
            model_id=model.id,
            model=model.name,
            model_version_id=version.id,
            version=version.number,
            status="ready" if status == "ready" else "failed",
            occurred_at=utcnow(),
        ),
    )
    audit.record(
        session,
        action="models.version_onnx",
        resource_type="model_version",
        resource_id=version.id,
        details={
            "model": model.name,
            "version": version.number,
            "onnx": status,
            "reason": reason,
            "job_id": str(version.onnx_job_id),
        },
        service=SERVICE,
    )
