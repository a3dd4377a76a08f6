"""Instrumentation work cut where it changes nothing exported (ADR 0046): server spans named
from the router's choice get the same names and routes as the instrumentation's matching;
an instrumented method skips its wrapper under an unsampled parent only; pool events are
not listened to; scrubbing's shortcuts keep its results. In-process, with a local provider
and an in-memory exporter (the global provider is left alone)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy
import wrapt
from fastapi import APIRouter, FastAPI
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from armillary.kit import tracing
from armillary.kit.tracing_export import _SECRET_VALUE, _may_hold_credential
from armillary.kit.tracing_sampling import EdgeRatio, SampledParentTracerProvider
from armillary.kit.tracing_shortcuts import gate_instrumented, name_server_spans_by_route

PATHS = [
    # First, so that the route map is built while a mounted app is in the scope.
    ("GET", "/mounted/items/1", 200),
    ("POST", "/api/v1/projects/p1/deployments/d1/predict", 200),
    ("GET", "/api/v1/projects/p1", 200),
    ("GET", "/healthz", 200),
    ("GET", "/nowhere", 404),
    ("DELETE", "/api/v1/projects/p1", 405),
    ("GET", "/a/shared", 200),
    ("GET", "/b/shared", 200),
]


def app_and_spans(shortcut: bool) -> tuple[FastAPI, InMemorySpanExporter, list[int]]:
    """An app with a prefixed router and a route of its own, instrumented as
    ``tracing.instrument_app`` does; the list counts calls of the instrumentation's
    route matching."""
    exporter = InMemorySpanExporter()
    sdk = TracerProvider()
    sdk.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI()
    router = APIRouter(prefix="/api/v1/projects/{project}")

    @router.post("/deployments/{deployment}/predict")
    async def predict(project: str, deployment: str) -> dict[str, str]:
        return {}

    @router.get("")
    async def read(project: str) -> dict[str, str]:
        return {}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {}

    app.include_router(router)
    twice = APIRouter()

    @twice.get("/shared")
    async def shared() -> dict[str, str]:
        return {}

    app.include_router(twice, prefix="/a")
    app.include_router(twice, prefix="/b")
    mounted = FastAPI()

    @mounted.get("/items/{item}")
    async def item(item: str) -> dict[str, str]:
        return {}

    app.mount("/mounted", mounted)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=sdk, exclude_spans=["receive", "send"])
    matched: list[int] = []
    build = app.build_middleware_stack

    def build_middleware_stack() -> Any:
        stack: Any = build()
        match_routes = stack.app.default_span_details

        def counted(scope: Any) -> Any:
            matched.append(1)
            return match_routes(scope)

        stack.app.default_span_details = counted
        if shortcut:
            name_server_spans_by_route(stack.app)
        return stack

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
    return app, exporter, matched


def serve(app: FastAPI) -> list[int]:
    async def requests() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [(await client.request(m, p)).status_code for m, p, _ in PATHS]

    return asyncio.run(requests())


def test_server_spans_are_named_as_the_instrumentation_names_them() -> None:
    before, before_spans, _ = app_and_spans(shortcut=False)
    after, after_spans, matched = app_and_spans(shortcut=True)
    assert serve(before) == serve(after) == [status for _, _, status in PATHS]
    old = [
        (s.name, dict(s.attributes or {}).get("http.route"))
        for s in before_spans.get_finished_spans()
    ]
    new = [
        (s.name, dict(s.attributes or {}).get("http.route"))
        for s in after_spans.get_finished_spans()
    ]
    assert new == old
    assert new[1] == (
        "POST /api/v1/projects/{project}/deployments/{deployment}/predict",
        "/api/v1/projects/{project}/deployments/{deployment}/predict",
    )
    assert new[-2:] == [("GET /a/shared", "/a/shared"), ("GET /b/shared", "/b/shared")]
    # The instrumentation matched routes only where the router's choice has no one template
    # in the app: the mounted app's route, the 404, the route included twice.
    assert len(matched) == 4


@pytest.fixture
def sdk() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(EdgeRatio(1.0)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter


def under(flags: int) -> Any:
    span = NonRecordingSpan(SpanContext(1, 2, is_remote=True, trace_flags=TraceFlags(flags)))
    return otel_context.attach(trace.set_span_in_context(span))


def test_an_instrumented_method_skips_its_wrapper_under_an_unsampled_parent() -> None:
    class Client:
        def command(self, name: str) -> str:
            return f"done {name}"

    wrapper_calls: list[str] = []

    def instrumentation(wrapped: Any, _instance: Any, args: Any, kwargs: Any) -> Any:
        wrapper_calls.append(args[0])
        return wrapped(*args, **kwargs)

    assert not gate_instrumented(Client, "command")  # nothing wrapped it yet
    wrapt.wrap_function_wrapper(Client, "command", instrumentation)
    assert gate_instrumented(Client, "command")
    assert not gate_instrumented(Client, "command")  # once only
    for flags, name in ((0, "unsampled"), (1, "sampled")):
        token = under(flags)
        try:
            assert Client().command(name) == f"done {name}"
        finally:
            otel_context.detach(token)
    assert Client().command("root") == "done root"
    assert wrapper_calls == ["sampled", "root"]


def test_engine_statements_are_traced_without_pool_listeners(
    monkeypatch: pytest.MonkeyPatch, sdk: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = sdk
    monkeypatch.setattr(tracing, "_enabled", True)
    monkeypatch.setattr(tracing, "_root_ratio", 1.0)
    monkeypatch.setattr(tracing, "_client_provider", SampledParentTracerProvider(provider))
    engine = sqlalchemy.create_engine("sqlite://")
    try:
        events = ("checkout", "checkin", "connect", "close")
        before = [len(getattr(engine.pool.dispatch, event)) for event in events]
        tracing.instrument_engine(engine)
        assert [len(getattr(engine.pool.dispatch, event)) for event in events] == before
        root = provider.get_tracer("t").start_span("request")
        token = otel_context.attach(trace.set_span_in_context(root))
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("SELECT 1"))
        finally:
            otel_context.detach(token)
            root.end()
        assert [s.name for s in exporter.get_finished_spans()] == ["SELECT", "request"]
    finally:
        EngineTracer.remove_all_event_listeners()  # type: ignore[no-untyped-call]
        engine.dispose()


@pytest.mark.parametrize(
    "value",
    [
        "Bearer abc",
        "sent basic x",
        "BEARER\tq",
        "bearer",
        "ba\u017fic xyz",  # long s: matches "s" case-insensitively
        "\u212aey bearer z",  # Kelvin sign elsewhere in the string
        "SELECT 1",
        "",
        "no credential here",
    ],
)
def test_the_credential_precheck_never_skips_a_match(value: str) -> None:
    if re.search(_SECRET_VALUE, value):
        assert _may_hold_credential(value)
    if not _may_hold_credential(value):
        assert _SECRET_VALUE.sub(r"\1 [redacted]", value) == value


def test_fastapi_native_telemetry_is_off_in_our_apps() -> None:
    """Server spans are the instrumentation's; FastAPI's own telemetry would only look for
    it on every request and stand aside."""
    from armillary.kit.app_factory import FASTAPI_TELEMETRY_OFF

    assert not FastAPI(telemetry=FASTAPI_TELEMETRY_OFF)._native_telemetry.enabled()


def test_a_block_span_under_an_unsampled_parent_is_the_parent(
    monkeypatch: pytest.MonkeyPatch, sdk: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = sdk
    monkeypatch.setattr(tracing, "_root_ratio", 1.0)
    monkeypatch.setattr(
        tracing, "_tracer", SampledParentTracerProvider(provider).get_tracer("armillary")
    )
    for flags in (0, 1):
        token = under(flags)
        try:
            with tracing.span(f"block {flags}") as inside:
                assert inside.get_span_context().trace_id == 1
                assert inside.is_recording() == bool(flags)
                assert trace.get_current_span() is inside
        finally:
            otel_context.detach(token)
    assert [s.name for s in exporter.get_finished_spans()] == ["block 1"]


def test_unsampled_requests_go_around_the_span_namer_too() -> None:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    from armillary.kit.tracing_sampling import SampledServerSpans
    from armillary.kit.tracing_shortcuts import RouteNamedServerSpan

    app = FastAPI()
    FastAPIInstrumentor.instrument_app(app, tracer_provider=TracerProvider())
    tracing._trim_server_spans(app, 0.1)
    stack: Any = app.build_middleware_stack()
    assert isinstance(stack.app, SampledServerSpans)
    assert isinstance(stack.app.app, OpenTelemetryMiddleware)
    assert isinstance(stack.app.app.app, RouteNamedServerSpan)
    assert stack.app.untraced is stack.app.app.app.app  # the app the namer wraps
