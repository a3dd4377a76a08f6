"""Sampling taken once, before any instrumentation spends time on a request (ADR 0031, 0036).

With a parent-based sampler an unsampled request can never have a sampled span, yet the
instrumentations would still build a server span's attributes, run the sampler for every
SQL statement, Redis command and client call, and attach and detach a context around each.
At 10 % sampling that is nine requests in ten paying for spans nobody sees. So:

- :class:`SampledServerSpans` sits in front of the ASGI instrumentation's middleware and
  decides first: a request whose ``traceparent`` says unsampled, or a new trace that loses
  the coin at the root ratio, runs without it, under a non-recording span that still carries
  the trace id (log lines, outgoing ``traceparent`` headers with flag 00). A new trace that
  wins the coin is marked so the root sampler (:class:`EdgeRatio`) samples it.
- :class:`SampledParentTracerProvider` hands the client instrumentations (SQLAlchemy, Redis,
  httpx, aio-pika) tracers that start no span under an unsampled parent: the caller gets the
  parent's context back, so headers still propagate it. Roots and sampled parents go to the
  SDK as before.

Both apply only with a parent-based sampler whose root is a ratio (the default, and the
``parentbased_*`` names of ``OTEL_TRACES_SAMPLER``): there, they change no decision.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes
from starlette.types import ASGIApp, Receive, Scope, Send

# Set while a new trace that won the coin at the edge goes through the instrumentation: the
# first root sampled under it takes the mark. Not an OpenTelemetry context value: the
# instrumentation extracts the incoming headers into a new, empty context. A one-shot box,
# so tasks the request starts (they copy the variable) never see it again.
_EDGE_SAMPLED: ContextVar[list[bool] | None] = ContextVar("armillary_edge_sampled", default=None)
_IDS = RandomIdGenerator()
_PROPAGATION_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})


def unsampled_parent(context: otel_context.Context | None = None) -> SpanContext | None:
    """The span context of the current (or ``context``'s) span if it is a valid, unsampled
    one: under it, a parent-based sampler drops every span."""
    span_context = trace.get_current_span(context).get_span_context()
    if span_context.is_valid and not span_context.trace_flags.sampled:
        return span_context
    return None


class EdgeRatio(TraceIdRatioBased):
    """The root sampler: samples a new trace that :class:`SampledServerSpans` chose, and
    decides any other root (a background loop's) by its trace id, at the same ratio."""

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        mark = _EDGE_SAMPLED.get()
        if mark:
            mark.clear()
            return ALWAYS_ON.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        return super().should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"EdgeRatio{{{self.rate}}}"


class SampledServerSpans:
    """ASGI middleware wrapping the instrumentation's server-span middleware ``app``: only
    sampled requests go through it; the others go straight to the app it wraps
    (``app.app``). ``self.app`` stays the instrumented middleware, so FastAPI still sees
    that contrib instrumentation is installed (and starts no second server span)."""

    def __init__(self, app: Any, ratio: float) -> None:
        self.app = app
        self.untraced: ASGIApp = app.app
        self.ratio = ratio

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        current = trace.get_current_span().get_span_context()
        if current.is_valid:
            # An in-process call (embedded shape) made on a request's behalf: follow it.
            target = self.app if current.trace_flags.sampled else self.untraced
            await target(scope, receive, send)
            return
        headers = _Headers(scope)
        # Without a propagation header (a new trace, the usual case at the edge), what the
        # propagators would extract is an empty context: skip them.
        incoming = propagate.extract(headers) if headers else otel_context.Context()
        remote = trace.get_current_span(incoming).get_span_context()
        if remote.is_valid and remote.trace_flags.sampled:
            await self.app(scope, receive, send)
            return
        # A sampling coin, not a secret (the SDK draws its ids from `random` too).
        if not remote.is_valid and random.random() < self.ratio:  # noqa: S311
            with edge_sampled():
                await self.app(scope, receive, send)
            return
        if not remote.is_valid:
            # A new, unsampled trace: its id still reaches log lines and outgoing calls.
            remote = SpanContext(
                _IDS.generate_trace_id(),
                _IDS.generate_span_id(),
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.DEFAULT),
            )
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(remote), incoming))
        try:
            await self.untraced(scope, receive, send)
        finally:
            otel_context.detach(token)


@contextmanager
def edge_sampled() -> Iterator[None]:
    """Within the block, the next root span is sampled (the edge's coin said so)."""
    mark = [True]
    token = _EDGE_SAMPLED.set(mark)
    try:
        yield
    finally:
        mark.clear()
        _EDGE_SAMPLED.reset(token)


class _Headers(Mapping[str, str]):
    """An ASGI scope's headers as the propagator's default getter reads them."""

    def __init__(self, scope: Scope) -> None:
        self._values: dict[str, str] = {}
        for key, value in scope.get("headers", ()):
            # ASGI servers lower-case header names; compare the bytes, decode only hits.
            if key in _PROPAGATION_HEADERS:
                self._values[key.decode("latin-1")] = value.decode("latin-1")

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class _SampledParentTracer(trace.Tracer):
    def __init__(self, inner: trace.Tracer) -> None:
        self._inner = inner

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent = unsampled_parent(context)
        if parent is not None:
            return NonRecordingSpan(parent)
        return self._inner.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    def start_as_current_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Any:
        parent = unsampled_parent(context)
        if parent is None:
            return self._inner.start_as_current_span(
                name,
                context,
                kind,
                attributes,
                links,
                start_time,
                record_exception,
                set_status_on_exception,
                end_on_exit,
            )
        if context is None:
            # The parent is already current: nothing to attach.
            return nullcontext(NonRecordingSpan(parent))
        return _current(NonRecordingSpan(parent))


@contextmanager
def _current(span: trace.Span) -> Iterator[trace.Span]:
    with trace.use_span(span, end_on_exit=False):
        yield span


class SampledParentTracerProvider(trace.TracerProvider):
    """Tracers that start no span under an unsampled parent (see the module doc)."""

    def __init__(self, inner: trace.TracerProvider) -> None:
        self._inner = inner

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        return _SampledParentTracer(
            self._inner.get_tracer(
                instrumenting_module_name, instrumenting_library_version, schema_url, attributes
            )
        )
