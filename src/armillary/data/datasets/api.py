from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.authz import ProjectAccess, dataset_permission, project_permission
from armillary.kit.deps import ReadSession, Session
from armillary.kit.errors import Forbidden
from armillary.kit.pagination import MAX_PARAM_INT, Page, Paging, VersionNumber

from ..components import current_data
from ..holds import service as holds
from ..holds.schemas import HeldVersionDetail
from ..profiling.runner import ProfilerProcess
from . import repository, service
from .models import Dataset, DatasetVersion
from .pipelined_put import PipelinedPut
from .schemas import (
    DatasetCreate,
    DatasetOut,
    DatasetUpdate,
    DownloadLink,
    VersionDetail,
    VersionOut,
)
from .upload import spool_upload

router = APIRouter(prefix="/api/v1/projects/{project}/datasets", tags=["datasets"])

Reader = Annotated[ProjectAccess, Depends(project_permission("dataset:read"))]
Writer = Annotated[ProjectAccess, Depends(project_permission("dataset:write"))]
# Routes of one dataset: a job token also needs its job to name the dataset (ADR 0014).
DatasetReader = Annotated[ProjectAccess, Depends(dataset_permission("dataset:read"))]
DatasetWriter = Annotated[ProjectAccess, Depends(dataset_permission("dataset:write"))]
# Its own action, so that no job token (kit.authz) deletes data.
Deleter = Annotated[ProjectAccess, Depends(project_permission("dataset:delete"))]
Number = VersionNumber
# Chunks of a streamed download: 4 MiB rather than 1 MiB cut the server's CPU per byte by about
# a sixth (fewer trips through Python and the ASGI stack); each stream holds a few chunks.
_STREAM_CHUNK = 4 * 1024 * 1024

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "format": {"type": "string", "enum": ["csv", "parquet", "jsonl"]},
                        "parent": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_PARAM_INT,
                            "description": "Parent version number",
                        },
                        "lineage": {
                            "type": "string",
                            "description": (
                                "A JSON object (at most 16 KiB) saying where the data came "
                                "from. 'job_id' and 'recorded_by' are set by the server: "
                                "from the token for a job's upload."
                            ),
                        },
                    },
                }
            }
        },
    }
}


def dataset_out(dataset: Dataset, latest: int | None) -> DatasetOut:
    return DatasetOut(
        id=dataset.id,
        name=dataset.name,
        description=dataset.description,
        tags=dataset.tags,
        created_by=dataset.created_by,
        created_at=dataset.created_at,
        updated_at=dataset.updated_at,
        latest_version=latest,
    )


async def _version_out(
    session: AsyncSession, dataset: Dataset, versions: list[DatasetVersion], detail: bool = False
) -> list[Any]:
    parents = await repository.numbers_by_id(
        session, {v.parent_id for v in versions if v.parent_id}
    )
    model = VersionDetail if detail else VersionOut
    out = []
    for v in versions:
        fields: dict[str, Any] = {
            "id": v.id,
            "dataset": dataset.name,
            "dataset_id": dataset.id,
            "number": v.number,
            "format": v.format,
            "size_bytes": v.size_bytes,
            "sha256": v.sha256,
            "original_filename": v.original_filename,
            "row_count": v.row_count,
            "columns": v.columns,
            "profile_status": v.profile_status,
            "profile_error": v.profile_error,
            "parent_version": parents.get(v.parent_id) if v.parent_id else None,
            "lineage": v.lineage,
            "created_by": v.created_by,
            "created_at": v.created_at,
            "deleted": v.deleted_at is not None,
        }
        if detail:
            fields["profile"] = v.profile
        out.append(model(**fields))
    return out


