"""What a console handler raises instead of rendering: turned into pages in ``pages``."""

from __future__ import annotations

import httpx


class SignInRequired(Exception):
    """No session, or the API refused its token (expired, revoked): back to sign-in."""


class NotFoundPage(Exception):
    """The API said 404 or 403: the user sees "not found", never which of the two."""


class ApiFailed(Exception):
    """Any other error answer of the API, with the problem's text (which the API keeps free
    of internals) for the user."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiFailed:
        return cls(response.status_code, problem_text(response))


def problem_text(response: httpx.Response) -> str:
    """The human part of an RFC 9457 problem, or a generic line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title")
        if isinstance(detail, str) and detail:
            return detail
        if isinstance(detail, list):  # validation errors
            return "; ".join(str(item.get("msg", item)) for item in detail if item)
    return f"The request failed ({response.status_code})"
