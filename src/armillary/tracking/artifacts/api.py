"""MLflow's artifact proxy (``mlflow server --serve-artifacts``), over the platform's object
store: upload, download, list and delete a run's files, and the tracking API's
``artifacts/list``. No route holds a database connection while bytes move."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from armillary.kit.authz import ProjectAccess
from armillary.kit.storage.keys import attachment_disposition

from ..access import ARTIFACTS_PREFIX, Reader, Writer, mlflow_router
from ..components import Tracking, current_tracking
from ..runs.schemas import RunRef
from . import files, service
from .paths import ArtifactPathRefused, join, proxied_path, relative_path
from .service import RunFiles

router = mlflow_router("tracking")
proxy_router = mlflow_router("tracking", prefix=ARTIFACTS_PREFIX)
TrackingService = Annotated[Tracking, Depends(current_tracking)]
# Long enough for nested directories; S3 keys end at 1024 bytes with the run's prefix.
MAX_PATH_LENGTH: Final = 800
ArtifactPath = Annotated[
    str,
    Path(
        max_length=MAX_PATH_LENGTH,
        description="`<experiment_id>/<run_id>/artifacts/<path>`, as in the run's artifact_uri",
    ),
]
_OCTET_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_ERRORS: Final[dict[int | str, dict[str, Any]]] = {400: {}, 403: {}, 404: {}}


class ListQuery(RunRef):
    path: str | None = Field(default=None, max_length=MAX_PATH_LENGTH)
    # One page holds every entry; a token is accepted and ignored.
    page_token: str | None = Field(default=None, max_length=1000)


async def _proxied(
    tracking: Tracking, access: ProjectAccess, raw: str, *, for_write: bool = False
) -> tuple[RunFiles, str]:
    where = proxied_path(raw)
    # A short session of its own: the transfer that follows holds no connection.
    async with tracking.runtime.db.sessionmaker() as probe:
        run_files = await service.of_proxied(probe, access, where, for_write=for_write)
    return run_files, where.path


@proxy_router.put(
    "/artifacts/{artifact_path:path}",
    name="tracking.artifacts.upload",
    responses={**_ERRORS, 413: {}},
    openapi_extra=_OCTET_BODY,
)
async def upload_artifact(
    artifact_path: ArtifactPath, request: Request, access: Writer, tracking: TrackingService
) -> dict[str, Any]:
    """Store the request body as the file at ``artifact_path`` (replacing one there)."""
    max_bytes = tracking.settings.max_artifact_bytes
    files.refuse_declared_size(request.headers.get("content-length"), max_bytes)
    run_files, path = await _proxied(tracking, access, artifact_path, for_write=True)
    if not path:
        raise ArtifactPathRefused("An upload names a file under the run's artifacts")
    await files.upload(
        tracking.store,
        run_files.key(path),
        request.stream(),
        max_bytes=max_bytes,
        buffer_bytes=tracking.storage_settings.part_size,
    )
    return {}


@proxy_router.get(
    "/artifacts/{artifact_path:path}",
    name="tracking.artifacts.download",
    responses=_ERRORS,
    response_class=StreamingResponse,
)
async def download_artifact(
    artifact_path: ArtifactPath, access: Reader, tracking: TrackingService
) -> StreamingResponse:
    """The file's bytes, streamed from the store, always as a download."""
    run_files, path = await _proxied(tracking, access, artifact_path)
    if not path:
        raise ArtifactPathRefused("A download names a file under the run's artifacts")
    key = run_files.key(path)
    chunks: AsyncIterator[bytes] = await tracking.store.open_stream(key)
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": attachment_disposition(key),
            "X-Content-Type-Options": "nosniff",
        },
    )


@proxy_router.delete(
    "/artifacts/{artifact_path:path}", name="tracking.artifacts.delete", responses=_ERRORS
)
async def delete_artifact(
    artifact_path: ArtifactPath, access: Writer, tracking: TrackingService
) -> dict[str, Any]:
    """Delete the file, or the directory and all it holds (the run's root included)."""
    run_files, path = await _proxied(tracking, access, artifact_path)
    await files.delete_tree(tracking.store, run_files.key(path))
    return {}


@proxy_router.get("/artifacts", name="tracking.artifacts.proxy_list", responses=_ERRORS)
async def list_proxied(
    access: Reader,
    tracking: TrackingService,
    path: Annotated[str, Query(max_length=MAX_PATH_LENGTH)] = "",
) -> dict[str, Any]:
    """The files and directories directly under ``path``, by name (MLflow's proxy shape)."""
    run_files, inner = await _proxied(tracking, access, path)
    entries = await files.listing(tracking.store, run_files.key(inner))
    return {"files": [e.as_json(e.name) for e in entries]}


@router.get("/artifacts/list", name="tracking.artifacts.list", responses=_ERRORS)
async def list_run_artifacts(
    query: Annotated[ListQuery, Query()], access: Reader, tracking: TrackingService
) -> dict[str, Any]:
    """A run's files directly under ``path``, by path from the run's root, all in one page."""
    inner = relative_path(query.path or "")
    async with tracking.runtime.db.sessionmaker() as probe:
        run_files = await service.of_run(probe, access, query.ref)
    entries = await files.listing(tracking.store, run_files.key(inner))
    return {
        "root_uri": run_files.artifact_uri,
        "files": [e.as_json(join(inner, e.name)) for e in entries],
    }
