"""Prometheus metrics for every process: requests, errors and latency by service and route
template (RED), breakers, events and the object store.

They are scraped from a listener of their own (:func:`serve_metrics`, 127.0.0.1 by default),
never from the public API port: their labels name every project's deployments.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client import start_http_server as _start_http_server
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from armillary.kit.settings import SERVICE_PORTS

# `service` is the service that owns the route (identity, data, workflows, registry,
# serving), the same in the one-process shape as in a process of its own; routes of no
# service (/healthz, unmatched paths) carry the process's.
RED_LABELS = ["service", "method", "route", "status"]
REQUESTS = Counter("armillary_http_requests_total", "HTTP requests handled", RED_LABELS)
ERRORS = Counter("armillary_http_errors_total", "HTTP responses with status >= 400", RED_LABELS)
LATENCY = Histogram(
    "armillary_http_request_duration_seconds",
    "Time to answer an HTTP request",
    RED_LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_PROGRESS = Gauge("armillary_http_requests_in_progress", "HTTP requests being handled")
CACHE_LOOKUPS = Counter("armillary_cache_lookups_total", "Cache lookups", ["cache", "result"])
SERVICE_CIRCUIT_OPEN = Gauge(
    "armillary_service_circuit_open",
    "1 while calls to an upstream service fail fast (its circuit breaker is open), else 0",
    ["service"],
)
SERVICE_CALL_FAILURES = Counter(
    "armillary_service_call_failures_total",
    "Calls to an upstream service that failed (connection, timeout, 502/503/504)",
    ["service"],
)
CACHE_UNAVAILABLE = Counter(
    "armillary_cache_unavailable_total",
    "Cache calls that found Redis unreachable (served from the source of truth instead)",
    ["operation"],
)
EVENTS_DELIVERED = Counter(
    "armillary_events_delivered_total", "Events handed to consumers", ["type", "outcome"]
)
# Events over RabbitMQ (kit.broker, ADR 0020).
EVENTS_PUBLISHED = Counter(
    "armillary_events_published_total", "Events the broker confirmed", ["type"]
)
OUTBOX_LAG = Gauge(
    "armillary_outbox_lag_seconds", "Age of the oldest committed event not yet published"
)
EVENT_CONSUMER_LAG = Gauge(
    "armillary_event_consumer_lag_messages", "Messages ready in a consumer's queue", ["consumer"]
)
EVENT_DEAD_LETTERS = Gauge(
    "armillary_event_dead_letters", "Messages waiting in the dead-letter queue"
)
# Registered by the first local object store of the process (watch_object_store_disk): a
# process on S3 exports no such series, rather than a misleading 0.
OBJECT_STORE_FREE_RATIO = Gauge(
    "armillary_object_store_free_ratio",
    "Share of the local object store's file system still free (absent for S3)",
    registry=None,
)
_object_store_lock = threading.Lock()
_object_store_registered: list[bool] = []
EVENTS_RETRIED = Counter(
    "armillary_events_retried_total",
    "Failed deliveries sent to a delay queue or, past the ladder, to the dead letters",
    ["consumer", "outcome"],
)

# Unmatched paths share one label so that scanners cannot blow up the series count.
UNMATCHED = "<unmatched>"


SERVICES = frozenset(SERVICE_PORTS)


def route_service(route: object, default: str) -> str:
    """The service whose package defines the route's endpoint (``armillary.<service>.…``),
    else ``default`` (the process's own)."""
    module = getattr(getattr(route, "endpoint", None), "__module__", "") or ""
    parts = module.split(".", 2)
    if len(parts) > 1 and parts[0] == "armillary" and parts[1] in SERVICES:
        return parts[1]
    return default


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, service: str = "platform") -> None:
        self.app = app
        self.service = service

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
            matched = scope.get("route")
            route = getattr(matched, "path", None) or UNMATCHED
            service = route_service(matched, self.service)
            labels = (service, scope["method"], route, str(status))
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - started)
            if status >= 400:
                ERRORS.labels(*labels).inc()


def watch_object_store_disk(root: Path) -> None:
    """Export the free share of the file system under ``root``, read at each scrape."""

    def free_ratio() -> float:
        try:
            usage = shutil.disk_usage(root)
        except OSError:
            return math.nan
        return usage.free / usage.total if usage.total else math.nan

    OBJECT_STORE_FREE_RATIO.set_function(free_ratio)
    with _object_store_lock:
        if not _object_store_registered:
            REGISTRY.register(OBJECT_STORE_FREE_RATIO)
            _object_store_registered.append(True)


def serve_metrics(host: str, port: int) -> WSGIServer | None:
    """Serve ``/metrics`` of this process on ``host:port`` (a daemon thread) and return the
    listener. Returns None, logged, when the port is taken: the platform runs on without its
    metrics."""
    try:
        server, _thread = _start_http_server(port, addr=host)
    except OSError as exc:
        structlog.get_logger(__name__).error(
            "metrics.listener_failed", host=host, port=port, error=exc.strerror
        )
        return None
    structlog.get_logger(__name__).info("metrics.listening", host=host, port=port)
    return server
