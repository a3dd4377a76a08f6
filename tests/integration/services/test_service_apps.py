"""What each `armillary serve <service>` process serves: its own service's public routes, its
internal routes (identity and registry), nothing of the other services; and a service that
calls others' internal routes does not start without its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from tests.conftest import make_settings
from tests.security.test_route_inventory import inventory

from armillary.kit.service_auth import write_key_pair
from armillary.services import _INTERNAL_ROUTERS, _PUBLIC_ROUTERS, SERVICES, create_service_app


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
    served = set(inventory(create_service_app(service, settings)))
    own = _routes(_PUBLIC_ROUTERS[service]) | _routes(_INTERNAL_ROUTERS.get(service, []))
    assert own <= served
    for other in SERVICES:
        if other != service:
            foreign = _routes(_PUBLIC_ROUTERS[other]) | _routes(_INTERNAL_ROUTERS.get(other, []))
            assert not (foreign - own) & served, other
    internal = {path for _, path in served if path.startswith("/internal")}
    assert bool(internal) == (service in ("identity", "registry"))


def test_serving_needs_its_own_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    with pytest.raises(FileNotFoundError, match="service-keys create serving"):
        create_service_app("serving", settings)
    with pytest.raises(ValueError, match="unknown service"):
        create_service_app("gateway", settings)
