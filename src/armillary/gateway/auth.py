"""What the gateway checks of a request's credentials: Envoy's jwt_authn against identity's
JWKS, and per-route RBAC for what the JWT filter alone cannot check (ADR 0022)."""

from __future__ import annotations

from typing import Any

from armillary.kit.edge import Access, EdgeRule
from armillary.kit.security import ACCESS_TOKEN_TYPE, PERSONAL_TOKEN_SCOPE, PERSONAL_TOKEN_TYPE

from .settings import GatewaySettings

# Identity again, for the gateway's own key-set fetches (config.jwks_cluster): the services'
# circuit breakers shed clients' requests under load, and must never shed the fetch that
# every token check depends on (two providers, the API's and the console's, fetch at start).
JWKS_CLUSTER = "identity_jwks"

JWT_FILTER = "envoy.filters.http.jwt_authn"
RBAC_FILTER = "envoy.filters.http.rbac"
PROVIDER = "identity"
JWKS_PATH = "/api/v1/auth/jwks"
API_KEY_HEADER = "x-api-key"
JOB_SCOPE = "job"
_T = "type.googleapis.com/envoy.extensions.filters."


def _seconds(value: float) -> str:
    return f"{value:g}s"


def jwt_metadata(*path: str, exact: str) -> dict[str, Any]:
    return {
        "filter": JWT_FILTER,
        "path": [{"key": key} for key in path],
        "value": {"string_match": {"exact": exact}},
    }


def _claim(*path: str, exact: str) -> dict[str, Any]:
    """An RBAC principal: the verified JWT's header or payload field equals ``exact``."""
    return {"sourced_metadata": {"metadata_matcher": jwt_metadata(*path, exact=exact)}}


def rbac_policy(rule: EdgeRule) -> dict[str, Any] | None:
    """The per-route RBAC config of ``rule``: what jwt_authn alone lets through. A refresh
    token is signed by the same key for the same audience, so its ``typ`` is checked here
    (an access token or a personal access token, ADR 0040); then the admin role (which a
    personal access token never carries), and job and personal access tokens on the routes
    that refuse them. None for public routes."""
    if rule.access is Access.PUBLIC:
        return None
    bearer_types = {
        "or_ids": {
            "ids": [
                _claim("jwt_header", "typ", exact=ACCESS_TOKEN_TYPE),
                _claim("jwt_header", "typ", exact=PERSONAL_TOKEN_TYPE),
            ]
        }
    }
    checks: list[dict[str, Any]] = [bearer_types]
    if rule.admin_only:
        checks.append(_claim("jwt_payload", "role", exact="admin"))
    if not rule.job_tokens:
        checks.append({"not_id": _claim("jwt_payload", "scope", exact=JOB_SCOPE)})
        checks.append({"not_id": _claim("jwt_payload", "scope", exact=PERSONAL_TOKEN_SCOPE)})
    principals: list[dict[str, Any]] = [{"and_ids": {"ids": checks}}]
    if rule.access is Access.API_KEY_OR_BEARER:
        # The key itself is checked by the serving service (it owns the keys).
        principals.insert(0, {"header": {"name": API_KEY_HEADER, "present_match": True}})
    return {
        "rbac": {
            "rules": {
                "action": "ALLOW",
                "policies": {"edge": {"permissions": [{"any": True}], "principals": principals}},
            }
        }
    }


def jwt_per_route(rule: EdgeRule) -> dict[str, Any]:
    config: dict[str, Any] = {"@type": _T + "http.jwt_authn.v3.PerRouteConfig"}
    if rule.access is Access.PUBLIC:
        config["disabled"] = True
    else:
        config["requirement_name"] = rule.access.value
    return config


def rbac_per_route(rule: EdgeRule) -> dict[str, Any]:
    config: dict[str, Any] = {"@type": _T + "http.rbac.v3.RBACPerRoute"}
    policy = rbac_policy(rule)
    if policy is not None:
        config.update(policy)
    return config


def jwt_authn(settings: GatewaySettings) -> dict[str, Any]:
    provider = {
        "issuer": settings.jwt_issuer,
        "audiences": [settings.jwt_audience],
        "remote_jwks": {
            "http_uri": {
                "uri": f"{settings.identity_url.rstrip('/')}{JWKS_PATH}",
                "cluster": JWKS_CLUSTER,
                "timeout": "5s",
            },
            "cache_duration": _seconds(settings.gateway_jwks_cache_seconds),
            "async_fetch": {},
            "retry_policy": {"num_retries": 3},
        },
        "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
        # The services verify the token again and read its claims themselves.
        "forward": True,
        "require_expiration": True,
        "clock_skew_seconds": 30,
        "header_in_metadata": "jwt_header",
        "payload_in_metadata": "jwt_payload",
    }
    from . import console

    return {
        "@type": _T + "http.jwt_authn.v3.JwtAuthentication",
        # The console's cookie is a provider of its own, required on its routes only: the
        # API's routes never read a cookie.
        "providers": {PROVIDER: provider, console.PROVIDER: console.cookie_provider(provider)},
        "requirement_map": {
            Access.BEARER.value: {"provider_name": PROVIDER},
            # No token is allowed (an API key may stand in; RBAC checks one is there), a
            # bad one is not.
            Access.API_KEY_OR_BEARER.value: {
                "requires_any": {
                    "requirements": [{"provider_name": PROVIDER}, {"allow_missing": {}}]
                }
            },
            console.REQUIREMENT: console.requirement(),
        },
    }
