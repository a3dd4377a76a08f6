"""Errors raised by the client: the API's problem+json answers, and failures on our side."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

# Bodies of non-JSON error answers (a proxy's HTML page, say) are cut to this many characters.
_MAX_DETAIL = 500


class ArmillaryError(Exception):
    """A request failed.

    ``status`` is the HTTP status of the answer, or 0 when there was no usable answer (the
    server was unreachable, or downloaded bytes failed verification). ``title`` and ``detail``
    come from the RFC 9457 problem body; ``body`` holds the whole problem, for extra fields.
    """

    def __init__(
        self, status: int, title: str, detail: str = "", body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status = status
        self.title = title
        self.detail = detail
        self.body = body or {}

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the fields when the error is pickled (multiprocessing, logging handlers).
        return (type(self), (self.status, self.title, self.detail, self.body))


class ConnectionFailed(ArmillaryError):
    """The server could not be reached, or the connection broke mid-request."""

    def __init__(self, detail: str) -> None:
        super().__init__(0, "Connection failed", detail)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.detail,))


class ChecksumMismatch(ArmillaryError):
    """Downloaded bytes do not match the version's recorded size or SHA-256; nothing was kept."""

    def __init__(self, detail: str) -> None:
        super().__init__(0, "Checksum mismatch", detail)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.detail,))


def error_from_response(response: httpx.Response) -> ArmillaryError:
    """The error an unsuccessful answer stands for; reads the (small) body if still unread."""
    try:
        response.read()
        payload: Any = response.json()
    except (ValueError, httpx.HTTPError):
        payload = None
    if isinstance(payload, dict):
        title = str(payload.get("title") or response.reason_phrase or "Error")
        detail = payload.get("detail")
        if not isinstance(detail, str):
            # FastAPI's plain validation answer puts a list of problems in ``detail``.
            detail = "" if detail is None else str(detail)
        return ArmillaryError(response.status_code, title, detail, payload)
    text = ""
    with contextlib.suppress(UnicodeDecodeError, httpx.HTTPError):
        text = response.text.strip()[:_MAX_DETAIL]
    return ArmillaryError(response.status_code, response.reason_phrase or "Error", text)
