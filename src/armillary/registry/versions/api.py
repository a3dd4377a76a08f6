from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from armillary.kit.deps import ReadSession, Session
from armillary.kit.errors import NotFound
from armillary.kit.pagination import Page, Paging

from ..access import Reader, Writer, refuse_job
from ..catalog.service import get_model, parse_tag_filter
from ..components import current_registry
from . import graph, onnx, queries, service
from . import repository as repo
from .records import version_out
from .schemas import (
    ArtifactName,
    Comparison,
    LineageGraph,
    OnnxAttach,
    TrainedOn,
    VersionCreate,
    VersionFromRun,
    VersionOut,
    VersionUpdate,
)
from .upload import spool_model

router = APIRouter(prefix="/api/v1/projects/{project}/models", tags=["models"])
# Registered before the model routes: "lineage" is not a model name.
lineage_router = APIRouter(prefix="/api/v1/projects/{project}/models", tags=["models"])

Number = Annotated[int, Path(ge=1, le=10**9, description="Version number")]

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "An ONNX or skops model (pickle/joblib refused)",
                        },
                        "description": {"type": "string"},
                        "tags": {"type": "string", "description": "JSON object of strings"},
                        "metrics": {"type": "string", "description": "JSON object of numbers"},
                        "params": {"type": "string", "description": "JSON object"},
                        "signature": {"type": "string", "description": "JSON object"},
                    },
                }
            }
        },
    }
}


def _created(response: Response, project: str, model: str, number: int) -> None:
    response.headers["Location"] = f"/api/v1/projects/{project}/models/{model}/versions/{number}"


@router.post(
    "/{model}/versions",
    name="models.version_create",
    status_code=status.HTTP_201_CREATED,
    responses={403: {}, 404: {}, 409: {}, 422: {}},
)
async def create_version(
    model: str,
    body: VersionCreate,
    request: Request,
    response: Response,
    access: Writer,
    session: Session,
) -> VersionOut:
    """Register the next version from the artifacts of the calling job's task
    ``source.task`` (job tokens only: users upload a file instead). Lineage (workflow version,
    dataset versions and their SHA-256) comes from the job itself."""
    found, version = await service.create_from_job(
        session, current_registry(request), access, model, body
    )
    _created(response, access.project_slug, found.name, version.number)
    return version_out(found, version)


@router.post(
    "/{model}/versions/from-run",
    name="models.version_from_run",
    status_code=status.HTTP_201_CREATED,
    responses={403: {}, 404: {}, 415: {}, 422: {}},
)
async def create_version_from_run(
    model: str,
    body: VersionFromRun,
    request: Request,
    response: Response,
    access: Writer,
    session: Session,
) -> VersionOut:
    """Register the next version from an ONNX or skops file an MLflow run of this project
    logged (the tracking service calls it for MLflow's ``create_model_version``). Lineage
    records the run and its experiment."""
    found, version = await service.create_from_run(
        session, current_registry(request), access, model, body
    )
    _created(response, access.project_slug, found.name, version.number)
    return version_out(found, version)


@router.post(
    "/{model}/versions/upload",
    name="models.version_upload",
    status_code=status.HTTP_201_CREATED,
    responses={403: {}, 404: {}, 413: {}, 415: {}, 422: {}},
    openapi_extra=_UPLOAD_BODY,
)
async def upload_version(
    model: str, request: Request, response: Response, access: Writer, session: Session
) -> VersionOut:
    """Upload an ONNX or skops model file (multipart field ``file``) as the next version. The
    format is read from the content; pickle and joblib files are refused."""
    registry = current_registry(request)
    refuse_job(access, "upload model files; register the job's artifacts instead")
    # 404 (and the job-token refusal) before reading the body; no connection held meanwhile.
    async with registry.runtime.db.sessionmaker() as probe:
        await get_model(probe, access, model)
    upload = await spool_model(
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        request.stream(),
        max_bytes=registry.settings.max_upload_bytes,
        spool_dir=registry.settings.spool_dir,
    )
    found, version = await service.create_from_upload(session, registry, access, model, upload)
    _created(response, access.project_slug, found.name, version.number)
    return version_out(found, version)


