"""FastAPI runs a plain ``def`` endpoint or dependency on a worker thread: a hop of about
0.15 ms per call on the request's critical path, which the authenticated GET paid once per
request for a dependency that only read ``request.app.state`` (issue 18). Every route and
dependency of every service is ``async``, except the ones named here with their reason."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from armillary.services import SERVICES

# The login form: a FastAPI class parsed once per sign-in, next to an argon2 hash.
ALLOWED = {"OAuth2PasswordRequestForm"}


def _is_async(call: Callable[..., Any]) -> bool:
    method = getattr(call, "__call__", None)  # noqa: B004 - instances with async __call__
    return any(
        inspect.iscoroutinefunction(c) or inspect.isasyncgenfunction(c) for c in (call, method)
    )


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _routes() -> Iterator[APIRoute]:
    for service in SERVICES:
        module = importlib.import_module(f"armillary.{service}.app")
        for router in [*module.ROUTERS, *getattr(module, "INTERNAL_ROUTERS", [])]:
            yield from (r for r in router.routes if isinstance(r, APIRoute))


def test_no_route_or_dependency_runs_on_a_thread() -> None:
    routes = list(_routes())
    assert len(routes) > 100
    on_threads = sorted(
        {
            f"{call.__module__}.{call.__qualname__} ({route.path})"
            for route in routes
            for call in [route.dependant.call, *_calls(route.dependant)]
            if call is not None and not _is_async(call) and call.__qualname__ not in ALLOWED
        }
    )
    assert on_threads == []
