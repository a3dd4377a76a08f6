"""Renders Envoy's v3 bootstrap (static resources) from the services' route tables.

One listener for clients, routed by path to each service's cluster, with JWT checks
(jwt_authn against identity's JWKS) and per-route RBAC for what the JWT filter cannot check
(``typ``, ``role``, job tokens); one listener for Prometheus; the admin interface on
127.0.0.1 only. See docs/adr/0022-envoy-gateway.md.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import yaml

from armillary.kit.edge import Access, EdgeRule

from . import console, tls
from .auth import JWKS_CLUSTER, JWT_FILTER, RBAC_FILTER, jwt_authn, jwt_per_route, rbac_per_route
from .replies import local_reply_config
from .routes import IDEMPOTENT, INTERNAL_PREFIX, EdgeRoute, edge_routes
from .settings import UPSTREAMS, GatewaySettings

__all__ = ["JWT_FILTER", "RBAC_FILTER", "bootstrap", "render"]

_T = "type.googleapis.com/envoy.extensions.filters."


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _retry_policy(route: EdgeRoute, settings: GatewaySettings) -> dict[str, Any]:
    if route.methods <= IDEMPOTENT and not route.streaming:
        return {
            "retry_on": "connect-failure,refused-stream,reset,gateway-error",
            "num_retries": 2,
            "per_try_timeout": _seconds(settings.gateway_route_timeout_seconds / 2),
            "retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"},
        }
    # Anything else is retried only when it provably never reached the service.
    return {"retry_on": "connect-failure,refused-stream", "num_retries": 1}


def _method_match(methods: frozenset[str]) -> list[dict[str, Any]]:
    pattern = "|".join(sorted(methods | ({"HEAD"} if "GET" in methods else set())))
    return [{"name": ":method", "string_match": {"safe_regex": {"regex": f"^({pattern})$"}}}]


def envoy_route(route: EdgeRoute, settings: GatewaySettings, *, any_method: bool) -> dict[str, Any]:
    match: dict[str, Any] = {"safe_regex": {"regex": route.regex}}
    if not any_method:
        match["headers"] = _method_match(route.methods)
    action: dict[str, Any] = {
        "cluster": route.service,
        "retry_policy": _retry_policy(route, settings),
    }
    if route.streaming:
        # Uploads, downloads and log follow: no whole-request limit, only the idle one.
        action["timeout"] = "0s"
        action["idle_timeout"] = _seconds(settings.gateway_stream_idle_timeout_seconds)
    else:
        action["timeout"] = _seconds(settings.gateway_route_timeout_seconds)
    return {
        "name": route.name if not any_method else f"{route.service}:*:{route.path}",
        "match": match,
        "route": action,
        "typed_per_filter_config": {
            JWT_FILTER: jwt_per_route(route.rule),
            RBAC_FILTER: rbac_per_route(route.rule),
        },
    }


def _not_found(name: str, prefix: str) -> dict[str, Any]:
    return {
        "name": name,
        "match": {"prefix": prefix},
        "direct_response": {"status": 404},
        "typed_per_filter_config": {
            JWT_FILTER: {"@type": _T + "http.jwt_authn.v3.PerRouteConfig", "disabled": True},
            RBAC_FILTER: {"@type": _T + "http.rbac.v3.RBACPerRoute"},
        },
    }


def virtual_host(settings: GatewaySettings, table: list[EdgeRoute]) -> dict[str, Any]:
    """The console's routes (``/`` and ``/ui`` only), then the services' in their matching
    order. A path whose method is not listed falls
    through, as in Starlette, to later routes, then to a bearer route on the same path (the
    service answers 405)."""
    routes: list[dict[str, Any]] = [_not_found("internal", INTERNAL_PREFIX)]
    routes += console.console_routes(settings)
    routes += [envoy_route(route, settings, any_method=False) for route in table]
    seen: set[str] = set()
    for route in table:
        if route.path in seen:
            continue
        seen.add(route.path)
        fallback = EdgeRoute(
            route.service, route.path, route.methods, EdgeRule(Access.BEARER), False
        )
        routes.append(envoy_route(fallback, settings, any_method=True))
    return {"name": "armillary", "domains": ["*"], "routes": routes}


def http_connection_manager(settings: GatewaySettings, table: list[EdgeRoute]) -> dict[str, Any]:
    manager: dict[str, Any] = {
        "@type": _T + "network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",
        # X-Forwarded-For is the gateway's: it appends the peer; services trust the header
        # only from the gateway's address (ARMILLARY_TRUSTED_PROXIES).
        "use_remote_address": True,
        "xff_num_trusted_hops": 0,
        "skip_xff_append": False,
        "generate_request_id": True,
        "preserve_external_request_id": True,
        "always_set_request_id_in_response": True,
        # A client's id is passed on exactly as sent (Envoy would otherwise pack trace bits
        # into it).
        "request_id_extension": {
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3"
                ".UuidRequestIdConfig",
                "pack_trace_reason": False,
                "use_request_id_for_trace_sampling": True,
            }
        },
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "max_request_headers_kb": settings.gateway_max_request_headers_kb,
        "stream_idle_timeout": _seconds(settings.gateway_stream_idle_timeout_seconds),
        "request_headers_timeout": "10s",
        "server_header_transformation": "PASS_THROUGH",
        "route_config": {
            "name": "armillary",
            "virtual_hosts": [virtual_host(settings, table)],
            # HSTS on every answer, local replies included, when the listener speaks TLS.
            "response_headers_to_add": tls.hsts_headers(settings),
        },
        "local_reply_config": local_reply_config(settings),
        "http_filters": [
            {"name": JWT_FILTER, "typed_config": jwt_authn(settings)},
            {"name": RBAC_FILTER, "typed_config": {"@type": _T + "http.rbac.v3.RBAC"}},
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _T + "http.router.v3.Router"},
            },
        ],
    }
    traces_url = settings.otlp_traces_url()
    if traces_url is not None:
        manager["tracing"] = tracing_config(settings, traces_url)
    return manager


def tracing_config(settings: GatewaySettings, traces_url: str) -> dict[str, Any]:
    """W3C trace context (ADR 0031): a request without `traceparent` gets one, one with it
    keeps its trace id (the gateway's span becomes the parent); sampled spans go over
    OTLP/HTTP to ``traces_url``."""
    return {
        "random_sampling": {"value": settings.trace_sampling_percent()},
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "service_name": "armillary-gateway",
                "http_service": {
                    "http_uri": {"uri": traces_url, "cluster": "otlp", "timeout": "2s"}
                },
            },
        },
    }


def cluster(service: str, settings: GatewaySettings) -> dict[str, Any]:
    url = urlsplit(settings.upstream(service))
    host = url.hostname or "127.0.0.1"
    port = url.port or (443 if url.scheme == "https" else 80)
    config: dict[str, Any] = {
        "name": service,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": _seconds(settings.gateway_connect_timeout_seconds),
        "load_assignment": {
            "cluster_name": service,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(host, port)}}]}],
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "max_connections": settings.gateway_max_connections,
                    "max_pending_requests": settings.gateway_max_pending_requests,
                    "max_requests": settings.gateway_max_requests,
                    "retry_budget": {
                        "budget_percent": {"value": settings.gateway_retry_budget_percent},
                        "min_retry_concurrency": 3,
                    },
                    "track_remaining": True,
                }
            ]
        },
        "outlier_detection": {
            "consecutive_5xx": settings.gateway_consecutive_5xx,
            "consecutive_gateway_failure": settings.gateway_consecutive_5xx,
            "consecutive_local_origin_failure": settings.gateway_consecutive_5xx,
            "split_external_local_origin_errors": True,
            "interval": "1s",
            "base_ejection_time": _seconds(settings.gateway_ejection_seconds),
            "max_ejection_time": _seconds(settings.gateway_ejection_seconds * 10),
            "max_ejection_percent": 100,
            "enforcing_consecutive_5xx": 100,
            "enforcing_consecutive_gateway_failure": 100,
            "enforcing_consecutive_local_origin_failure": 100,
        },
        # No panic routing: with every host ejected, answer 503 at once instead of sending
        # traffic to hosts known to fail.
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
        # The gateway closes idle upstream connections before the service would
        # (ARMILLARY_HTTP_KEEP_ALIVE_SECONDS is longer), so it never sends a request on a
        # connection the service is closing.
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3"
                ".HttpProtocolOptions",
                "common_http_protocol_options": {
                    "idle_timeout": _seconds(settings.gateway_upstream_idle_timeout_seconds)
                },
                "explicit_http_config": {"http_protocol_options": {}},
            }
        },
    }
    if url.scheme == "https":
        config["transport_socket"] = tls.upstream(host, settings)
    return config


def jwks_cluster(settings: GatewaySettings) -> dict[str, Any]:
    """The identity service for the JWKS fetches alone, with Envoy's default circuit
    breakers (1024) instead of the ones that shed clients' load (auth.JWKS_CLUSTER)."""
    config = cluster("identity", settings)
    config["name"] = JWKS_CLUSTER
    config["load_assignment"]["cluster_name"] = JWKS_CLUSTER
    del config["circuit_breakers"]
    return config


def _otlp_cluster(traces_url: str) -> dict[str, Any]:
    url = urlsplit(traces_url)
    host = url.hostname or "127.0.0.1"
    cluster: dict[str, Any] = {
        "name": "otlp",
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "otlp",
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _address(host, url.port or 4318)}}]}
            ],
        },
    }
    if url.scheme == "https":
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
                ".UpstreamTlsContext",
                "sni": host,
            },
        }
    return cluster


