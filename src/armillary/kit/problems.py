"""Renders every error as RFC 9457 problem+json, once, without stack traces, SQL or paths,
and documents the error responses of each route in the OpenAPI schema."""

from __future__ import annotations

from typing import Any, Protocol

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from armillary.kit import context
from armillary.kit.database_unavailable import unavailable_reason
from armillary.kit.errors import (
    PROBLEM_MEDIA_TYPE,
    DomainError,
    ServiceUnavailable,
    problem_body,
)

log = structlog.get_logger("armillary.errors")

_STATUS_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None


class ProblemDialect(Protocol):
    """How a family of routes speaks a foreign API's errors inside problem+json (MLflow's
    tracking API): the status it gives, and the extension members it adds. A route declares
    one as its ``problem_dialect`` attribute; the handlers below apply it, after the unit of
    work has rolled back."""

    def __call__(self, status: int, detail: str) -> tuple[int, dict[str, Any]]: ...


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    dialect: ProblemDialect | None = (
        getattr(request.scope.get("route"), "problem_dialect", None) if request else None
    )
    if dialect is not None:
        status, members = dialect(status, detail)
        extra = {**(extra or {}), **members}
    ctx = context.current()
    body = problem_body(
        status,
        title,
        detail,
        instance=request.url.path if request is not None else None,
        request_id=ctx.request_id if ctx else None,
        extra=extra,
    )
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)  # noqa: S101 - registered for DomainError only
    return problem_response(
        exc.status, exc.title, exc.detail, request=request, headers=exc.headers, extra=exc.extra
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    # Only where and what: the offending input is not echoed back (it may hold a secret).
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    return problem_response(
        422,
        "Unprocessable content",
        "The request does not match the expected schema",
        request=request,
        extra={"errors": errors},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    title = _STATUS_TITLES.get(exc.status_code, "Error")
    detail = exc.detail if isinstance(exc.detail, str) else title
    return problem_response(
        exc.status_code, title, detail, request=request, headers=dict(exc.headers or {})
    )


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    # A unique constraint lost to a concurrent request that committed first: the check before
    # the insert could not see it. Only the kind goes to the log: the statement's parameters
    # may hold user data.
    log.warning(
        "integrity_conflict", path=request.url.path, error=type(getattr(exc, "orig", exc)).__name__
    )
    return problem_response(
        409,
        "Conflict",
        "The request conflicts with a change made at the same time; retry it",
        request=request,
    )


def database_unavailable(exc: BaseException, path: str) -> ServiceUnavailable | None:
    """The 503 problem (with ``Retry-After``) that ``exc`` stands for when it means the
    database is busy or unreachable, logged at warning; None for any other error."""
    reason = unavailable_reason(exc)
    if reason is None:
        return None
    # The kind only: the exception's text carries the statement and its parameters.
    log.warning(
        "database_unavailable",
        path=path,
        reason=reason,
        error=type(getattr(exc, "orig", None) or exc).__name__,
    )
    return ServiceUnavailable("The database is busy or unreachable; retry shortly")


def known_problem(exc: BaseException, path: str) -> DomainError | None:
    """The problem an error raised outside a route (in a middleware, such as the rate
    limiter's token check) stands for, or None when it is a bug (a 500)."""
    if isinstance(exc, DomainError):
        return exc
    return database_unavailable(exc, path)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    problem = database_unavailable(exc, request.url.path)
    if problem is None:
        raise exc  # any other failure stays a 500, rendered by the request context
    return await _domain_error(request, problem)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    # Busy (SQLite's write lock) or unreachable databases are 503s; the handler re-raises
    # every other error of these kinds. OSError: a driver that fails to connect raises it
    # unwrapped.
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(OSError, _database_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


#: An operation's ``openapi_extra`` key whose schemas go to ``components`` (for a body the
#: route reads itself, so FastAPI does not know its model): see :func:`component_schemas`.
COMPONENT_SCHEMAS = "x-component-schemas"


def component_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` that puts ``models`` (and the models they use) in the document's
    ``components``, so a route's body can be ``{"$ref": "#/components/schemas/<Model>"}``."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {COMPONENT_SCHEMAS: schemas}


def install_openapi(app: FastAPI, *, public_paths: frozenset[str]) -> None:
    """Every operation lists its problem responses: 401/403 when protected, 400 and 404 with
    path parameters, 400 with a body, 422 with input, 429, 500 and 503 (a busy or unreachable
    database) always, plus those the route declared. Schemas that routes bring with
    :func:`component_schemas` are put in ``components``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema()
        ref = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                for name, brought in operation.pop(COMPONENT_SCHEMAS, {}).items():
                    components.setdefault(name, brought)
                codes = {429, 500, 503}
                if path not in public_paths:
                    codes |= {401, 403}
                if "{" in path:
                    # 400: a segment that is no valid name (services check names themselves).
                    codes |= {400, 404}
                if "requestBody" in operation:
                    codes.add(400)  # a body that cannot be read at all (not UTF-8, cut off)
                responses = operation.setdefault("responses", {})
                # FastAPI documents a 422 exactly for operations that validate input; keep it,
                # rendered as a problem.
                if responses.pop("422", None) is not None:
                    codes.add(422)
                for code in sorted(
                    codes | {int(c) for c in responses if c.isdigit() and int(c) >= 400}
                ):
                    responses[str(code)] = {
                        "description": _STATUS_TITLES.get(code, "Error"),
                        "content": ref,
                    }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
