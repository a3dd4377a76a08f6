"""What leaves a process as spans (ADR 0031): the sampler chosen by ``OTEL_TRACES_SAMPLER``
(parent-based ratio when unset) and an exporter that scrubs every span before OTLP sees it.

Scrubbing is the last word on what a span may carry, whatever an instrumentation records or
an operator turns on (``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*``):

- no header but ``X-Request-Id`` (so no ``Authorization``, cookies or API keys);
- no query string (presigned URLs and tokens ride in them) and, on a server span, the route
  template instead of the path, in the URL too (``/api/v1/downloads/{token}``: the token
  is the path);
- no attribute whose name says credential, and no value that looks like a bearer token.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, _get_from_env_or_default
from opentelemetry.trace import SpanKind

from armillary.kit.tracing import REQUEST_ID
from armillary.kit.tracing_sampling import EdgeRatio

_KEEP_HEADERS = frozenset({"x-request-id", "x_request_id"})
_SECRET_NAME = re.compile(r"authorization|cookie|token|password|secret|api[-_.]?key", re.I)
_SECRET_VALUE = re.compile(r"\b(bearer|basic)\s+\S+", re.I)
_URLS = ("http.url", "url.full")
_PATHS = ("http.target", "url.path")
_DROPPED = frozenset({"url.query", "http.request.body", "http.response.body"})


def root_ratio(environ: Mapping[str, str] = os.environ) -> float | None:
    """The root ratio of a parent-based sampler the variables choose: the default (ratio
    ``OTEL_TRACES_SAMPLER_ARG``, 1.0 when unset) or a ``parentbased_*`` name. None for any
    other sampler: then decisions are the SDK's alone (:mod:`.tracing_sampling` stays out)."""
    name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_traceidratio").lower()
    fixed = {"parentbased_always_on": 1.0, "parentbased_always_off": 0.0}
    if name in fixed:
        return fixed[name]
    if name != "parentbased_traceidratio":
        return None
    try:
        ratio = float(environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
    except ValueError:
        ratio = 1.0
    return min(max(ratio, 0.0), 1.0)


def sampler_from_env(environ: Mapping[str, str] = os.environ) -> Sampler:
    """Parent-based with :class:`~.tracing_sampling.EdgeRatio` at the root when the variables
    choose a parent-based sampler (the default: ratio ``OTEL_TRACES_SAMPLER_ARG``, 1.0 when
    unset), so a sampled caller's trace is always followed; any other ``OTEL_TRACES_SAMPLER``
    as the SDK builds it."""
    ratio = root_ratio(environ)
    if ratio is None:
        return _get_from_env_or_default()
    return ParentBased(EdgeRatio(ratio))


def _strip_query(value: str) -> str:
    return value.split("?", 1)[0].split("#", 1)[0]


@lru_cache(maxsize=1024)
def _rule(key: str) -> str:
    """What scrubbing does with an attribute of this name: drop, url, path or keep. Few
    names recur in every span, so the regex runs once per name, not once per span."""
    name = key.lower()
    if name.startswith(("http.request.header.", "http.response.header.")):
        return "keep" if name.rsplit(".", 1)[-1] in _KEEP_HEADERS else "drop"
    if name in _DROPPED or (_SECRET_NAME.search(name) and key != REQUEST_ID):
        return "drop"
    return "url" if name in _URLS else "path" if name in _PATHS else "keep"


def _may_hold_credential(value: str) -> bool:
    """False only when ``_SECRET_VALUE`` cannot match: an ASCII string without either word
    (case-insensitive matching can pair other characters with ASCII letters)."""
    if not value.isascii():
        return True
    lowered = value.lower()
    return "bearer" in lowered or "basic" in lowered


def scrub_attributes(attributes: Mapping[str, Any] | None, *, server: bool) -> dict[str, Any]:
    """The attributes a span may export (see the module doc)."""
    if not attributes:
        return {}
    route = attributes.get("http.route")
    kept: dict[str, Any] = {}
    for key, value in attributes.items():
        rule = _rule(key)
        if rule == "drop":
            continue
        if isinstance(value, str):
            if rule == "url":
                value = _strip_query(value)
                if server and route:
                    parts = urlsplit(value)
                    value = urlunsplit((parts.scheme, parts.netloc, str(route), "", ""))
            elif rule == "path":
                value = str(route) if server and route else _strip_query(value)
            if _may_hold_credential(value):
                value = _SECRET_VALUE.sub(r"\1 [redacted]", value)
        kept[key] = value
    return kept


def scrubbed(span: ReadableSpan) -> ReadableSpan:
    server = span.kind == SpanKind.SERVER
    events = [
        type(event)(event.name, scrub_attributes(event.attributes, server=server), event.timestamp)
        for event in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=scrub_attributes(span.attributes, server=server),
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class ScrubbingExporter(SpanExporter):
    """Hands ``inner`` scrubbed copies of the spans."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([scrubbed(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