def stats_listener(settings: GatewaySettings) -> dict[str, Any]:
    """Prometheus scrapes /stats/prometheus here, and probes read /ready: those two pages of
    the admin interface, and nothing else of it."""
    hcm = {
        "@type": _T + "network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "stats",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "stats",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"path": "/stats/prometheus"},
                            "route": {"cluster": "envoy_admin"},
                        },
                        # For readiness probes: 200 once Envoy is serving.
                        {"match": {"path": "/ready"}, "route": {"cluster": "envoy_admin"}},
                        {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _T + "http.router.v3.Router"},
            }
        ],
    }
    return {
        "name": "stats",
        "address": _address(settings.gateway_stats_host, settings.gateway_stats_port),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


def bootstrap(settings: GatewaySettings, table: list[EdgeRoute] | None = None) -> dict[str, Any]:
    table = edge_routes() if table is None else table
    admin = _address("127.0.0.1", settings.gateway_admin_port)
    traces_url = settings.otlp_traces_url()
    admin_cluster = {
        "name": "envoy_admin",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "envoy_admin",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": admin}}]}],
        },
    }
    chain: dict[str, Any] = {
        "filters": [
            {
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": http_connection_manager(settings, table),
            }
        ]
    }
    downstream_tls = tls.downstream(settings)
    if downstream_tls is not None:
        # HTTPS only: a plain HTTP client fails the handshake and gets no answer.
        chain["transport_socket"] = downstream_tls
    public = {
        "name": "public",
        "address": _address(settings.host, settings.port),
        "per_connection_buffer_limit_bytes": 1 << 20,
        "filter_chains": [chain],
    }
    return {
        "node": {"id": "armillary-gateway", "cluster": "armillary-gateway"},
        # Admin can change Envoy's state (drain, quit): loopback only, never exposed.
        "admin": {"address": admin},
        "static_resources": {
            "listeners": [public, stats_listener(settings)],
            "clusters": [
                *(cluster(s, settings) for s in UPSTREAMS),
                jwks_cluster(settings),
                admin_cluster,
                *([_otlp_cluster(traces_url)] if traces_url else []),
            ],
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors"
                        ".downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": 50_000,
                    },
                }
            ]
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """No anchors and aliases: the file is read by people as well as by Envoy."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(settings: GatewaySettings, table: list[EdgeRoute] | None = None) -> str:
    return yaml.dump(bootstrap(settings, table), Dumper=_PlainDumper, sort_keys=False)
