"""The ``register`` task type: the upstream ``train`` task's model becomes the next version of
a registered model, with its metrics (and an ``evaluate`` task's, as ``eval_<name>``),
parameters, signature and artifacts; the registry records lineage from the job itself.
``attach_onnx`` ends a version's export job: the ``model.onnx`` its upstream ``onnx_export``
task made, or why there is none (ADR 0018).

Runs in a worker's task child and talks to the platform only through
:class:`~armillary.sdk.task_api.TaskApi` (DESIGN §2)."""

from __future__ import annotations

from typing import Any

import httpx

from armillary.contracts.registry import (
    AttachOnnxOutputs,
    AttachOnnxParams,
    RegisterOutputs,
    RegisterParams,
)
from armillary.contracts.tasks import TaskContext
from armillary.contracts.training import EvaluateOutputs, OnnxExportOutputs, TrainOutputs
from armillary.sdk.task_api import TaskApi

# Replaced by tests: the transport to the API.
_api_transport: httpx.BaseTransport | None = None

#: TrainOutputs.artifacts field -> the artifact's name in the registry.
ARTIFACT_FIELDS = {
    "skops": "model.skops",
    "onnx": "model.onnx",
    "signature": "signature.json",
    "environment": "environment.json",
    "importances": "importances.json",
    "trials": "trials.json",
}


class RegisterError(Exception):
    """The upstream outputs cannot be registered."""


def _upstream(inputs: dict[str, dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    found = inputs.get(name)
    if not isinstance(found, dict):
        raise RegisterError(f"`{name}` must be a direct upstream task (in `needs`) {what}")
    return found


def version_request(params: RegisterParams, inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The registry's version request built from the upstream outputs."""
    train = TrainOutputs.model_validate(_upstream(inputs, params.model, "of type train"))
    artifacts = []
    for field, name in ARTIFACT_FIELDS.items():
        ref = getattr(train.artifacts, field)
        if ref is None:
            continue
        if ref.name != name or ref.task != params.model:
            raise RegisterError(
                f"artifact {field} of task {params.model!r} is {ref.task}/{ref.name}, "
                f"expected {params.model}/{name}"
            )
        artifacts.append(name)
    metrics = dict(train.metrics)
    if params.evaluation is not None:
        evaluation = EvaluateOutputs.model_validate(
            _upstream(inputs, params.evaluation, "of type evaluate")
        )
        metrics.update({f"eval_{k}": v for k, v in evaluation.metrics.items()})
    return {
        "source": {"task": params.model, "artifacts": artifacts},
        "metrics": metrics,
        "params": train.hyperparameters,
        "signature": train.signature.model_dump(mode="json"),
        "estimator": train.estimator,
        "problem": train.problem,
        "format": train.format,
        "description": params.description,
        "tags": dict(params.tags),
        "evaluation_task": params.evaluation,
        "onnx": train.onnx.model_dump(mode="json") if train.onnx is not None else None,
        "drift_reference": (
            train.drift_reference.model_dump(mode="json")
            if train.drift_reference is not None
            else None
        ),
    }


def run_register(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    spec = RegisterParams.model_validate(params)
    body = version_request(spec, inputs)
    with TaskApi(context, transport=_api_transport) as api:
        version = api.register_model_version(spec.name, body)
        number = int(version["version"])
        if spec.alias is not None:
            api.set_alias(
                spec.name,
                spec.alias,
                number,
                f"registered by job {context.job_id}, task {context.task}",
            )
    return RegisterOutputs(
        model=spec.name,
        version=number,
        model_version_id=str(version["id"]),
        alias=spec.alias,
    ).model_dump(mode="json")


def run_attach_onnx(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    spec = AttachOnnxParams.model_validate(params)
    export = OnnxExportOutputs.model_validate(_upstream(inputs, spec.export, "of type onnx_export"))
    if export.onnx is not None:
        body: dict[str, Any] = {"status": "ready", "task": export.onnx.task}
    else:
        body = {"status": "failed", "reason": export.reason or "not exported"}
    with TaskApi(context, transport=_api_transport) as api:
        version = api.attach_onnx(spec.model, spec.version, body)
    onnx = (version.get("onnx") or {}).get("status")
    return AttachOnnxOutputs(
        model=spec.model, version=spec.version, onnx="ready" if onnx == "ready" else "failed"
    ).model_dump(mode="json")
