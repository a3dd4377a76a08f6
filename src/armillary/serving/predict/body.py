"""Reading a JSON request body within a size limit: no other content type is ever parsed."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from armillary.kit.errors import BadRequest, DomainError


class ContentTooLarge(DomainError):
    status = 413
    title = "Content too large"


class UnsupportedMediaType(DomainError):
    status = 415
    title = "Unsupported media type"


def is_json(content_type: str | None, *, missing_ok: bool = False) -> bool:
    if not content_type:
        return missing_ok
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def check_headers(request: Request, max_bytes: int, *, missing_type_ok: bool = False) -> None:
    """415 for anything but JSON and 413 for a declared length over the limit, before a byte
    of the body is read."""
    content_type = request.headers.get("content-type")
    if not is_json(content_type, missing_ok=missing_type_ok):
        shown = (content_type or "none").split(";", 1)[0].strip()[:100]
        raise UnsupportedMediaType(
            f"Send the body as application/json (got {shown}); other formats, pickles "
            "included, are never read"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ContentTooLarge(f"The body is larger than the limit of {max_bytes} bytes")


async def read_json(request: Request, max_bytes: int) -> Any:
    """The body parsed as JSON; 413 as soon as more than ``max_bytes`` arrived."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ContentTooLarge(f"The body is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise BadRequest("The body is not valid JSON") from None
