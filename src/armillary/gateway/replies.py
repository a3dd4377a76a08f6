"""Envoy's own replies as RFC 9457 problem+json, like the services' errors (ADR 0022)."""

from __future__ import annotations

from typing import Any

from armillary.kit.security import ACCESS_TOKEN_TYPE, PERSONAL_TOKEN_TYPE

from . import console
from .auth import jwt_metadata
from .settings import GatewaySettings

# Fixed titles, as the services' own problems use them (kit.problems).
TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    408: "Request timeout",
    413: "Content too large",
    429: "Too many requests",
    431: "Request header fields too large",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}
DETAILS = {
    401: "Send a valid access token",
    403: "Your role does not allow this",
    404: "No such route",
    429: "Too many requests: try again later",
    502: "The service answered with an invalid response",
    503: "The service is unavailable: try again later",
    504: "The service did not answer in time",
}


def _problem(status: int, settings: GatewaySettings) -> dict[str, Any]:
    title = TITLES[status]
    body_format = {
        "json_format": {
            "type": f"https://armillary.dev/problems/{title.lower().replace(' ', '-')}",
            "title": title,
            "status": status,
            "detail": DETAILS.get(status, title),
            "instance": "%REQ(:PATH)%",
            "request_id": "%REQ(X-REQUEST-ID)%",
        },
        "content_type": "application/problem+json",
    }
    mapper: dict[str, Any] = {
        "filter": _status_filter(status),
        "body_format_override": body_format,
    }
    if status in (429, 503):
        mapper["headers_to_add"] = [
            {
                "header": {
                    "key": "Retry-After",
                    "value": str(settings.gateway_retry_after_seconds),
                },
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ]
    return mapper


def _status_filter(status: int) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": status, "runtime_key": f"gateway.reply_{status}"},
            }
        }
    }


def local_reply_config(settings: GatewaySettings) -> dict[str, Any]:
    """Every reply Envoy makes itself is problem+json with the request id. Its 403s are JWT
    failures (a wrong audience) unless an access token (or a personal access token) verified:
    those become 401; a 403 of the RBAC filter after a valid one stays 403 (role, job or
    personal access token refused)."""
    valid_access_token = {
        "or_filter": {
            "filters": [
                {
                    "metadata_filter": {
                        "matcher": jwt_metadata("jwt_header", "typ", exact=typ),
                        "match_if_key_not_found": False,
                    }
                }
                for typ in (ACCESS_TOKEN_TYPE, PERSONAL_TOKEN_TYPE)
            ]
        }
    }
    forbidden = _problem(403, settings)
    forbidden["filter"] = {"and_filter": {"filters": [_status_filter(403), valid_access_token]}}
    unauthorized = _problem(401, settings)
    unauthorized["filter"] = _status_filter(403)
    unauthorized["status_code"] = 401
    # A console page's refused cookie first: the browser goes back to sign-in.
    mappers = [*console.sign_in_again(), forbidden, unauthorized]
    mappers += [_problem(status, settings) for status in TITLES if status != 403]
    return {
        "mappers": mappers,
        "body_format": {
            "json_format": {
                "type": "about:blank",
                "title": "Gateway error",
                "status": "%RESPONSE_CODE%",
                "detail": "The gateway could not complete the request",
                "instance": "%REQ(:PATH)%",
                "request_id": "%REQ(X-REQUEST-ID)%",
            },
            "content_type": "application/problem+json",
        },
    }
