"""Calls to the registry service's public models API with the caller's own token, and its
answers as MLflow's errors: the registry decides what the caller may do, MLflow's client
reads the ``error_code``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from armillary.kit.authz import ProjectAccess
from armillary.kit.errors import DomainError, Forbidden, ServiceUnavailable, Unauthorized

from ..components import Tracking
from ..wire_errors import AlreadyExists, DoesNotExist, InvalidParameter

# The registry pages its lists by at most this many items.
REGISTRY_PAGE = 200
# The most models, or versions of one model, a search reads from the registry.
MAX_LISTED = 10_000

_BY_STATUS: dict[int, Callable[[str], DomainError]] = {
    400: InvalidParameter,
    401: Unauthorized,
    403: Forbidden,
    404: DoesNotExist,
    409: AlreadyExists,
    413: InvalidParameter,
    415: InvalidParameter,
    422: InvalidParameter,
}


def segment(value: str) -> str:
    return quote(value, safe="")


def _detail(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    detail = body.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        # A request the registry's schema refused: name the field and say why.
        first = detail[0]
        where = ".".join(str(p) for p in first.get("loc", [])[1:]) or "request"
        return f"{where}: {first.get('msg', 'invalid')}"
    return None


async def call(
    tracking: Tracking,
    access: ProjectAccess,
    method: str,
    path: str = "",
    *,
    json: Any = None,
    params: Any = None,
    not_found: str = "Not found",
) -> Any:
    """The registry's JSON answer to a 2xx; otherwise the MLflow error for its status, with
    the registry's own reason (``not_found`` for a 404, in MLflow's words)."""
    status, body = await tracking.require_registry().models_api(
        method,
        access.principal.token,
        str(access.project_id),
        path,
        json=json,
        params=params,
    )
    if 200 <= status < 300:
        return body
    error = _BY_STATUS.get(status)
    if error is None:
        raise ServiceUnavailable("The model registry could not answer")
    if status == 404:
        raise DoesNotExist(not_found)
    raise error(_detail(body) or "The model registry refused the request")


def model_path(name: str, rest: str = "") -> str:
    return f"/{segment(name)}{rest}"


def model_not_found(name: str) -> str:
    return f"Registered Model with name={name} not found"


async def model(tracking: Tracking, access: ProjectAccess, name: str) -> dict[str, Any]:
    found = await call(tracking, access, "GET", model_path(name), not_found=model_not_found(name))
    return dict(found)


async def version(
    tracking: Tracking, access: ProjectAccess, name: str, number: str
) -> dict[str, Any]:
    found = await call(
        tracking,
        access,
        "GET",
        model_path(name, f"/versions/{int(number)}"),
        not_found=f"Model Version (name={name}, version={number}) not found",
    )
    return dict(found)


async def all_pages(
    tracking: Tracking,
    access: ProjectAccess,
    path: str,
    params: dict[str, str],
    *,
    not_found: str = "Not found",
) -> list[dict[str, Any]]:
    """Every item of a registry list (at most :data:`MAX_LISTED`): MLflow's searches filter
    and order in ways the registry's lists do not, so they are applied to the whole list."""
    items: list[dict[str, Any]] = []
    offset = 0
    while offset < MAX_LISTED:
        page = await call(
            tracking,
            access,
            "GET",
            path,
            params={**params, "limit": REGISTRY_PAGE, "offset": offset},
            not_found=not_found,
        )
        batch = page.get("items") if isinstance(page, dict) else None
        if not isinstance(batch, list):
            raise ServiceUnavailable("The model registry could not answer")
        items.extend(b for b in batch if isinstance(b, dict))
        offset += REGISTRY_PAGE
        if len(batch) < REGISTRY_PAGE or offset >= int(page.get("total") or 0):
            break
    return items
