"""The signed, expiring download route of the local object store (S3 presigns instead)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from armillary.kit.errors import NotFound
from armillary.kit.storage import LocalObjectStore

from ..components import current_data

router = APIRouter(prefix="/api/v1/downloads", tags=["datasets"])


@router.get("/{token}", name="downloads.get", response_class=StreamingResponse, responses={403: {}})
async def download_by_token(token: str, request: Request) -> StreamingResponse:
    """Bytes of the object the token names; the token is the credential (HMAC, expiring)."""
    store = current_data(request).store
    if not isinstance(store, LocalObjectStore):
        raise NotFound("Download links of this store are presigned URLs")
    key = store.verify_download(token)
    info = await store.head(key)
    return StreamingResponse(
        await store.open_stream(key),
        media_type="application/octet-stream",
        headers={"Content-Length": str(info.size)},
    )
