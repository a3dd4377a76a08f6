"""A model version as clients see it (object keys stay inside the service)."""

from __future__ import annotations

from armillary.contracts.training import OnnxState

from ..catalog.models import RegisteredModel
from .models import ModelVersion
from .schemas import ArtifactOut, VersionOut


def version_out(model: RegisteredModel, version: ModelVersion) -> VersionOut:
    return VersionOut(
        id=version.id,
        model=model.name,
        version=version.number,
        metrics=version.metrics,
        params=version.params,
        signature=version.signature,
        estimator=version.estimator,
        problem=version.problem,
        format=version.format,
        artifacts={
            name: ArtifactOut(size_bytes=info["size_bytes"], sha256=info["sha256"])
            for name, info in sorted(version.artifacts.items())
        },
        onnx=onnx_state(version),
        environment=version.environment,
        lineage=version.lineage,
        source=version.source,
        description=version.description,
        tags=version.tags,
        created_at=version.created_at,
        created_by=version.created_by,
    )


def onnx_state(version: ModelVersion) -> OnnxState | None:
    if version.onnx_status is None:
        return None
    job_id = str(version.onnx_job_id) if version.onnx_job_id is not None else None
    return OnnxState.model_validate(
        {"status": version.onnx_status, "reason": version.onnx_reason, "job_id": job_id}
    )
