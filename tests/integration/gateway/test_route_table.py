"""The gateway's routes come from the services' route tables, and its edge rules agree with
what each service itself demands: a route added to a service is routed with the right rule,
and a test here fails if the two ever differ."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from tests.conftest import Api, auth

from armillary.gateway.auth import JWT_FILTER, RBAC_FILTER, rbac_policy
from armillary.gateway.config import bootstrap
from armillary.gateway.routes import SERVICE_ROUTERS, edge_routes
from armillary.gateway.runner import envoy_command, write_config
from armillary.gateway.settings import GatewaySettings
from armillary.identity import app as identity_app
from armillary.kit.edge import Access, edge_rule
from armillary.kit.http_server import server_options
from armillary.kit.settings import Settings
from armillary.registry import app as registry_app

PARAM = re.compile(r"\{[^}]+\}")


def _service_routes() -> list[tuple[str, APIRoute]]:
    return [
        (service, route)
        for service, routers in SERVICE_ROUTERS.items()
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
    ]


def _envoy_routes() -> dict[str, dict[str, Any]]:
    config = bootstrap(GatewaySettings())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    return {route["name"]: route for route in routes}


def _example(path: str) -> str:
    return PARAM.sub("1", path)


def test_every_service_route_is_routed_with_the_rule_its_dependencies_imply() -> None:
    envoy = _envoy_routes()
    assert len(_service_routes()) > 80
    for service, route in _service_routes():
        rule = edge_rule(route)
        name = f"{service}:{'|'.join(sorted(route.methods))}:{route.path}"
        rendered = envoy[name]
        assert rendered["route"]["cluster"] == service
        assert re.fullmatch(rendered["match"]["safe_regex"]["regex"], _example(route.path))
        jwt = rendered["typed_per_filter_config"][JWT_FILTER]
        rbac = rendered["typed_per_filter_config"][RBAC_FILTER]
        if rule.access is Access.PUBLIC:
            assert jwt.get("disabled") is True, name
            assert "rbac" not in rbac, name
        else:
            assert jwt["requirement_name"] == rule.access.value, name
            assert rbac["rbac"] == rbac_policy(rule)["rbac"], name  # type: ignore[index]


def test_internal_routes_are_never_routed() -> None:
    envoy = _envoy_routes()
    first = next(iter(envoy.values()))
    assert first["match"] == {"prefix": "/internal"}
    assert first["direct_response"]["status"] == 404
    internal = [*identity_app.INTERNAL_ROUTERS, *registry_app.INTERNAL_ROUTERS]
    paths = {route.path for router in internal for route in router.routes}  # type: ignore[attr-defined]
    assert paths
    assert not paths & {route.path for route in edge_routes()}


def test_the_edge_rules_of_the_rest_are_the_expected_ones() -> None:
    rules = {(r.path, m): r.rule for r in edge_routes() for m in r.methods}
    assert rules[("/api/v1/auth/token", "POST")].access is Access.PUBLIC
    assert rules[("/api/v1/auth/jwks", "GET")].access is Access.PUBLIC
    assert rules[("/api/v1/auth/me", "GET")].access is Access.BEARER
    predict = "/api/v1/projects/{project}/deployments/{deployment}/predict"
    assert rules[(predict, "POST")].access is Access.API_KEY_OR_BEARER
    assert rules[("/v2/models/{name}/infer", "POST")].access is Access.API_KEY_OR_BEARER
    for path in ("/api/v1/users", "/api/v1/users/{user_id}", "/api/v1/audit"):
        assert rules[(path, "GET")].admin_only
    assert not rules[("/api/v1/projects", "GET")].admin_only
    # Job tokens: the routes a task calls, not the account's.
    assert rules[("/api/v1/jobs/{job_id}", "GET")].job_tokens
    assert rules[("/api/v1/jobs/{job_id}/tasks/{task}/progress", "PUT")].job_tokens
    datasets = "/api/v1/projects/{project}/datasets/{dataset}/versions"
    assert rules[(datasets, "POST")].job_tokens
    assert not rules[("/api/v1/auth/me", "GET")].job_tokens
    assert not rules[("/api/v1/auth/password", "POST")].job_tokens
    assert not rules[(predict, "POST")].job_tokens


# Routes that check a credential of their own that Envoy cannot verify: Alertmanager's
# shared bearer secret (ARMILLARY_WORKFLOWS_ALERTMANAGER_TOKEN, ADR 0033).
OWN_SECRET = {("POST", "/api/v1/alerts/alertmanager")}


async def test_the_services_demand_what_the_edge_checks(api: Api) -> None:
    """Without credentials a service answers 401 on every route the edge guards, and not on
    a public one; with a non-admin's token, 403 on every admin-only route."""
    admin = await api.admin_token()
    scientist = await api.create_user(admin, "data_scientist")
    for route in edge_routes():
        for method in sorted(route.methods):
            path = _example(route.path)
            anonymous = await api.client.request(method, path)
            if (method, route.path) in OWN_SECRET:
                # Public at the edge (its credential is no JWT), refused by the service.
                assert route.rule.access is Access.PUBLIC, route
                assert anonymous.status_code == 401, (method, route.path, anonymous.text)
                continue
            if route.rule.access is Access.PUBLIC:
                assert anonymous.status_code != 401, (method, route.path, anonymous.text)
                continue
            assert anonymous.status_code == 401, (method, route.path, anonymous.text)
            if route.rule.admin_only:
                refused = await api.client.request(method, path, headers=auth(scientist["token"]))
                assert refused.status_code == 403, (method, route.path, refused.text)
            if route.rule.access is Access.API_KEY_OR_BEARER:
                keyed = await api.client.request(method, path, headers={"X-API-Key": "ak_bogus"})
                assert keyed.status_code == 401, (method, route.path, keyed.text)
                assert "API key" in keyed.json()["detail"]


