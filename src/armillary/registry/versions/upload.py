"""Model file uploads: a multipart body (field ``file``, plus small metadata fields) spooled to
a temporary file by :mod:`armillary.kit.multipart`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from armillary.kit.multipart import SpooledUpload, spool_multipart

SpooledModel = SpooledUpload


async def spool_model(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    *,
    max_bytes: int,
    spool_dir: str | None,
) -> SpooledModel:
    return await spool_multipart(
        content_type,
        content_length,
        body,
        max_bytes=max_bytes,
        spool_dir=spool_dir,
        prefix="armillary-model-",
    )
