from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from armillary.contracts.data import QualityReportIn
from armillary.kit.authz import ProjectAccess, dataset_permission
from armillary.kit.deps import ReadSession, Session
from armillary.kit.errors import Unprocessable
from armillary.kit.pagination import Page, Paging, VersionNumber

from ..datasets.upload import PayloadTooLarge, UnsupportedMediaType
from . import service
from .schemas import QualityReportOut
from .service import MAX_REPORT_BYTES, MAX_TASK_LENGTH

router = APIRouter(
    prefix="/api/v1/projects/{project}/datasets/{dataset}/versions/{number}/quality",
    tags=["datasets"],
)

Reader = Annotated[ProjectAccess, Depends(dataset_permission("dataset:read"))]
# A validate task reports on the dataset its job reads: the name needs only a read.
Writer = Annotated[ProjectAccess, Depends(dataset_permission("dataset:write", as_reader=True))]
Number = VersionNumber
TaskHeader = Annotated[
    str | None,
    Header(
        alias="X-Armillary-Task",
        min_length=1,
        max_length=MAX_TASK_LENGTH,
        description="The job's task that produced the report",
    ),
]

_REPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": QualityReportIn.model_json_schema()}},
    }
}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def _read_report(request: Request) -> QualityReportIn:
    media = (request.headers.get("content-type") or "application/json").split(";")[0]
    media = media.strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType("Send the report as application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_REPORT_BYTES:
        raise PayloadTooLarge(f"A quality report is at most {MAX_REPORT_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_REPORT_BYTES:
            raise PayloadTooLarge(f"A quality report is at most {MAX_REPORT_BYTES} bytes")
    try:
        document = json.loads(bytes(body), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise Unprocessable("The quality report is not valid JSON") from exc
    try:
        return QualityReportIn.model_validate(document)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_input=False)) from exc


@router.put(
    "",
    name="datasets.quality_report",
    status_code=status.HTTP_201_CREATED,
    responses={413: {}, 415: {}, 422: {}},
    openapi_extra=_REPORT_BODY,
)
async def put_quality_report(
    dataset: str,
    number: Number,
    request: Request,
    access: Writer,
    session: Session,
    task: TaskHeader = None,
) -> QualityReportOut:
    """Record a quality report on the version (JSON: at least ``passed``, ``score`` and
    ``checks``; other fields are kept). Each report is kept; the latest is the current one.
    With a job token the report names the job; ``X-Armillary-Task`` names the task."""
    body = await _read_report(request)
    return await service.submit(session, access, dataset, number, body, task)


@router.get("", name="datasets.quality_report_latest")
async def get_quality_report(
    dataset: str, number: Number, access: Reader, session: ReadSession
) -> QualityReportOut:
    """The version's latest quality report (404 when it has none)."""
    return await service.latest(session, access, dataset, number)


@router.get("/history", name="datasets.quality_report_history")
async def quality_history(
    dataset: str, number: Number, access: Reader, session: ReadSession, paging: Paging
) -> Page[QualityReportOut]:
    """Every quality report on the version, newest first."""
    items, total = await service.history(
        session, access, dataset, number, limit=paging.limit, offset=paging.offset
    )
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)
