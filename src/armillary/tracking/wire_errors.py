"""MLflow's errors on the tracking routes: the HTTP status MLflow's server gives each
``error_code`` (``mlflow/exceptions.py``), and a problem+json body that also carries MLflow's
``error_code`` and ``message`` members. MLflow's client reads ``error_code`` to decide what
happened (``get-by-name`` answering RESOURCE_DOES_NOT_EXIST is how ``set_experiment`` knows to
create); RFC 9457 allows such extension members, so other clients see the platform's format.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import IntegrityError

from armillary.kit.errors import DomainError
from armillary.kit.problems import problem_response

# The codes our errors carry, by the status the platform's errors have.
_CODE_BY_STATUS = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_ALREADY_EXISTS",
    429: "REQUEST_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
}
# MLflow's statuses for those codes (RESOURCE_ALREADY_EXISTS is a 400 there).
_STATUS_BY_CODE = {
    "INVALID_PARAMETER_VALUE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "RESOURCE_ALREADY_EXISTS": 400,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "TEMPORARILY_UNAVAILABLE": 503,
    "INTERNAL_ERROR": 500,
}


class InvalidParameter(DomainError):
    status = 400
    title = "Invalid parameter value"


class AlreadyExists(DomainError):
    status = 409
    title = "Resource already exists"


class DoesNotExist(DomainError):
    status = 404
    title = "Resource does not exist"


def error_code(exc: DomainError) -> str:
    return _CODE_BY_STATUS.get(exc.status, "INTERNAL_ERROR")


def mlflow_error(
    request: Request, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    status = _STATUS_BY_CODE[code]
    title = code.replace("_", " ").capitalize()
    return problem_response(
        status,
        title,
        message,
        request=request,
        headers=headers,
        extra={"error_code": code, "message": message},
    )


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "Invalid request"


class MlflowRoute(APIRoute):
    """A route whose errors, from its dependencies (authentication, project access) or its
    body, are rendered as MLflow renders them. Anything unexpected still reaches the app's
    handlers (500 without details)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except DomainError as exc:
                return mlflow_error(request, error_code(exc), exc.detail, exc.headers or None)
            except RequestValidationError as exc:
                return mlflow_error(request, "INVALID_PARAMETER_VALUE", _validation_message(exc))
            except IntegrityError:
                # Two writers racing for one unique name: the loser is told what MLflow says.
                return mlflow_error(
                    request, "RESOURCE_ALREADY_EXISTS", "The resource already exists"
                )

        return handle
