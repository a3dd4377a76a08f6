from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status

from armillary.kit.authz import ProjectAccess, project_permission
from armillary.kit.deps import ReadSession, Session
from armillary.kit.errors import DomainError, Unprocessable
from armillary.kit.pagination import Page, Paging, VersionNumber
from armillary.kit.problems import component_schemas

from ..components import current_workflows
from ..specs.documents import MAX_DOCUMENT_BYTES, DocumentError, DocumentFormat, parse_document
from ..specs.schema import WorkflowSpec
from . import repository, server_checks, service
from .models import Workflow, WorkflowVersion
from .schemas import ApplyOut, ScheduleOut, VersionDetail, VersionOut, WorkflowOut

router = APIRouter(prefix="/api/v1/projects/{project}/workflows", tags=["workflows"])

Reader = Annotated[ProjectAccess, Depends(project_permission("workflow:read"))]
Writer = Annotated[ProjectAccess, Depends(project_permission("workflow:write"))]
Number = VersionNumber

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JSON_TYPES = frozenset({"application/json"})


class PayloadTooLarge(DomainError):
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(DomainError):
    status = 415
    title = "Unsupported media type"


_SPEC_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "A workflow spec, as JSON or YAML. GET /api/v1/workflow-spec/schema adds the "
            "registered task types and each one's parameters."
        ),
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/WorkflowSpec"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    },
    **component_schemas(WorkflowSpec),
}


def workflow_out(workflow: Workflow) -> WorkflowOut:
    schedule = None
    if workflow.schedule_cron is not None:
        schedule = ScheduleOut(
            cron=workflow.schedule_cron,
            catchup=workflow.schedule_catchup or "skip",
            max_catchup_runs=workflow.schedule_max_catchup_runs or 1,
        )
    return WorkflowOut(
        id=workflow.id,
        name=workflow.name,
        description=workflow.description,
        schedule=schedule,
        latest_version=workflow.latest_version,
        created_by=workflow.created_by,
        created_at=workflow.created_at,
        updated_at=workflow.updated_at,
    )


def version_out(workflow: Workflow, version: WorkflowVersion) -> VersionOut:
    return VersionOut(
        id=version.id,
        workflow=workflow.name,
        number=version.number,
        spec_sha256=version.spec_sha256,
        created_by=version.created_by,
        created_at=version.created_at,
    )


def version_detail(workflow: Workflow, version: WorkflowVersion) -> VersionDetail:
    return VersionDetail(**version_out(workflow, version).model_dump(), spec=version.spec)


def _document_format(content_type: str | None) -> DocumentFormat:
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media in YAML_TYPES:
        return "yaml"
    if media in JSON_TYPES or media.endswith("+json"):
        return "json"
    raise UnsupportedMediaType("Send the spec as application/json or application/yaml")


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
        raise PayloadTooLarge(f"A spec is at most {MAX_DOCUMENT_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_DOCUMENT_BYTES:
            raise PayloadTooLarge(f"A spec is at most {MAX_DOCUMENT_BYTES} bytes")
    return bytes(body)


@router.post(
    "",
    name="workflows.apply",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "Unchanged spec: the latest version"},
        409: {},
        413: {},
        415: {},
        422: {},
    },
    openapi_extra=_SPEC_BODY,
)
async def apply_workflow(
    request: Request, response: Response, access: Writer, session: Session
) -> ApplyOut:
    """Submit a spec (JSON, or YAML with ``Content-Type: application/yaml``). It creates the
    workflow, or a new version when the spec changed (201); an unchanged spec returns the
    latest version (200). An invalid spec is answered 422 with every error in ``errors``."""
    fmt = _document_format(request.headers.get("content-type"))
    try:
        document = parse_document(await _read_body(request), fmt)
    except DocumentError as exc:
        raise Unprocessable(
            str(exc), extra={"errors": [{"path": "", "message": str(exc), "kind": "syntax"}]}
        ) from exc
    workflows = current_workflows(request)
    spec = service.checked_spec(document, workflows.task_types)
    await server_checks.check(session, access, spec, workflows.datasets)
    workflow, version, created = await service.apply_spec(session, access, spec)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = (
        f"/api/v1/projects/{access.project_slug}/workflows/{workflow.name}"
        f"/versions/{version.number}"
    )
    return ApplyOut(
        workflow=workflow_out(workflow), version=version_detail(workflow, version), created=created
    )


@router.get("", name="workflows.list")
async def list_workflows(access: Reader, session: ReadSession, paging: Paging) -> Page[WorkflowOut]:
    rows, total = await repository.workflows_page(
        session, access.project_id, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[workflow_out(w) for w in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/{workflow}", name="workflows.get")
async def get_workflow(workflow: str, access: Reader, session: ReadSession) -> WorkflowOut:
    return workflow_out(await service.get_workflow(session, access, workflow))


@router.delete("/{workflow}", name="workflows.delete", status_code=status.HTTP_204_NO_CONTENT)
async def delete_workflow(workflow: str, access: Writer, session: Session) -> None:
    """Soft delete: hidden from lists, versions kept for the jobs that ran them and audit."""
    await service.delete_workflow(session, access, workflow)


@router.get("/{workflow}/versions", name="workflows.versions")
async def list_versions(
    workflow: str, access: Reader, session: ReadSession, paging: Paging
) -> Page[VersionOut]:
    found = await service.get_workflow(session, access, workflow)
    rows, total = await repository.versions_page(
        session, found.id, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[version_out(found, v) for v in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/{workflow}/versions/{number}", name="workflows.version")
async def get_version(
    workflow: str, number: Number, access: Reader, session: ReadSession
) -> VersionDetail:
    found, version = await service.get_version(session, access, workflow, number)
    return version_detail(found, version)
