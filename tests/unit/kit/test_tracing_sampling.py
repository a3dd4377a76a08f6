"""Sampling before instrumenting (ADR 0036): an unsampled request skips the server-span
middleware and its client calls start no span, yet its trace id still propagates; a sampled
one (by its caller's flag or the root coin) is traced as before. In-process, with a local
provider and an in-memory exporter (the global provider is left alone)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased

from armillary.kit.tracing_export import root_ratio, sampler_from_env
from armillary.kit.tracing_sampling import (
    EdgeRatio,
    SampledParentTracerProvider,
    SampledServerSpans,
    edge_sampled,
)

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def provider(ratio: float) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    sdk = TracerProvider(sampler=ParentBased(EdgeRatio(ratio)))
    sdk.add_span_processor(SimpleSpanProcessor(exporter))
    return sdk, exporter


class Recorder:
    """An ASGI app that notes the span current when it runs and what it would propagate."""

    def __init__(self, inner: Any = None) -> None:
        self.calls: list[tuple[trace.SpanContext, dict[str, str]]] = []
        self.app = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        self.calls.append((trace.get_current_span().get_span_context(), carrier))
        if self.app is not None:
            await self.app(scope, receive, send)


def run(app: Any, traceparent: str | None = None) -> None:
    headers = [(b"traceparent", traceparent.encode())] if traceparent else []
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": headers}

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(_message: Any) -> None:
        return None

    asyncio.run(app(scope, receive, send))


def test_an_unsampled_caller_skips_the_instrumented_middleware() -> None:
    untraced = Recorder()
    traced = Recorder(untraced)
    run(SampledServerSpans(traced, ratio=1.0), f"00-{TRACE}-{PARENT}-00")
    assert traced.calls == []
    [(current, carrier)] = untraced.calls
    # The caller's trace goes on, unsampled: log lines and outgoing calls carry its id.
    assert format(current.trace_id, "032x") == TRACE
    assert carrier["traceparent"] == f"00-{TRACE}-{PARENT}-00"


def test_a_sampled_caller_goes_through_the_instrumented_middleware() -> None:
    traced = Recorder(Recorder())
    run(SampledServerSpans(traced, ratio=0.0), f"00-{TRACE}-{PARENT}-01")
    assert len(traced.calls) == 1


def test_a_new_trace_that_loses_the_coin_still_has_a_trace_id() -> None:
    untraced = Recorder()
    traced = Recorder(untraced)
    run(SampledServerSpans(traced, ratio=0.0))
    assert traced.calls == []
    [(current, carrier)] = untraced.calls
    assert current.is_valid
    assert not current.trace_flags.sampled
    assert carrier["traceparent"].endswith("-00")


def test_a_new_trace_that_wins_the_coin_is_sampled_at_the_root() -> None:
    sdk, exporter = provider(0.0)  # the trace-id ratio alone would sample nothing
    tracer = sdk.get_tracer("t")

    class ServerSpan(Recorder):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            # As the ASGI instrumentation does: the parent is extracted into a new context.
            incoming = propagate.extract({})
            with tracer.start_as_current_span(
                "GET /x", context=incoming, kind=trace.SpanKind.SERVER
            ):
                await super().__call__(scope, receive, send)

    run(SampledServerSpans(ServerSpan(Recorder()), ratio=1.0))
    [span] = exporter.get_finished_spans()
    assert span.name == "GET /x"
    assert span.parent is None
    # Without the edge's mark, a root (a background loop's) is decided by the ratio.
    with tracer.start_as_current_span("loop"):
        pass
    assert len(exporter.get_finished_spans()) == 1


def test_client_spans_only_under_a_sampled_parent() -> None:
    sdk, exporter = provider(1.0)
    tracer = SampledParentTracerProvider(sdk).get_tracer("client")
    unsampled = propagate.extract({"traceparent": f"00-{TRACE}-{PARENT}-00"})
    token = otel_context.attach(unsampled)
    try:
        with tracer.start_as_current_span("SELECT", kind=trace.SpanKind.CLIENT) as span:
            assert not span.is_recording()
            assert format(span.get_span_context().span_id, "016x") == PARENT
        assert not tracer.start_span("GET").is_recording()
    finally:
        otel_context.detach(token)
    assert exporter.get_finished_spans() == ()
    sampled = propagate.extract({"traceparent": f"00-{TRACE}-{PARENT}-01"})
    with tracer.start_as_current_span("SELECT", context=sampled):
        pass
    [span] = exporter.get_finished_spans()
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT
    with tracer.start_as_current_span("root"):  # no parent: the root sampler's call
        pass
    assert len(exporter.get_finished_spans()) == 2


def test_the_edge_mark_samples_one_root_only() -> None:
    sampler = EdgeRatio(0.0)
    with edge_sampled():
        assert sampler.should_sample(None, 1, "server").decision.is_sampled()
        assert not sampler.should_sample(None, 2, "a task it started").decision.is_sampled()
    assert not sampler.should_sample(None, 3, "x").decision.is_sampled()


@pytest.mark.parametrize(
    ("environ", "ratio"),
    [
        ({}, 1.0),
        ({"OTEL_TRACES_SAMPLER_ARG": "0.1"}, 0.1),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, 0.0),
        ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, 1.0),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, None),
        ({"OTEL_TRACES_SAMPLER": "traceidratio"}, None),
    ],
)
def test_only_parent_based_samplers_are_sampled_before_instrumenting(
    environ: dict[str, str], ratio: float | None
) -> None:
    assert root_ratio(environ) == ratio
    if ratio is not None:
        assert "EdgeRatio" in sampler_from_env(environ).get_description()
