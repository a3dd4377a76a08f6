"""Distributed tracing with OpenTelemetry (ADR 0031).

On in a process iff ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``
is set when it starts (:func:`setup`); otherwise nothing is installed and every helper here is
a no-op costing one flag test. Configured by the standard variables: ``OTEL_SERVICE_NAME``
(default ``armillary-<role>``), ``OTEL_TRACES_SAMPLER``/``_ARG`` (default parent-based ratio,
:mod:`.tracing_export`), ``OTEL_EXPORTER_OTLP_*`` (OTLP over HTTP), ``OTEL_BSP_*``.

What carries the context where:

- HTTP (clients, services, the gateway): W3C ``traceparent`` headers, by the FastAPI/ASGI
  and httpx instrumentations;
- the outbox: the traceparent of the transaction that wrote an event travels with it to the
  publisher (:class:`~armillary.kit.events.Outgoing`), whose RabbitMQ publish is its child;
  the message headers carry it to the consumer (aio-pika instrumentation);
- a job: the submission's traceparent is stored on the job; the scheduler's transitions and
  the worker's attempt are its children;
- the sandboxed task child: the worker sends the traceparent in the attempt spec over the
  control socket (never the environment); the task's API calls send it as a header.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

# The server span's attribute holding the request's X-Request-Id.
REQUEST_ID = "armillary.request_id"
_enabled = False
_tracer: trace.Tracer | None = None
# The root ratio when the sampler is parent-based (then unsampled requests skip the
# instrumentations: :mod:`.tracing_sampling`); None otherwise.
_root_ratio: float | None = None
# What the client instrumentations (SQLAlchemy, Redis, httpx, aio-pika) get their tracers from.
_client_provider: trace.TracerProvider | None = None
_NULL: AbstractContextManager[None] = nullcontext()
_PROPAGATOR = TraceContextTextMapPropagator()
# Probes and scrapes: answered many times a minute, never interesting.
EXCLUDED_URLS = "/healthz,/readyz,/v2/health/live,/v2/health/ready"
# The SQLAlchemy instrumentation's pool events (see instrument_engine).
_POOL_EVENTS = frozenset({"connect", "close", "checkin", "checkout"})


def endpoint_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether an OTLP endpoint is set: tracing is on exactly then."""
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def sampling_ratio(environ: Mapping[str, str] = os.environ) -> float:
    """The share of new traces sampled, for a tracer configured by ratio (the gateway's)."""
    name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_traceidratio").lower()
    if name in ("always_on", "parentbased_always_on"):
        return 1.0
    if name in ("always_off", "parentbased_always_off"):
        return 0.0
    try:
        return min(max(float(environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")), 0.0), 1.0)
    except ValueError:
        return 1.0


def traces_endpoint(environ: Mapping[str, str] = os.environ) -> str | None:
    """The OTLP/HTTP traces URL the OTEL_* variables name (None: tracing off)."""
    if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    return None


def enabled() -> bool:
    return _enabled


def setup(role: str) -> bool:
    """Install the tracer provider and the instrumentations in this process if an OTLP
    endpoint is configured; ``role`` names the service (``armillary-<role>``) unless
    ``OTEL_SERVICE_NAME`` does. Returns whether tracing is on. Call it once, at start, before
    apps, engines and clients are built."""
    global _enabled, _tracer, _root_ratio, _client_provider
    if _enabled or not endpoint_configured():
        return _enabled
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from armillary.kit.tracing_export import ScrubbingExporter, root_ratio, sampler_from_env
    from armillary.kit.tracing_sampling import SampledParentTracerProvider

    name = os.environ.get("OTEL_SERVICE_NAME") or f"armillary-{role}"
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: name}), sampler=sampler_from_env()
    )
    provider.add_span_processor(BatchSpanProcessor(ScrubbingExporter(OTLPSpanExporter())))
    trace.set_tracer_provider(provider)
    _root_ratio = root_ratio()
    _client_provider = provider if _root_ratio is None else SampledParentTracerProvider(provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=_client_provider)
    RedisInstrumentor().instrument(tracer_provider=_client_provider)
    if _root_ratio is not None:
        from armillary.kit.tracing_shortcuts import gate_redis

        gate_redis()
    AioPikaInstrumentor().instrument(tracer_provider=_client_provider)
    atexit.register(provider.shutdown)
    _tracer = _client_provider.get_tracer("armillary")
    _enabled = True
    return True


