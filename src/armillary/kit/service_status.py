"""``GET /api/v1/system/services/<service>``: a service's requests, errors and latency, from
the metrics of the process that answers (admins only).

Every service mounts one for itself, so the gateway routes each to its own service. In the
one-process shape all of them read the one process's counters (by their ``service`` label);
in the distributed shape, each is answered by one process of its service, which says which
(``instance``) and since when (``uptime_seconds``). Fleet-wide figures are Prometheus'."""

from __future__ import annotations

import math
import socket
import time
from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from armillary.kit.authz import Principal, require_platform_role
from armillary.kit.metrics import LATENCY, REQUESTS

# Close enough to the process's start: the kit is imported before any app is built.
_STARTED = time.time()
_QUANTILES = (0.5, 0.95, 0.99)
ROUTES_SHOWN = 10
ROUTES_MAX = 500

Admin = Annotated[Principal, Depends(require_platform_role())]


def service_status_router(service: str) -> APIRouter:
    router = APIRouter(tags=["system"])

    @router.get(f"/api/v1/system/services/{service}", name=f"{service}.system.service")
    async def service_status(
        _admin: Admin,
        routes: Annotated[
            int,
            Query(ge=0, le=ROUTES_MAX, description="Routes listed, most server errors first"),
        ] = ROUTES_SHOWN,
    ) -> dict[str, Any]:
        return summary(service, routes)

    return router


def summary(service: str, routes_shown: int = ROUTES_SHOWN) -> dict[str, Any]:
    """The service's counters in this process: totals, the ``routes_shown`` routes with the
    most server errors, then client errors, then requests, and latency quantiles."""
    per_route: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"requests": 0, "client_errors": 0, "server_errors": 0}
    )
    for (owner, method, route, status), child in _children(REQUESTS):
        if owner != service:
            continue
        counts = per_route[(method, route)]
        count = int(child._value.get())
        counts["requests"] += count
        code = int(status)
        counts["client_errors"] += count if 400 <= code < 500 else 0
        counts["server_errors"] += count if code >= 500 else 0
    totals = {
        key: sum(route[key] for route in per_route.values())
        for key in ("requests", "client_errors", "server_errors")
    }
    routes: list[dict[str, Any]] = [
        {"method": m, "route": r, **counts} for (m, r), counts in per_route.items()
    ]
    routes.sort(
        key=lambda route: (
            -route["server_errors"],
            -route["client_errors"],
            -route["requests"],
            route["route"],
        )
    )
    requests = totals["requests"]
    return {
        "service": service,
        "instance": socket.gethostname(),
        "uptime_seconds": round(time.time() - _STARTED, 1),
        **totals,
        "server_error_ratio": round(totals["server_errors"] / requests, 6) if requests else 0.0,
        "latency_seconds": _latency_quantiles(service),
        "routes": routes[:routes_shown],
        "routes_total": len(routes),
    }


def _children(metric: Any) -> list[tuple[tuple[str, ...], Any]]:
    """A labelled metric's children by their label values (RED_LABELS' order). Read from
    prometheus_client's own table rather than ``collect()``, which builds every sample of
    every label set: 35 ms a call with a few hundred label sets, against under 1 ms."""
    with metric._lock:
        return list(metric._metrics.items())


def _latency_quantiles(service: str) -> dict[str, float | None]:
    """Each quantile as the upper bound of the histogram bucket it falls in (what
    Prometheus' ``histogram_quantile`` would interpolate within)."""
    bounds: list[float] = []
    counts: list[float] = []
    for labels, child in _children(LATENCY):
        if labels[0] != service:
            continue
        bounds = list(child._upper_bounds)
        if not counts:
            counts = [0.0] * len(bounds)
        for index, bucket in enumerate(child._buckets):
            counts[index] += bucket.get()
    total = sum(counts)
    found: dict[str, float | None] = {}
    for quantile in _QUANTILES:
        seen, bound = 0.0, None
        for upper, count in zip(bounds, counts, strict=True):
            seen += count
            if total and seen >= quantile * total:
                bound = upper
                break
        found[f"p{round(quantile * 100)}"] = None if bound in (None, math.inf) else bound
    return found