@router.get("", name="datasets.list")
async def list_datasets(access: Reader, session: ReadSession, paging: Paging) -> Page[DatasetOut]:
    # A job token sees only the datasets its job names: filtered in the query, so the page
    # and its total count only those.
    rows, total = await repository.datasets_page(
        session,
        access.project_id,
        limit=paging.limit,
        offset=paging.offset,
        names=access.principal.readable_dataset_names,
    )
    latest = await repository.latest_numbers(session, [d.id for d in rows])
    return Page(
        items=[dataset_out(d, latest.get(d.id)) for d in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post(
    "", name="datasets.create", status_code=status.HTTP_201_CREATED, responses={400: {}, 409: {}}
)
async def create_dataset(body: DatasetCreate, access: Writer, session: Session) -> DatasetOut:
    if not access.principal.may_touch_dataset(body.name, write=True):
        raise Forbidden("A job token may create only the datasets its job writes")
    return dataset_out(await service.create_dataset(session, access, body), None)


@router.get("/{dataset}", name="datasets.get", responses={400: {}})
async def get_dataset(dataset: str, access: DatasetReader, session: ReadSession) -> DatasetOut:
    found = await service.get_dataset(session, access, dataset)
    latest = await repository.latest_numbers(session, [found.id])
    return dataset_out(found, latest.get(found.id))


@router.patch("/{dataset}", name="datasets.update", responses={400: {}})
async def update_dataset(
    dataset: str, body: DatasetUpdate, access: DatasetWriter, session: Session
) -> DatasetOut:
    found = await service.update_dataset(session, access, dataset, body)
    latest = await repository.latest_numbers(session, [found.id])
    return dataset_out(found, latest.get(found.id))


Force = Annotated[
    bool,
    Query(description="Delete even what model versions hold (platform admins only)"),
]


@router.delete(
    "/{dataset}",
    name="datasets.delete",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={400: {}, 403: {}, 409: {"description": "A version is held by a model version"}},
)
async def delete_dataset(
    dataset: str, access: Deleter, session: Session, force: Force = False
) -> None:
    """Soft delete; 409 (naming the holders) while a model version holds one of its
    versions, unless a platform admin passes ``force=true``."""
    await service.delete_dataset(session, access, dataset, force=force)


@router.post(
    "/{dataset}/versions",
    name="datasets.version_create",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "Identical bytes: the existing version"},
        400: {},
        413: {},
        415: {},
        422: {},
    },
    openapi_extra=_UPLOAD_BODY,
)
async def upload_version(
    dataset: str, request: Request, response: Response, access: DatasetWriter, session: Session
) -> VersionOut:
    """Upload a CSV, Parquet or JSON Lines file (multipart field ``file``) as the next version,
    with an optional ``lineage`` field (a JSON object). Uploading bytes identical to an
    existing version returns that version (200), its lineage unchanged."""
    data = current_data(request)
    # 404 before reading the body; a short session, so no connection is held during the upload.
    async with data.runtime.db.sessionmaker() as probe:
        found = await service.get_dataset(probe, access, dataset)
    # Big files go to the store while the body still arrives; see pipelined_put.
    pipelined = PipelinedPut(
        data.store,
        access.project_id,
        found.id,
        threshold=data.storage_settings.multipart_threshold_bytes,
        start_profiler=lambda: ProfilerProcess.start(
            threads=data.settings.profile_threads,
            in_memory_max_bytes=data.settings.profile_in_memory_max_bytes,
        ),
    )
    try:
        upload = await spool_upload(
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            request.stream(),
            max_bytes=data.settings.max_upload_bytes,
            spool_dir=data.settings.spool_dir,
            on_progress=pipelined.on_progress,
        )
    except BaseException:
        # A body cut off, too large or malformed: the parts already sent are aborted.
        await pipelined.abort()
        raise
    version, created = await service.add_version(session, data, access, dataset, upload, pipelined)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = (
        f"/api/v1/projects/{access.project_slug}/datasets/{found.name}/versions/{version.number}"
    )
    out: VersionOut = (await _version_out(session, found, [version]))[0]
    return out


@router.get("/{dataset}/versions", name="datasets.versions")
async def list_versions(
    dataset: str,
    access: DatasetReader,
    session: ReadSession,
    paging: Paging,
    include_deleted: Annotated[bool, Query()] = False,
) -> Page[VersionOut]:
    found = await service.get_dataset(session, access, dataset)
    rows, total = await repository.versions_page(
        session, found.id, include_deleted=include_deleted, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=await _version_out(session, found, rows),
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/{dataset}/versions/{number}", name="datasets.version")
async def get_version(
    dataset: str, number: Number, access: DatasetReader, session: ReadSession
) -> HeldVersionDetail:
    """The version with its profile and the model versions that hold it."""
    found, version = await service.get_version(session, access, dataset, number)
    detail: VersionDetail = (await _version_out(session, found, [version], detail=True))[0]
    return HeldVersionDetail(**detail.model_dump(), holds=await holds.holds_of(session, version))


@router.delete(
    "/{dataset}/versions/{number}",
    name="datasets.version_delete",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={403: {}, 409: {"description": "The version is held by a model version"}},
)
async def delete_version(
    dataset: str, number: Number, access: Deleter, session: Session, force: Force = False
) -> None:
    """Soft delete: hidden from lists and downloads, kept for lineage and audit. 409 (naming
    the holders) while a model version holds it, unless a platform admin passes
    ``force=true``."""
    await service.delete_version(session, access, dataset, number, force=force)


@router.get(
    "/{dataset}/versions/{number}/content",
    name="datasets.download",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        307: {"description": "Presigned URL"},
    },
)
async def download_version(
    dataset: str,
    number: Number,
    request: Request,
    access: DatasetReader,
    session: Session,
    redirect: Annotated[
        bool, Query(description="Redirect to a presigned URL when the store has one")
    ] = True,
) -> Response:
    """The version's bytes: streamed, or a redirect to a short-lived presigned URL (S3)."""
    data = current_data(request)
    found, version = await service.get_version(session, access, dataset, number)
    if redirect:
        url = await data.store.presigned_get_url(version.object_key)
        if url is not None:
            service.record_download(session, found, version, "presigned")
            return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    stream = await data.store.open_stream(version.object_key, chunk_size=_STREAM_CHUNK)
    service.record_download(session, found, version, "stream")
    filename = f"{found.name}-v{version.number}.{version.format}"
    return StreamingResponse(
        stream,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Content-Length": str(version.size_bytes),
            "X-Content-SHA256": version.sha256,
        },
    )


@router.post("/{dataset}/versions/{number}/content/link", name="datasets.download_link")
async def create_download_link(
    dataset: str, number: Number, request: Request, access: DatasetReader, session: Session
) -> DownloadLink:
    """A URL that fetches the bytes without a token until it expires (for tools like curl)."""
    data = current_data(request)
    found, version = await service.get_version(session, access, dataset, number)
    url, ttl = await service.download_link(data, version, str(request.base_url))
    service.record_download(session, found, version, "link")
    return DownloadLink(url=url, expires_in=ttl)
