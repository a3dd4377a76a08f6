from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status

from armillary.kit.authz import ProjectAccess, project_permission
from armillary.kit.deps import ReadSession, Session
from armillary.kit.errors import DomainError, ServiceUnavailable
from armillary.kit.pagination import Page, Paging
from armillary.kit.storage import ObjectStore

from ..components import Workflows, current_workflows
from . import repository, service
from .models import CodeBundle
from .schemas import BundleKind, BundleOut, CodeSettings

router = APIRouter(prefix="/api/v1/projects/{project}/code", tags=["code"])

Reader = Annotated[ProjectAccess, Depends(project_permission("workflow:read"))]
Writer = Annotated[ProjectAccess, Depends(project_permission("workflow:write"))]

PY_TYPES = frozenset(
    {"text/x-python", "text/x-python-script", "text/plain", "application/x-python", "text/python"}
)
ZIP_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/x-zip"})
# Sent by clients that do not say: a zip is recognised by its signature, anything else is
# taken for Python source (and must compile).
SNIFF_TYPES = frozenset({"", "application/octet-stream"})
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One Python file (becomes main.py) or a zip archive of a package",
        "content": {
            "text/x-python": {"schema": {"type": "string"}},
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class UnsupportedMediaType(DomainError):
    status = 415
    title = "Unsupported media type"


def bundle_out(bundle: CodeBundle) -> BundleOut:
    return BundleOut(
        id=bundle.id,
        name=bundle.name,
        version=bundle.version,
        kind=BundleKind(bundle.kind),
        sha256=bundle.sha256,
        size_bytes=bundle.size_bytes,
        entries=bundle.entries,
        created_by=bundle.created_by,
        created_at=bundle.created_at,
    )


def _store(workflows: Workflows) -> ObjectStore:
    if workflows.store is None:
        raise ServiceUnavailable("Code bundle storage is not configured")
    return workflows.store


def _declared_kind(content_type: str | None) -> str | None:
    """``py`` or ``zip`` from the media type; ``None`` when the body must be sniffed."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in PY_TYPES:
        return "py"
    if media in ZIP_TYPES:
        return "zip"
    if media in SNIFF_TYPES:
        return None
    raise UnsupportedMediaType(
        "Send one Python file as text/x-python or a zip archive as application/zip"
    )


async def _read_body(request: Request, settings: CodeSettings) -> bytes:
    """The body, cut off with 413 as soon as it passes the limit (or says it will)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        service.check_size(int(declared), settings)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        service.check_size(len(body), settings)
    return bytes(body)


@router.put(
    "/{name}",
    name="code.upload",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "Same bytes as the latest version: that version"},
        409: {},
        413: {},
        415: {},
        422: {"description": "Invalid name, unsafe archive or Python that does not compile"},
    },
    openapi_extra=_UPLOAD_BODY,
)
async def upload_bundle(
    name: str, request: Request, response: Response, access: Writer, session: Session
) -> BundleOut:
    """Upload a code bundle for ``python`` tasks: one Python file (``text/x-python``) or a zip
    (``application/zip``). New bytes make a new version (201); the latest version's bytes
    again return it (200). Zip archives with unsafe paths, links, encryption or extreme
    compression, and Python files that do not compile, are refused (422)."""
    workflows = current_workflows(request)
    service.check_bundle_name(name)
    declared = _declared_kind(request.headers.get("content-type"))
    # Read before any query: no database connection is held while the body arrives.
    data = await _read_body(request, workflows.code_settings)
    kind = declared or ("zip" if data.startswith(_ZIP_MAGIC) else "py")
    bundle, created = await service.upload_bundle(
        session, _store(workflows), workflows.code_settings, access, name, kind, data
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/api/v1/projects/{access.project_slug}/code/{bundle.name}"
    return bundle_out(bundle)


@router.get("", name="code.list")
async def list_bundles(access: Reader, session: ReadSession, paging: Paging) -> Page[BundleOut]:
    """The project's code bundles (latest version of each), by name."""
    rows, total = await repository.bundles_page(
        session, access.project_id, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[bundle_out(b) for b in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/{name}", name="code.get")
async def get_bundle(name: str, access: Reader, session: ReadSession) -> BundleOut:
    """The latest version of a bundle."""
    return bundle_out(await service.get_bundle(session, access, name))


@router.delete("/{name}", name="code.delete", status_code=status.HTTP_204_NO_CONTENT)
async def delete_bundle(name: str, request: Request, access: Writer, session: Session) -> None:
    """Delete the bundle with every version; tasks that name it fail from then on."""
    store = _store(current_workflows(request))
    await service.delete_bundle(session, store, access, name)
