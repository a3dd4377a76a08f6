"""What each `armillary serve <service>` process serves: its own service's public routes, its
internal routes (identity and registry), nothing of the other services; and a service that
calls others' internal routes does not start without its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from tests.conftest import make_settings
from tests.security.test_route_inventory import concrete, inventory

from armillary.kit.app_factory import PUBLIC_PATHS
from armillary.kit.service_auth import write_key_pair
from armillary.services import SERVICES, create_service_app, routers_of


def _routes(routers: list[Any]) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_process_serves_its_own_routes_only(service: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    write_key_pair(settings.service_keys_dir(), "serving")
    app = create_service_app(service, settings)
    served = set(inventory(app))
    # Service calls are outside the clients' rate limits; the clients' routes are not.
    limiter = app.state.runtime.limiter
    assert limiter.delegated("/internal/v1/job-tokens")
    assert not limiter.delegated("/api/v1/internal")
    own = _routes(routers_of(service))
    assert own <= served
    for other in SERVICES:
        if other != service:
            foreign = _routes(routers_of(other))
            assert not (foreign - own) & served, other
    internal = {path for _, path in served if path.startswith("/internal")}
    assert bool(internal) == (service in ("identity", "registry"))


@pytest.mark.parametrize("service", ["data", "tracking"])
def test_a_service_process_loads_no_other_service(service: str) -> None:
    # A service's process holds its own code only (issue 18, memory): importing the five
    # others would cost each process tens of MB for as long as it runs.
    others = [s for s in SERVICES if s not in (service, "identity")]
    code = (
        "import sys\n"
        "from armillary.services import service_app\n"
        f"service_app({service!r})\n"
        f"print([s for s in {others!r} if f'armillary.{{s}}.app' in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_workflow_engine_loads_no_other_service() -> None:
    # A distributed worker or scheduler composes the workflows service alone.
    code = (
        "import sys, armillary.engine, armillary.cli.engine\n"
        "print([m for m in sys.modules if m.endswith('.app') and m.startswith('armillary.')])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_serving_needs_its_own_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    with pytest.raises(FileNotFoundError, match="service-keys create serving"):
        create_service_app("serving", settings)
    with pytest.raises(ValueError, match="unknown service"):
        create_service_app("gateway", settings)


@pytest.mark.parametrize("service", SERVICES)
async def test_every_route_of_a_service_process_refuses_an_anonymous_caller(
    service: str, tmp_path: Path
) -> None:
    """As the embedded app's inventory test does, for each service's own app: internal
    routes included (they answer 401 before any routing or body parsing)."""
    settings = make_settings(tmp_path / "home")
    write_key_pair(settings.service_keys_dir(), "serving")
    app = create_service_app(service, settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    failures = []
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for method, template in inventory(app):
            if template in PUBLIC_PATHS:
                continue
            body: dict[str, Any] = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
            response = await client.request(method, concrete(template), **body)
            if response.status_code != 401:
                failures.append(f"{method} {template}: {response.status_code}")
            elif method != "HEAD" and not response.headers["content-type"].startswith(
                "application/problem+json"
            ):
                failures.append(f"{method} {template}: 401 without problem+json")
    assert not failures, failures


@pytest.mark.parametrize(("transport", "alone"), [("rabbitmq", True), ("in_process", False)])
def test_the_engine_processes_build_the_workflows_service_alone_when_distributed(
    transport: str, alone: bool, tmp_path: Path
) -> None:
    """Distributed (events over RabbitMQ, identity elsewhere), a worker or scheduler runs the
    workflows service only; embedded it keeps every service, since the events it commits are
    dispatched to consumers in its own process."""
    from armillary.engine import engine_runtime

    settings = make_settings(
        tmp_path / "home",
        event_transport=transport,
        rabbitmq_url="amqp://guest:guest@127.0.0.1:5672/",
        identity_url="http://127.0.0.1:8101",
    )
    write_key_pair(settings.service_keys_dir(), "workflows")
    for role in ("worker", "scheduler"):
        runtime = engine_runtime(settings, role)
        installed = {"identity", "data", "registry", "serving"} & set(runtime.services)
        assert (installed == set()) is alone, installed
