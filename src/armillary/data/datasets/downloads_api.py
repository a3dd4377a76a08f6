"""The signed, expiring download route of the local object store (S3 presigns instead)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from armillary.kit import audit
from armillary.kit.deps import Session
from armillary.kit.errors import NotFound
from armillary.kit.storage import DownloadTokenExpired, InvalidDownloadToken, LocalObjectStore
from armillary.kit.storage.keys import attachment_disposition

from ..components import SERVICE, current_data

router = APIRouter(prefix="/api/v1/downloads", tags=["datasets"])


# Raised instead of the store's errors so that the denial's audit entry survives the rollback.
class _InvalidLink(InvalidDownloadToken):
    keep_changes = True


class _ExpiredLink(DownloadTokenExpired):
    keep_changes = True


@router.get("/{token}", name="downloads.get", response_class=StreamingResponse, responses={403: {}})
async def download_by_token(token: str, request: Request, session: Session) -> StreamingResponse:
    """Bytes of the object the token names; the token is the credential (HMAC, expiring)."""
    store = current_data(request).store
    if not isinstance(store, LocalObjectStore):
        raise NotFound("Download links of this store are presigned URLs")
    try:
        key = store.verify_download(token)
    except InvalidDownloadToken as exc:
        # Audited here, without the token: the generic entry for a 403 would carry the token
        # (a credential, and longer than the log's resource id allows) as its resource id.
        expired = isinstance(exc, DownloadTokenExpired)
        audit.record(
            session,
            action="downloads.get",
            resource_type="download",
            outcome="denied",
            details={"reason": "expired" if expired else "invalid"},
            service=SERVICE,
        )
        raise (_ExpiredLink if expired else _InvalidLink)(exc.detail) from None
    info = await store.head(key)
    return StreamingResponse(
        await store.open_stream(key),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(info.size),
            "Content-Disposition": attachment_disposition(key),
        },
    )
