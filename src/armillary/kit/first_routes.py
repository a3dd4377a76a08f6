"""Hot routes matched before the router's walk (ADR 0045).

FastAPI matches a request by asking every included router in turn, each walking its own
routes' regular expressions. For predict, the request a deployment serves thousands of times a
second, that walk was 12 % of the serving process's samples (py-spy, wrk c=1). A hot route gets
a copy at the front of the application's routes: the same path, endpoint, dependencies and
name, so authentication, errors, metrics labels and audit action are those of the original;
its handler skips FastAPI's general request handling when the route needs none of it
(:mod:`.lean_handler`).
The copy is left out of the OpenAPI document; the original stays where it was and documents
the operation. A hot route's path must be one no other route matches (checked here), so that
matching it first cannot take a request from another route.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import compile_path

from armillary.kit.lean_handler import HotRoute


class AmbiguousHotRoute(ValueError):
    """A hot route's path could also be matched by another route."""


def match_first(app: FastAPI, routers: Iterable[APIRouter], names: Iterable[str]) -> None:
    """Put a copy of each route named in ``names`` (found in ``routers``) at the front of
    ``app``'s routes. Names that no router has are skipped: an app need not serve them."""
    routes = [r for router in routers for r in router.routes if isinstance(r, APIRoute)]
    wanted = set(names)
    for original in routes:
        if original.name not in wanted:
            continue
        _check_unambiguous(original, routes)
        app.router.add_api_route(
            original.path,
            original.endpoint,
            methods=sorted(original.methods or ()),
            name=original.name,
            dependencies=original.dependencies,
            response_class=original.response_class,
            include_in_schema=False,
            route_class_override=HotRoute,
        )
        copy = app.router.routes.pop()
        app.router.routes.insert(0, copy)


def _check_unambiguous(hot: APIRoute, routes: list[APIRoute]) -> None:
    # A sample path of the hot route (each parameter a plain segment) must match no other
    # route of the same method, or that route would lose requests it used to win.
    sample = compile_path(hot.path)[1].format(
        **{name: f"sample-{name}" for name in hot.param_convertors}
    )
    for other in routes:
        if other is hot or not ((other.methods or set()) & (hot.methods or set())):
            continue
        if other.path_regex.match(sample):
            raise AmbiguousHotRoute(f"{other.path} also matches {hot.path}")
