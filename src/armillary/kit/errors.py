"""Domain errors that carry their HTTP status, rendered once as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_MEDIA_TYPE = "application/problem+json"
#: Seconds a 503 asks the client to wait before retrying, unless it says otherwise.
RETRY_AFTER_SECONDS = 5


class DomainError(Exception):
    """Base of every error a client may see. Subclasses set status and title."""

    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"
    # Commit the unit of work before rendering, e.g. to keep a revocation or an audit entry.
    keep_changes: ClassVar[bool] = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extra = extra or {}

    @property
    def type_slug(self) -> str:
        return self.title.lower().replace(" ", "-")


class BadRequest(DomainError):
    status = 400
    title = "Bad request"


class Unauthorized(DomainError):
    status = 401
    title = "Not authenticated"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Unprocessable(DomainError):
    status = 422
    title = "Unprocessable content"


class TooManyRequests(DomainError):
    status = 429
    title = "Too many requests"


class ServiceUnavailable(DomainError):
    """Something the request needs (a database, another service) cannot answer for now."""

    status = 503
    title = "Service unavailable"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        # RFC 9110: a 503 may say when to retry; without one clients guess (or hammer).
        self.headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))


def problem_body(
    status: int,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    request_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"https://armillary.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if request_id:
        body["request_id"] = request_id
    if extra:
        body.update(extra)
    return body
