"""Open Inference Protocol (KServe v2) over the same deployments, JSON tensors only.

The model name is ``{project}.{deployment}`` (project slugs have no dot). Authentication is the
predict route's: ``X-API-Key`` or a bearer token.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from armillary.contracts.training import Signature
from armillary.kit.errors import BadRequest, NotFound
from armillary.serving.access.predict_access import require_credentials
from armillary.serving.deployments.resolve import ResolvedDeployment
from armillary.serving.runtime import decode_v2, encode_v2

from .body import UnsupportedMediaType, check_headers, read_json
from .ports import Deployment, deployment_label, primary_variant
from .service import decoder
from .wiring import admit, choose_variant, current_predict, find_deployment, routing_key

router = APIRouter(prefix="/v2", tags=["inference-v2"])
# Health is public (as KServe's is); everything about a model needs a credential first.
_CREDENTIALS = [Depends(require_credentials)]

PLATFORM = "armillary"
_BINARY = (
    "The binary tensor data extension is not supported: send JSON tensors (tritonclient: "
    "binary_data=False on every InferInput and InferRequestedOutput)"
)


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


def _split(name: str) -> tuple[str, str]:
    project, dot, deployment = name.partition(".")
    if not dot or not project or not deployment:
        raise NotFound("Model names are {project}.{deployment}")
    return project, deployment


async def _deployment(request: Request, name: str) -> ResolvedDeployment:
    project, deployment = _split(name)
    found = await find_deployment(request, project, deployment)
    await admit(request, found)
    return found


def _tensor(feature: dict[str, Any]) -> dict[str, Any]:
    dtype = str(feature.get("dtype", "")).lower()
    numeric = any(t in dtype for t in ("int", "float", "double", "decimal"))
    boolean = dtype.startswith("bool")
    datatype = "FP64" if numeric else "BOOL" if boolean else "BYTES"
    return {"name": feature["name"], "datatype": datatype, "shape": [-1]}


def metadata(deployment: Deployment, signature: Signature) -> dict[str, Any]:
    features = [f.model_dump() for f in signature.inputs]
    inputs = [_tensor(f) for f in features]
    if all(t["datatype"] == "FP64" for t in inputs):
        # Or one [n, k] matrix of every feature in this order.
        inputs.append(
            {
                "name": "input",
                "datatype": "FP64",
                "shape": [-1, len(features)],
                "parameters": {"features": [f["name"] for f in features]},
            }
        )
    outputs: list[dict[str, Any]] = [
        {"name": "predictions", "datatype": _output_type(signature), "shape": [-1]}
    ]
    if signature.problem == "classification":
        classes = len(signature.classes) if signature.classes else -1
        outputs.append({"name": "probabilities", "datatype": "FP64", "shape": [-1, classes]})
    return {
        "name": deployment_label(deployment),
        "versions": sorted({str(v.model_version) for v in deployment.variants if not v.shadow}),
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {"config_version": deployment.config_version},
    }


def _output_type(signature: Signature) -> str:
    if signature.problem == "regression":
        return "FP64"
    classes = signature.classes or []
    if classes and all(isinstance(c, str) for c in classes):
        return "BYTES"
    if classes and all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    return "FP64"


@router.get("/health/live", name="v2.live")
async def live() -> Response:
    return _json({"live": True})


@router.get("/health/ready", name="v2.ready")
async def ready(request: Request) -> Response:
    current_predict(request)
    return _json({"ready": True})


@router.get("/models/{name}", name="v2.model", responses={404: {}}, dependencies=_CREDENTIALS)
async def model_metadata(name: str, request: Request) -> Response:
    """The deployment's inputs (from its primary variant's signature) and outputs."""
    found = await _deployment(request, name)
    model = await current_predict(request).predictor.model(primary_variant(found))
    return _json(metadata(found, model.signature))


@router.get(
    "/models/{name}/ready",
    name="v2.model_ready",
    responses={404: {}, 503: {}},
    dependencies=_CREDENTIALS,
)
async def model_ready(name: str, request: Request) -> Response:
    """Ready once every variant's model is loaded (loads them if they are not)."""
    found = await _deployment(request, name)
    predictor = current_predict(request).predictor
    for variant in found.variants:
        await predictor.model(variant)
    return _json({"name": name, "ready": True})


def _refuse_binary(request: Request, body: Any) -> None:
    if request.headers.get("inference-header-content-length") is not None:
        raise UnsupportedMediaType(_BINARY)
    if not isinstance(body, dict):
        return
    wants_binary = (body.get("parameters") or {}).get("binary_data_output") is True
    for part in [*(body.get("inputs") or []), *(body.get("outputs") or [])]:
        if isinstance(part, dict) and (part.get("parameters") or {}).get("binary_data"):
            wants_binary = True
    if wants_binary:
        raise BadRequest(_BINARY)


@router.post(
    "/models/{name}/infer",
    name="v2.infer",
    responses={400: {}, 404: {}, 413: {}, 415: {}, 422: {}, 500: {}},
    dependencies=_CREDENTIALS,
)
async def infer(name: str, request: Request) -> Response:
    """An inference request of JSON tensors: one ``input`` tensor ``[n, k]`` or one tensor per
    feature; the answer has ``predictions`` (and ``probabilities``)."""
    component = current_predict(request)
    # Standard clients may send no content type: a missing one is read as JSON.
    check_headers(request, component.max_body_bytes, missing_type_ok=True)
    if request.headers.get("inference-header-content-length") is not None:
        raise UnsupportedMediaType(_BINARY)
    found = await _deployment(request, name)
    body = await read_json(request, component.max_body_bytes)
    _refuse_binary(request, body)
    rows_for = decoder(body, decode_v2)
    rows_for((await component.predictor.model(primary_variant(found))).signature)
    key = routing_key(request, body)
    variant, shadow = choose_variant(component, found, key)
    answer = await component.predictor.predict(
        found, variant, rows_for, key=key, request_body=body, shadow=shadow
    )
    request_id = body.get("id") if isinstance(body.get("id"), str) else None
    response = encode_v2(answer.prediction, name, str(variant.model_version), request_id)
    response["parameters"] = {
        "variant": variant.name,
        "model": variant.model,
        "prediction_id": str(answer.prediction_id),
    }
    return _json(response)
