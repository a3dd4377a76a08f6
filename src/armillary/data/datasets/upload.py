"""Dataset uploads: a multipart body spooled to a temporary file by :mod:`armillary.kit.multipart`,
with the file's name checked by the dataset naming rules."""

from __future__ import annotations

from collections.abc import AsyncIterator

from armillary.kit.multipart import (
    FILE_FIELD,
    PayloadTooLarge,
    ProgressListener,
    SpooledUpload,
    UnsupportedMediaType,
    spool_multipart,
)

from .names import check_filename

__all__ = ["FILE_FIELD", "PayloadTooLarge", "SpooledUpload", "UnsupportedMediaType", "spool_upload"]


async def spool_upload(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    *,
    max_bytes: int,
    spool_dir: str | None = None,
    on_progress: ProgressListener | None = None,
) -> SpooledUpload:
    """Read a ``multipart/form-data`` body into a temporary file (field ``file``);
    ``on_progress`` follows the file as it lands (see :func:`spool_multipart`)."""
    return await spool_multipart(
        content_type,
        content_length,
        body,
        max_bytes=max_bytes,
        spool_dir=spool_dir,
        check_filename=check_filename,
        on_progress=on_progress,
    )
