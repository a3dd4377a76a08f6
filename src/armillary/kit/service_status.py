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

from fastapi import APIRouter, Depends

from armillary.kit.authz import Principal, require_platform_role
from armillary.kit.metrics import LATENCY, REQUESTS

# Close enough to the process's start: the kit is imported before any app is built.
_STARTED = time.time()
_QUANTILES = (0.5, 0.95, 0.99)
ROUTES_SHOWN = 10

Admin = Annotated[Principal, Depends(require_platform_role())]


def service_status_router(service: str) -> APIRouter:
    router = APIRouter(tags=["system"])

    @router.get(f"/api/v1/system/services/{service}", name=f"{service}.system.service")
    async def service_status(_admin: Admin) -> dict[str, Any]:
        return summary(service)

    return router


def summary(service: str) -> dict[str, Any]:
    """The service's counters in this process: totals, per route, and latency quantiles."""
    per_route: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"requests": 0, "client_errors": 0, "server_errors": 0}
    )
    for family in REQUESTS.collect():
        for sample in family.samples:
            labels = sample.labels
            if not sample.name.endswith("_total") or labels.get("service") != service:
                continue
            counts = per_route[(labels["method"], labels["route"])]
            count = int(sample.value)
            counts["requests"] += count
            status = int(labels["status"])
            counts["client_errors"] += count if 400 <= status < 500 else 0
            counts["server_errors"] += count if status >= 500 else 0
    totals = {
        key: sum(route[key] for route in per_route.values())
        for key in ("requests", "client_errors", "server_errors")
    }
    routes: list[dict[str, Any]] = [
        {"method": m, "route": r, **counts} for (m, r), counts in per_route.items()
    ]
    routes.sort(key=lambda route: (-route["server_errors"], -route["requests"], route["route"]))
    requests = totals["requests"]
    return {
        "service": service,
        "instance": socket.gethostname(),
        "uptime_seconds": round(time.time() - _STARTED, 1),
        **totals,
        "server_error_ratio": round(totals["server_errors"] / requests, 6) if requests else 0.0,
        "latency_seconds": _latency_quantiles(service),
        "routes": routes[:ROUTES_SHOWN],
    }


def _latency_quantiles(service: str) -> dict[str, float | None]:
    """Each quantile as the upper bound of the histogram bucket it falls in (what
    Prometheus' ``histogram_quantile`` would interpolate within)."""
    cumulative: dict[float, float] = defaultdict(float)
    for family in LATENCY.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("service") == service:
                cumulative[float(sample.labels["le"])] += sample.value
    bounds = sorted(cumulative)
    total = cumulative.get(math.inf, 0.0)
    found: dict[str, float | None] = {}
    for quantile in _QUANTILES:
        bound = next((b for b in bounds if total and cumulative[b] >= quantile * total), None)
        found[f"p{round(quantile * 100)}"] = None if bound in (None, math.inf) else bound
    return found
