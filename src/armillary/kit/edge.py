"""Each route's edge rule, read off its FastAPI dependencies: what the gateway (Envoy) checks
before a request reaches a service. The route table stays the one source of truth: a route
added to a service gets its edge rule from the dependencies it already declares.

- ``public``: no credentials (login, refresh, JWKS, one-time download links).
- ``bearer``: a valid access token (the route depends on kit.authz's bearer scheme).
- ``api-key-or-bearer``: an ``X-API-Key`` or a valid access token (prediction routes).

On top: ``admin_only`` (the route needs the platform admin role) and ``job_tokens`` (a job
token may call it: the routes a task uses). Project permissions stay in the services.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from fastapi import Depends
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security.http import HTTPBearer

F = TypeVar("F", bound=Callable[..., Any])

_ACCESS = "__edge_access__"
_ADMIN_ONLY = "__edge_admin_only__"
_JOB_TOKENS = "__edge_job_tokens__"


class Access(StrEnum):
    PUBLIC = "public"
    BEARER = "bearer"
    API_KEY_OR_BEARER = "api-key-or-bearer"


@dataclass(frozen=True)
class EdgeRule:
    access: Access
    admin_only: bool = False
    job_tokens: bool = False


def mark(
    *, access: Access | None = None, admin_only: bool = False, job_tokens: bool | None = None
) -> Callable[[F], F]:
    """Decorator for a dependency: what the gateway must check on any route that uses it.
    ``job_tokens=False`` wins over ``True`` from another dependency of the same route."""

    def decorate(function: F) -> F:
        if access is not None:
            setattr(function, _ACCESS, access)
        if admin_only:
            setattr(function, _ADMIN_ONLY, True)
        if job_tokens is not None:
            setattr(function, _JOB_TOKENS, job_tokens)
        return function

    return decorate


@mark(job_tokens=True)
async def task_route() -> None:
    """A route a task calls with its job token (beyond the project-permission routes)."""


TASK_ROUTE = Depends(task_route)


def _calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def edge_rule(route: APIRoute) -> EdgeRule:
    """The edge rule of ``route``, from the markers and security schemes of its dependencies."""
    calls = list(_calls(route.dependant))
    marked = [getattr(call, _ACCESS) for call in calls if hasattr(call, _ACCESS)]
    if marked:
        access = Access(marked[0])
    elif any(isinstance(call, HTTPBearer) for call in calls):
        access = Access.BEARER
    else:
        access = Access.PUBLIC
    job_marks = [getattr(call, _JOB_TOKENS) for call in calls if hasattr(call, _JOB_TOKENS)]
    return EdgeRule(
        access=access,
        admin_only=any(getattr(call, _ADMIN_ONLY, False) for call in calls),
        job_tokens=access is not Access.PUBLIC and bool(job_marks) and all(job_marks),
    )
