"""The gateway's route table, read from the services' own (each ``<service>.app.ROUTERS``):
adding a route to a service routes it, with the edge rule its dependencies imply."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute

from armillary.data import app as data_app
from armillary.identity import app as identity_app
from armillary.kit.edge import EdgeRule, edge_rule
from armillary.registry import app as registry_app
from armillary.serving import app as serving_app
from armillary.tracking import app as tracking_app
from armillary.workflows import app as workflows_app

# In the order the embedded app mounts them: the first match wins in both.
SERVICE_ROUTERS: dict[str, list[APIRouter]] = {
    "identity": identity_app.ROUTERS,
    "data": data_app.ROUTERS,
    "workflows": workflows_app.ROUTERS,
    "registry": registry_app.ROUTERS,
    "serving": serving_app.ROUTERS,
    "tracking": tracking_app.ROUTERS,
}
# Never routed, whatever a service's routers hold: service-to-service calls only.
INTERNAL_PREFIX = "/internal"
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")


@dataclass(frozen=True)
class EdgeRoute:
    service: str
    path: str  # the FastAPI path template
    methods: frozenset[str]
    rule: EdgeRule
    # Uploads, downloads, log follow: no whole-request timeout, only an idle one.
    streaming: bool

    @property
    def regex(self) -> str:
        """RE2 for Envoy's ``safe_regex`` (a full match on the path without its query), as
        Starlette matches the template: a parameter is one path segment."""
        parts: list[str] = []
        last = 0
        for match in _PARAM.finditer(self.path):
            parts.append(re.escape(self.path[last : match.start()]))
            parts.append(".+" if match.group(2) else "[^/]+")
            last = match.end()
        parts.append(re.escape(self.path[last:]))
        return "".join(parts)

    @property
    def name(self) -> str:
        return f"{self.service}:{'|'.join(sorted(self.methods))}:{self.path}"


def _streaming(route: APIRoute) -> bool:
    response = route.response_class
    response_class = getattr(response, "value", response)
    if isinstance(response_class, type) and issubclass(response_class, StreamingResponse):
        return True
    # A write whose body is read by the route itself (multipart or raw), not parsed JSON.
    return route.body_field is None and bool((route.methods or set()) & {"POST", "PUT"})


def edge_routes(routers: dict[str, list[APIRouter]] | None = None) -> list[EdgeRoute]:
    """Every public route of every service, in matching order."""
    table: list[EdgeRoute] = []
    for service, service_routers in (routers or SERVICE_ROUTERS).items():
        for router in service_routers:
            for route in router.routes:
                if not isinstance(route, APIRoute) or route.path.startswith(INTERNAL_PREFIX):
                    continue
                table.append(
                    EdgeRoute(
                        service=service,
                        path=route.path,
                        methods=frozenset(route.methods or ()),
                        rule=edge_rule(route),
                        streaming=_streaming(route),
                    )
                )
    return table
