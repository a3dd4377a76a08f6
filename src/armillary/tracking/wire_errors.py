"""MLflow's errors on the tracking routes: the HTTP status MLflow's server gives each
``error_code`` (``mlflow/exceptions.py``), in a problem+json body that also carries MLflow's
``error_code`` and ``message`` members. MLflow's client reads ``error_code`` to decide what
happened (``get-by-name`` answering RESOURCE_DOES_NOT_EXIST is how ``set_experiment`` knows to
create); RFC 9457 allows such extension members, so other clients see the platform's format.

The platform's handlers render them (``kit.problems``), so a failed request's unit of work
rolls back as every other route's does.
"""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi.routing import APIRoute

from armillary.kit.errors import DomainError

# The code each platform status stands for (422: a request that does not parse).
_CODE_BY_STATUS = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_ALREADY_EXISTS",
    413: "INVALID_PARAMETER_VALUE",
    422: "INVALID_PARAMETER_VALUE",
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


def mlflow_dialect(status: int, detail: str) -> tuple[int, dict[str, Any]]:
    """The status MLflow gives, and its ``error_code`` and ``message`` members."""
    code = _CODE_BY_STATUS.get(status, "INTERNAL_ERROR")
    # An artifact over the size limit stays a 413: MLflow has no code of its own for it, and
    # its client fails on any status alike, but a proxy or a person reading it should not
    # retry the same body as if it were malformed.
    mlflow_status = status if status == 413 else _STATUS_BY_CODE.get(code, status)
    return mlflow_status, {"error_code": code, "message": detail}


class MlflowRoute(APIRoute):
    """A route whose errors, from its dependencies (authentication, project access) or its
    body, are MLflow's (see ``kit.problems.ProblemDialect``)."""

    problem_dialect: ClassVar[Any] = staticmethod(mlflow_dialect)