def instrument_app(app: Any) -> None:
    """Server spans for a FastAPI app (no header captured: :mod:`.tracing_export`)."""
    if not _enabled:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["receive", "send"],
        http_capture_headers_server_request=[],
        http_capture_headers_server_response=[],
    )
    _trim_server_spans(app, _root_ratio)


def _trim_server_spans(app: Any, ratio: float | None) -> None:
    """In the server-span middleware the instrumentor builds into the app's stack (the
    outermost error middleware's app): spans named from the router's choice
    (:mod:`.tracing_shortcuts`) and, with a parent-based sampler,
    :class:`~.tracing_sampling.SampledServerSpans` in front of it."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    from armillary.kit.tracing_sampling import SampledServerSpans
    from armillary.kit.tracing_shortcuts import name_server_spans_by_route

    build_instrumented = app.build_middleware_stack

    def build_middleware_stack() -> Any:
        stack = build_instrumented()
        otel_middleware = getattr(stack, "app", None)
        if isinstance(otel_middleware, OpenTelemetryMiddleware):
            if ratio is not None:
                # First, so that unsampled requests go around the namer too.
                stack.app = SampledServerSpans(otel_middleware, ratio)
            name_server_spans_by_route(otel_middleware)
        return stack

    app.build_middleware_stack = build_middleware_stack


def instrument_engine(engine: Any) -> None:
    """Spans for an (async) SQLAlchemy engine's statements: the SQL text with its
    placeholders, never the parameters."""
    if not _enabled or _client_provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    from armillary.kit.tracing_sampling import unsampled_parent

    class StatementTracer(EngineTracer):
        @classmethod
        def _register_event_listener(
            cls, target: Any, identifier: str, *rest: Any, **kw: Any
        ) -> None:
            # The pool listeners only feed an OpenTelemetry connection-usage counter, and
            # there is no OpenTelemetry meter provider (metrics are Prometheus): skip them
            # rather than run them on every checkout and checkin.
            if identifier in _POOL_EVENTS:
                return
            super()._register_event_listener(target, identifier, *rest, **kw)  # type: ignore[no-untyped-call]

        def _before_cur_exec(self, conn: Any, cursor: Any, statement: Any, *rest: Any) -> Any:
            # Under an unsampled request, skip even the attributes it builds before the span.
            if _root_ratio is not None and unsampled_parent() is not None:
                return statement, rest[0]
            return super()._before_cur_exec(conn, cursor, statement, *rest)  # type: ignore[no-untyped-call]

    StatementTracer(  # type: ignore[no-untyped-call]
        _client_provider.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
        getattr(engine, "sync_engine", engine),
        None,  # the connection-usage counter: never used, its listeners are not registered
    )


def span(
    name: str,
    *,
    parent: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> AbstractContextManager[Any]:
    """A span around a block, child of the current span or, when none is current (a
    background loop), of ``parent`` (a traceparent)."""
    if _tracer is None:
        return _NULL
    current = trace.get_current_span()
    current_context = current.get_span_context()
    context = None
    if not current_context.is_valid:
        if parent:
            context = _PROPAGATOR.extract({"traceparent": parent})
    elif _root_ratio is not None and not current_context.trace_flags.sampled:
        # What the client tracer hands back under an unsampled parent, without the calls.
        return nullcontext(current)
    return _tracer.start_as_current_span(name, context=context, kind=kind, attributes=attributes)


def traceparent() -> str | None:
    """The current span's W3C traceparent (None when tracing is off or no span is current)."""
    if not _enabled:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def attached(parent: str | None) -> AbstractContextManager[Any]:
    """Make ``parent`` (a traceparent) the current context for a block, with no span of its
    own: what the block's instrumented calls (a publish, an HTTP call) become children of."""
    if not _enabled or not parent:
        return _NULL
    return _attach(parent)


@contextmanager
def _attach(parent: str) -> Iterator[None]:
    token = otel_context.attach(_PROPAGATOR.extract({"traceparent": parent}))
    try:
        yield
    finally:
        otel_context.detach(token)


def record_request_id(request_id: str) -> None:
    """Put the request id on the current (server) span."""
    if _enabled:
        current = trace.get_current_span()
        if current.is_recording():
            current.set_attribute(REQUEST_ID, request_id)


def log_ids() -> tuple[str, str] | None:
    """The current span's trace and span ids (hex), for log lines; None without one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