@router.get("/{model}/versions", name="models.versions", responses={400: {}, 404: {}})
async def list_versions(
    model: str,
    access: Reader,
    session: ReadSession,
    paging: Paging,
    order_by: Annotated[str | None, Query(max_length=80, description=queries.ORDER_HELP)] = None,
    tag: Annotated[str | None, Query(max_length=300, description="`key` or `key=value`")] = None,
) -> Page[VersionOut]:
    found = await get_model(session, access, model)
    rows, total = await repo.versions_page(
        session,
        found.id,
        order=queries.order_clause(order_by),
        tag=parse_tag_filter(tag),
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page(
        items=[version_out(found, v) for v in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/{model}/versions/{version}", name="models.version", responses={404: {}})
async def get_version(
    model: str, version: Number, access: Reader, session: ReadSession
) -> VersionOut:
    found, row = await service.get_version(session, access, model, version)
    return version_out(found, row)


@router.patch("/{model}/versions/{version}", name="models.version_update", responses={404: {}})
async def update_version(
    model: str, version: Number, body: VersionUpdate, access: Writer, session: Session
) -> VersionOut:
    found, row = await service.update_version(session, access, model, version, body)
    return version_out(found, row)


@router.put(
    "/{model}/versions/{version}/onnx",
    name="models.version_onnx",
    responses={403: {}, 404: {}, 409: {}, 422: {}},
)
async def attach_onnx(
    model: str,
    version: Number,
    body: OnnxAttach,
    request: Request,
    access: Writer,
    session: Session,
) -> VersionOut:
    """Finish the version's pending ONNX export: ``model.onnx`` from a task of the calling
    job, or the reason there is none. Only the export job the registry started for this
    version may call it (ADR 0018)."""
    found, row = await onnx.attach(session, current_registry(request), access, model, version, body)
    return version_out(found, row)


@router.get(
    "/{model}/versions/{version}/artifacts/{name}",
    name="models.artifact",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, 404: {}},
)
async def download_artifact(
    model: str,
    version: Number,
    name: ArtifactName,
    request: Request,
    access: Reader,
    session: Session,
) -> Response:
    """An artifact's bytes (audited), with its SHA-256 in ``X-Content-SHA256``."""
    found, row = await service.get_version(session, access, model, version)
    info = row.artifacts.get(name)
    if info is None:
        raise NotFound("This version has no such artifact")
    stream = await current_registry(request).store.open_stream(info["key"])
    service.record_download(session, found, row, name)
    filename = f"{found.name}-v{row.number}-{name}"
    return StreamingResponse(
        stream,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Content-Length": str(info["size_bytes"]),
            "X-Content-SHA256": info["sha256"],
        },
    )


@router.get("/{model}/versions/{version}/lineage", name="models.lineage", responses={404: {}})
async def version_lineage(
    model: str, version: Number, request: Request, access: Reader, session: ReadSession
) -> LineageGraph:
    """The version's lineage graph: job, workflow version, dataset versions (with SHA-256) and
    what those dataset versions were made from."""
    found, row = await service.get_version(session, access, model, version)
    used = (await repo.datasets_of(session, [row.id])).get(row.id, [])
    return await graph.build(
        found,
        row,
        used,
        current_registry(request).datasets,
        access.principal.token,
        str(access.project_id),
    )


@router.get("/{model}/compare", name="models.compare", responses={400: {}, 404: {}})
async def compare_versions(
    model: str,
    access: Reader,
    session: ReadSession,
    versions: Annotated[str, Query(max_length=200, description="e.g. 1,2,3")],
) -> Comparison:
    """Metrics side by side, the parameters that differ, and each version's datasets."""
    return await queries.compare(session, access, model, queries.parse_numbers(versions))


@lineage_router.get("/lineage", name="models.trained_on", responses={404: {}})
async def trained_on(
    request: Request,
    access: Reader,
    session: ReadSession,
    paging: Paging,
    dataset: Annotated[str, Query(min_length=1, max_length=128, description="Name or id")],
    version: Annotated[int, Query(ge=1, le=10**9)],
) -> Page[TrainedOn]:
    """The model versions trained or evaluated on a dataset version."""
    dataset_id = await queries.dataset_id_of(current_registry(request), access, dataset, version)
    rows, total = await repo.trained_on_page(
        session,
        access.project_id,
        dataset_id=dataset_id,
        dataset_name=None if dataset_id else dataset,
        dataset_version=version,
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page(
        items=[
            TrainedOn(
                model=m.name,
                version=v.number,
                model_version_id=v.id,
                dataset=d.dataset_name,
                dataset_id=d.dataset_id,
                dataset_version=d.dataset_version,
                sha256=d.sha256,
                role=d.role,
                created_at=v.created_at,
            )
            for d, v, m in rows
        ],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )
