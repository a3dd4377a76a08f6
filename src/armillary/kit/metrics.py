"""Prometheus metrics for every process: requests, errors and latency by route template."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "armillary_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
ERRORS = Counter(
    "armillary_http_errors_total",
    "HTTP responses with status >= 400",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "armillary_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_PROGRESS = Gauge("armillary_http_requests_in_progress", "HTTP requests being handled")
CACHE_LOOKUPS = Counter("armillary_cache_lookups_total", "Cache lookups", ["cache", "result"])
EVENTS_DELIVERED = Counter(
    "armillary_events_delivered_total", "Events handed to consumers", ["type", "outcome"]
)

# Unmatched paths share one label so that scanners cannot blow up the series count.
UNMATCHED = "<unmatched>"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            IN_PROGRESS.dec()
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            labels = (scope["method"], route, str(status))
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - started)
            if status >= 400:
                ERRORS.labels(*labels).inc()


async def metrics_endpoint(_request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
