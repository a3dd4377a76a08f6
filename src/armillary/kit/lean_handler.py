"""A hot route's handler without FastAPI's general request handling (ADR 0045).

FastAPI's handler reads the body for body parameters, validates every parameter, solves the
dependency graph with its caches and exit stacks, and serializes the return value. For a route
whose endpoint takes only plain ``str`` path parameters and the request, whose dependencies
are ``async`` functions of the request alone, and which returns a ``Response`` itself, none of
that has anything to do: the lean handler awaits each dependency with the request, in order,
then the endpoint. Any other route keeps FastAPI's handler (:class:`HotRoute` decides when
the route is built). Exceptions propagate as from FastAPI's handler, to the same handlers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, get_type_hints

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

# Parameters FastAPI injects besides the request: a route that asks for one needs FastAPI.
_OTHER_INJECTED = (
    "websocket_param_name",
    "http_connection_param_name",
    "response_param_name",
    "background_tasks_param_name",
    "security_scopes_param_name",
)


class HotRoute(APIRoute):
    """An APIRoute that uses :func:`lean_handler` when the route allows it."""

    def get_route_handler(self) -> Handler:
        return lean_handler(self) or super().get_route_handler()


def lean_handler(route: APIRoute) -> Handler | None:
    """The lean handler of ``route``, or None when FastAPI's handler is needed."""
    endpoint = route.dependant
    if not _takes_request_only(endpoint, path_params_ok=True) or route.body_field is not None:
        return None
    if not _returns_response(route.endpoint):
        return None
    guards: list[tuple[Callable[..., Any], str]] = []
    for dependency in endpoint.dependencies:
        if dependency.dependencies or not _takes_request_only(dependency, path_params_ok=False):
            return None
        guard, name = dependency.call, dependency.request_param_name
        if guard is None or name is None:  # ruled out above; spelled out for the types
            return None
        guards.append((guard, name))
    call, request_name = route.endpoint, endpoint.request_param_name
    if request_name is None:
        return None
    names = [field.name for field in endpoint.path_params]

    async def handle(request: Request) -> Response:
        for guard, name in guards:
            await guard(**{name: request})
        params = request.path_params
        response = await call(**{n: params[n] for n in names}, **{request_name: request})
        if not isinstance(response, Response):  # the annotation lied; FastAPI would convert
            raise TypeError(f"{route.name} returned {type(response).__name__}, not a Response")
        return response

    return handle


def _takes_request_only(dependant: Dependant, *, path_params_ok: bool) -> bool:
    if dependant.call is None or not inspect.iscoroutinefunction(dependant.call):
        return False
    if dependant.request_param_name is None or dependant.concurrency is not None:
        return False
    if dependant.query_params or dependant.header_params or dependant.cookie_params:
        return False
    if dependant.body_params or any(getattr(dependant, name) for name in _OTHER_INJECTED):
        return False
    if dependant.path_params and not path_params_ok:
        return False
    # A path parameter arrives as the path's text: only an unconstrained str is left as is.
    return all(
        field.field_info.annotation is str
        and not field.field_info.metadata
        and field.alias == field.name
        for field in dependant.path_params
    )


def _returns_response(endpoint: Callable[..., Any]) -> bool:
    try:
        returned = get_type_hints(endpoint).get("return")
    except Exception:  # an annotation that does not resolve: let FastAPI deal with it
        return False
    return isinstance(returned, type) and issubclass(returned, Response)