def test_envoy_validates_the_rendered_configuration(tmp_path: Path) -> None:
    settings = GatewaySettings(
        identity_url="https://identity.internal:8443",
        serving_url="http://serving.internal:8105",
    )
    config = write_config(settings, tmp_path / "envoy.yaml")
    result = subprocess.run(
        envoy_command(settings, config, validate=True),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_admin_binds_loopback_and_stats_has_its_own_listener() -> None:
    settings = GatewaySettings(host="0.0.0.0", gateway_stats_host="0.0.0.0")  # noqa: S104
    config = bootstrap(settings)
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    listeners = {item["name"]: item for item in config["static_resources"]["listeners"]}
    stats = listeners["stats"]
    assert stats["address"]["socket_address"]["port_value"] == settings.gateway_stats_port
    assert settings.gateway_stats_port != settings.gateway_admin_port
    assert listeners["public"]["address"]["socket_address"]["port_value"] == settings.port


@pytest.mark.parametrize("service", sorted(SERVICE_ROUTERS))
def test_each_cluster_breaks_circuits_and_fails_fast(service: str) -> None:
    config = bootstrap(GatewaySettings())
    clusters = {item["name"]: item for item in config["static_resources"]["clusters"]}
    cluster = clusters[service]
    assert cluster["outlier_detection"]["consecutive_5xx"] >= 1
    assert cluster["outlier_detection"]["max_ejection_percent"] == 100
    assert cluster["common_lb_config"]["healthy_panic_threshold"]["value"] == 0
    thresholds = cluster["circuit_breakers"]["thresholds"][0]
    assert thresholds["max_pending_requests"] >= 1
    assert thresholds["retry_budget"]["budget_percent"]["value"] > 0


@pytest.mark.parametrize("service", sorted(SERVICE_ROUTERS))
def test_the_gateway_closes_idle_upstream_connections_before_the_service_does(
    service: str,
) -> None:
    """Otherwise the service may close a pooled connection just as the gateway reuses it,
    and a good request comes back as a reset."""
    config = bootstrap(GatewaySettings())
    clusters = {item["name"]: item for item in config["static_resources"]["clusters"]}
    options = clusters[service]["typed_extension_protocol_options"]
    [protocol] = options.values()
    idle = float(protocol["common_http_protocol_options"]["idle_timeout"].rstrip("s"))
    keep_alive = server_options(Settings())["timeout_keep_alive"]
    assert 0 < idle < keep_alive


def test_render_only_prints_the_configuration() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "armillary.cli", "gateway", "--render-only"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "ARMILLARY_PORT": "8443"},
    )
    assert result.returncode == 0, result.stderr
    assert "envoy.filters.http.jwt_authn" in result.stdout
    assert "port_value: 8443" in result.stdout


def test_envoy_runs_as_many_worker_threads_as_configured(tmp_path: Path) -> None:
    config = tmp_path / "envoy.yaml"
    # Unset: Envoy's own default, one worker per core.
    assert "--concurrency" not in envoy_command(GatewaySettings(), config)
    command = envoy_command(GatewaySettings(gateway_concurrency=1), config)
    assert command[command.index("--concurrency") + 1] == "1"
