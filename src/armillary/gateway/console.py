"""The console's routes at the edge (issue 19, ADR 0038): ``/`` (exact) and the ``/ui``
prefix go to the console's process, and nothing else does, so the gateway's own 404s stay
its own. On those routes alone the token is read from the console's session cookie; the
JSON API's routes read the ``Authorization`` header only, so a cookie alone there is a 401.

Signed-out pages (sign-in, sign-out, the assets, ``/``) pass without a token. Elsewhere
under ``/ui`` a missing cookie passes too (the console answers with its sign-in redirect,
keeping ``next``); a cookie whose token fails verification (forged, expired, another
audience) is refused at the edge and the browser is sent to sign-in."""

from __future__ import annotations

from typing import Any

from .auth import JWT_FILTER, RBAC_FILTER
from .settings import GatewaySettings

CLUSTER = "console"
PROVIDER = "console_cookie"
REQUIREMENT = "console"
# The console's cookie holding the user's access token (console.session.SESSION_COOKIE;
# the gateway imports nothing of the console, the route test checks the two agree).
SESSION_COOKIE = "armillary_session"
UI = "/ui"
LOGIN = f"{UI}/login"
_T = "type.googleapis.com/envoy.extensions.filters."

# Path matches that need no session: (name, Envoy route match).
SIGNED_OUT: list[tuple[str, dict[str, Any]]] = [
    ("console:root", {"path": "/"}),
    ("console:login", {"path": LOGIN}),
    # Sign-out revokes the refresh token even once the access token has expired; the
    # console checks its CSRF token.
    ("console:logout", {"path": f"{UI}/logout"}),
    ("console:static", {"prefix": f"{UI}/static/"}),
]
# Uploads and downloads the console streams between the browser and the API: like the API's
# own streaming routes, no whole-request limit, only the idle one.
_SEGMENT = "[^/]+"
STREAMING: list[tuple[str, dict[str, Any]]] = [
    (
        "console:dataset-upload",
        {"safe_regex": {"regex": f"/ui/projects/{_SEGMENT}/datasets/{_SEGMENT}/versions"}},
    ),
    (
        "console:dataset-download",
        {
            "safe_regex": {
                "regex": f"/ui/projects/{_SEGMENT}/datasets/{_SEGMENT}/versions/{_SEGMENT}/download"
            }
        },
    ),
    (
        "console:artifact-download",
        {
            "safe_regex": {
                "regex": f"/ui/projects/{_SEGMENT}/jobs/{_SEGMENT}/tasks/{_SEGMENT}/artifacts/.+"
            }
        },
    ),
]
SIGNED_IN: list[tuple[str, dict[str, Any]]] = [
    *STREAMING,
    ("console:ui", {"path": UI}),
    ("console:pages", {"prefix": f"{UI}/"}),
]


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _route(name: str, match: dict[str, Any], settings: GatewaySettings, *, public: bool) -> Any:
    jwt: dict[str, Any] = {"@type": _T + "http.jwt_authn.v3.PerRouteConfig"}
    if public:
        jwt["disabled"] = True
    else:
        jwt["requirement_name"] = REQUIREMENT
    action: dict[str, Any] = {
        "cluster": CLUSTER,
        "retry_policy": {"retry_on": "connect-failure,refused-stream", "num_retries": 1},
    }
    if (name, match) in STREAMING:
        action["timeout"] = "0s"
        action["idle_timeout"] = _seconds(settings.gateway_stream_idle_timeout_seconds)
    else:
        action["timeout"] = _seconds(settings.gateway_route_timeout_seconds)
    return {
        "name": name,
        "match": match,
        "route": action,
        "typed_per_filter_config": {
            JWT_FILTER: jwt,
            # No role check at the edge: every page's API calls are checked by the API.
            RBAC_FILTER: {"@type": _T + "http.rbac.v3.RBACPerRoute"},
        },
    }


def console_routes(settings: GatewaySettings) -> list[dict[str, Any]]:
    """The console's routes, signed-out ones first (more specific than the prefix)."""
    return [
        *(_route(name, match, settings, public=True) for name, match in SIGNED_OUT),
        *(_route(name, match, settings, public=False) for name, match in SIGNED_IN),
    ]


def cookie_provider(identity_provider: dict[str, Any]) -> dict[str, Any]:
    """The identity provider's checks (issuer, audience, keys, expiry), with the token read
    from the session cookie only: naming a location turns off the default ones (the
    ``Authorization`` header and the ``access_token`` parameter)."""
    provider = {k: v for k, v in identity_provider.items() if k != "from_headers"}
    provider["from_cookies"] = [SESSION_COOKIE]
    # The console reads its cookie itself; nothing to forward in a header.
    provider["forward"] = True
    return provider


def requirement(provider_name: str = PROVIDER) -> dict[str, Any]:
    """A valid cookie, or none (the console then redirects to sign-in); not a bad one."""
    return {
        "requires_any": {"requirements": [{"provider_name": provider_name}, {"allow_missing": {}}]}
    }


def _header(name: str, value: str, action: str = "OVERWRITE_IF_EXISTS_OR_ADD") -> dict[str, Any]:
    return {"header": {"key": name, "value": value}, "append_action": action}


def _refused_on_console() -> dict[str, Any]:
    """The edge refused a console page's cookie: 401, or 403 for a token of another audience
    (there is no RBAC on these routes)."""
    refused = {
        "or_filter": {
            "filters": [
                {
                    "status_code_filter": {
                        "comparison": {
                            "op": "EQ",
                            "value": {"default_value": status, "runtime_key": f"console.{status}"},
                        }
                    }
                }
                for status in (401, 403)
            ]
        }
    }
    on_console = {
        "header_filter": {
            "header": {
                "name": ":path",
                "string_match": {"safe_regex": {"regex": r"^/ui(/.*)?(\?.*)?$"}},
            }
        }
    }
    return {"and_filter": {"filters": [refused, on_console]}}


def sign_in_again() -> list[dict[str, Any]]:
    """Local-reply mappers: a console page whose cookie the edge refused sends the browser
    to sign-in (and drops the cookie) instead of answering a JSON problem. A live fragment's
    request (htmx) gets ``HX-Redirect``, so the whole tab goes there, as the console itself
    does when the API refuses a token."""
    common = [
        _header("Cache-Control", "no-store"),
        _header(
            "Set-Cookie",
            f"{SESSION_COOKIE}=; Max-Age=0; Path={UI}; HttpOnly; SameSite=Strict",
            "APPEND_IF_EXISTS_OR_ADD",
        ),
    ]
    body = {
        "text_format_source": {"inline_string": f"Sign in again: {LOGIN}\n"},
        "content_type": "text/plain; charset=utf-8",
    }
    from_htmx = {
        "header_filter": {
            "header": {"name": "hx-request", "string_match": {"exact": "true"}},
        }
    }
    fragment = {
        "filter": {"and_filter": {"filters": [_refused_on_console(), from_htmx]}},
        "status_code": 200,
        "headers_to_add": [_header("HX-Redirect", LOGIN), *common],
        "body_format_override": body,
    }
    page = {
        "filter": _refused_on_console(),
        "status_code": 303,
        "headers_to_add": [_header("Location", LOGIN), *common],
        "body_format_override": body,
    }
    return [fragment, page]
