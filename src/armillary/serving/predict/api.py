"""Routes: predict, feedback and analysis of a deployment, and the Open Inference Protocol v2.

Order of checks on predict: content type and declared size (before any read), then the
deployment and the caller's right to predict on it, then the body within the limit, then the
rows against the signature. Nothing but JSON is ever parsed.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from armillary.kit.errors import NotFound, Unprocessable
from armillary.serving.access.predict_access import require_credentials

from . import feedback as feedback_service
from .body import check_headers, read_json
from .ports import primary_variant
from .schemas import FeedbackIn, FeedbackOut
from .service import decoder
from .v2 import router as v2_router
from .wiring import (
    admit,
    authorize,
    choose_variant,
    current_predict,
    find_deployment,
    routing_key,
)

router = APIRouter(
    prefix="/api/v1/projects/{project}/deployments",
    tags=["predictions"],
    dependencies=[Depends(require_credentials)],
)

_JSON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": 'Records {"instances": [{col: value}, ...]} or rows '
                    '{"instances": [[...], ...]}, or MLflow\'s {"dataframe_split": {"columns": '
                    '[...], "data": [[...]]}}; optional "key" for sticky routing (else the '
                    "X-Routing-Key header)",
                }
            }
        },
    }
}


def json_response(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


@router.post(
    "/{deployment}/predict",
    name="deployments.predict",
    responses={400: {}, 404: {}, 413: {}, 415: {}, 422: {}, 500: {}, 503: {}},
    openapi_extra=_JSON_BODY,
)
async def predict(project: str, deployment: str, request: Request) -> Response:
    """Predictions of the variant the routing picks, with class probabilities where the
    model has them, the variant and model version that answered, and a prediction id for
    feedback (``<id>`` or, for one of several rows, ``<id>:<row>``)."""
    component = current_predict(request)
    check_headers(request, component.max_body_bytes)
    found = await find_deployment(request, project, deployment)
    await admit(request, found)
    body = await read_json(request, component.max_body_bytes)
    rows_for = decoder(body)
    # The body is checked against the primary variant's signature whoever answers.
    rows_for((await component.predictor.model(primary_variant(found))).signature)
    key = routing_key(request, body)
    variant, shadow = choose_variant(component, found, key)
    answer = await component.predictor.predict(
        found, variant, rows_for, key=key, request_body=body, shadow=shadow
    )
    return json_response(answer.body())


@router.post(
    "/{deployment}/feedback",
    name="deployments.feedback",
    responses={404: {}, 422: {}},
)
async def feedback(
    project: str, deployment: str, body: FeedbackIn, request: Request
) -> FeedbackOut:
    """Ground truth for predictions: ``{"prediction_id", "actual"}`` or ``{"items": [...]}``.
    Repeating an item replaces its actual value. A single unknown id is 404; in ``items``
    each item's outcome is listed."""
    component = current_predict(request)
    found = await find_deployment(request, project, deployment)
    await admit(request, found)
    # A prediction answered a moment ago may still be in the writer's buffer.
    await component.predictor.log.flush()
    problem = await component.problem(found)
    async with component.serving.runtime.db.unit_of_work() as session:
        result = await feedback_service.record(session, found, body.all_items(), problem=problem)
    if body.items is None and result.rejected:
        first = result.results[0]
        error = NotFound if first.status == "not_found" else Unprocessable
        raise error(first.detail or "Feedback refused")
    await component.after_feedback(found)
    return result


@router.get("/{deployment}/analysis", name="deployments.analysis", responses={404: {}})
async def analysis(project: str, deployment: str, request: Request) -> Response:
    """Per variant: requests, error rate, latency percentiles and accuracy or RMSE with
    confidence intervals; each variant against the baseline (the non-shadow variant with the
    largest weight) with significance tests and a recommendation; what the auto-rollback
    policy decides, and what it did."""
    component = current_predict(request)
    found = await find_deployment(request, project, deployment)
    await authorize(request, found)
    await component.predictor.log.flush()
    report = await component.report(found)
    return json_response(report)


ROUTERS: list[APIRouter] = [router, v2_router]
