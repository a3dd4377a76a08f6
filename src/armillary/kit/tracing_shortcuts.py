"""Instrumentation work cut where it changes nothing that is exported (ADR 0046).

Profiles of the benchmark's `on` server (docs/benchmarks.md, "Tracing overhead") found two
costs that ADR 0036 left:

- **Naming a sampled server span.** The FastAPI instrumentation names the span before the
  request runs by matching the path against every route of the app in turn (231 routes
  here): about 0.9-1.5 ms for ``predict``, which sits 120 routes down. The router makes the
  same choice anyway. :class:`RouteNamedServerSpan` starts the span under the method alone
  and, once the router has chosen (``scope["route"]``), gives it the same name and
  ``http.route`` the instrumentation would have. When the router chose nothing we know
  (no route, a mounted app's inner route), it falls back to the instrumentation's own
  matching, so the result is the same in every case.
- **Redis commands under an unsampled request.** The Redis instrumentation formats the
  command's arguments and builds the span name before it asks for a span, which
  :class:`~.tracing_sampling.SampledParentTracerProvider` then refuses. :func:`gate_redis`
  puts a check in front: under an unsampled parent the command goes straight to redis-py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.util.http import sanitize_method
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from armillary.kit.tracing_sampling import unsampled_parent

HTTP_ROUTE = "http.route"
SpanDetails = Callable[[Scope], tuple[str, dict[str, str]]]


class RouteNamedServerSpan:
    """Sits inside the instrumentation's server-span middleware (its ``app``), where the
    server span is current; names that span from the router's choice when the response
    starts (see the module doc). ``match_routes`` is the instrumentation's own naming (span
    name and attributes from matching every route): the fallback."""

    def __init__(self, app: ASGIApp, match_routes: SpanDetails) -> None:
        self.app = app
        self.match_routes = match_routes
        # Route object id -> its full path template, built once per app on first use. The
        # routes are kept referenced, so an id is never reused by another object.
        self._templates: dict[int, str] | None = None
        self._routes: list[Any] = []

    def details_at_start(self, scope: Scope) -> tuple[str, dict[str, str]]:
        """The span's name and attributes when it starts: the method alone for HTTP (the
        route comes when the router has chosen), the instrumentation's otherwise."""
        if scope["type"] != "http":
            return self.match_routes(scope)
        return _span_method(scope), {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        span = trace.get_current_span()
        if scope["type"] != "http" or not span.is_recording():
            await self.app(scope, receive, send)
            return

        # Named when the response starts: the router has chosen by then, and the
        # instrumentation ends the span as the last body part is sent.
        named = False
        # For the fallback: routing changes the scope (a mount's root_path), and the
        # instrumentation's matching expects it as it came in.
        arrived = dict(scope)

        async def send_named(message: Message) -> None:
            nonlocal named
            if message["type"] == "http.response.start" and not named:
                named = True
                self._name(span, scope, arrived)
            await send(message)

        try:
            await self.app(scope, receive, send_named)
        finally:
            # No response sent (the client went away, an error no middleware answered).
            if not named and span.is_recording():
                self._name(span, scope, arrived)

    def _name(self, span: trace.Span, scope: Scope, arrived: Scope) -> None:
        route = self.template(scope, arrived)
        if route is not None:
            span.update_name(f"{_span_method(scope)} {route}")
            span.set_attribute(HTTP_ROUTE, route)
            return
        name, attributes = self.match_routes(arrived)
        span.update_name(name)
        span.set_attributes(attributes)

    def template(self, scope: Scope, arrived: Scope) -> str | None:
        """The full path template of the route the router chose, if it is one of the app's
        own (None: no route, or one this map does not know)."""
        chosen = scope.get("route")
        # The app as the request arrived: a mounted app puts itself in the scope.
        if chosen is None or "app" not in arrived:
            return None
        templates = self._templates
        if templates is None:
            templates = self._templates = self._build(arrived["app"])
        return templates.get(id(chosen))

    def _build(self, app: Any) -> dict[int, str]:
        from opentelemetry.instrumentation.fastapi import _flatten_routes

        paths: dict[int, set[str]] = {}
        for context in _flatten_routes(app.routes):
            route = getattr(context, "original_route", context)
            path = getattr(context, "path", None)
            if isinstance(path, str):
                paths.setdefault(id(route), set()).add(path)
                self._routes.append(route)
        # A route included under two prefixes has two templates: leave it to the fallback.
        return {key: next(iter(found)) for key, found in paths.items() if len(found) == 1}


def _span_method(scope: Scope) -> str:
    """The method as the instrumentation puts it in the span name (unknown ones: HTTP)."""
    method = sanitize_method(str(scope.get("method", "")).strip())
    return "HTTP" if method == "_OTHER" else method


def name_server_spans_by_route(otel_middleware: Any) -> None:
    """Make the instrumentation's server-span middleware name its spans from the router's
    choice (:class:`RouteNamedServerSpan`)."""
    named = RouteNamedServerSpan(otel_middleware.app, otel_middleware.default_span_details)
    otel_middleware.default_span_details = named.details_at_start
    otel_middleware.app = named


# What the Redis instrumentation wraps, as (module, class, method); see its _instrument.
_REDIS_WRAPPED = (
    ("redis.client", "Redis", "execute_command"),
    ("redis.client", "Pipeline", "execute"),
    ("redis.client", "Pipeline", "immediate_execute_command"),
    ("redis.asyncio.client", "Redis", "execute_command"),
    ("redis.asyncio.client", "Pipeline", "execute"),
    ("redis.asyncio.client", "Pipeline", "immediate_execute_command"),
    ("redis.cluster", "RedisCluster", "execute_command"),
    ("redis.cluster", "ClusterPipeline", "execute"),
    ("redis.asyncio.cluster", "RedisCluster", "execute_command"),
    ("redis.asyncio.cluster", "ClusterPipeline", "execute"),
)


def _skip_when_unsampled(wrapped: Any, _instance: Any, args: Any, kwargs: Any) -> Any:
    # `wrapped` is the instrumentation's wrapper, bound; its __wrapped__ is redis-py's own.
    if unsampled_parent() is not None:
        return wrapped.__wrapped__(*args, **kwargs)
    return wrapped(*args, **kwargs)


def gate_redis() -> int:
    """Put the unsampled-parent check in front of each Redis method the instrumentation
    wrapped (call it after ``RedisInstrumentor().instrument``). Returns how many."""
    import importlib

    gated = 0
    for module_name, class_name, method in _REDIS_WRAPPED:
        try:
            owner = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        gated += gate_instrumented(owner, method)
    return gated


def gate_instrumented(owner: type, method: str) -> bool:
    """Wrap ``owner.method``, if an instrumentation wrapped it (a wrapt wrapper), so that it
    skips that wrapper under an unsampled parent; once only. Whether it did."""
    import wrapt

    current = owner.__dict__.get(method)
    if not isinstance(current, wrapt.FunctionWrapper) or getattr(current, _GATED, False):
        return False
    wrapt.wrap_function_wrapper(owner, method, _skip_when_unsampled)
    setattr(owner.__dict__[method], _GATED, True)
    return True


# Marks a gate (wrapt keeps a proxy's own attributes when their names start with _self_).
_GATED = "_self_armillary_gate"
