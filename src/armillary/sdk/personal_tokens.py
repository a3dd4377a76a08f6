"""Personal access tokens: issue one for a project, list them, revoke one (ADR 0040)."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from .client import Client

_PATH = "/api/v1/auth/tokens"
_PAGE_SIZE = 100


class PersonalTokens:
    """``client.personal_tokens``: the caller's personal access tokens, for notebooks and CI
    (``MLFLOW_TRACKING_TOKEN``). Only a person's own sign-in may manage them."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, project: str, name: str, *, expires_in_days: int = 30) -> dict[str, Any]:
        """Issue a token for ``project`` (at most 90 days). The answer's ``token`` is shown
        this once and never again: keep it as a secret."""
        body = {"name": name, "project": project, "expires_in_days": expires_in_days}
        result: dict[str, Any] = self._client.request("POST", _PATH, json=body).json()
        return result

    def list(self, *, user_id: str | None = None) -> builtins.list[dict[str, Any]]:
        """The caller's tokens (an admin may name another user), without the tokens."""
        items: builtins.list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": _PAGE_SIZE, "offset": 0}
        if user_id is not None:
            params["user_id"] = user_id
        while True:
            page = self._client.request("GET", _PATH, params=params).json()
            items.extend(page["items"])
            params["offset"] += len(page["items"])
            if not page["items"] or params["offset"] >= page["total"]:
                return items

    def revoke(self, token_id: str) -> None:
        """Revoke a token: it stops working at once."""
        self._client.request("DELETE", f"{_PATH}/{quote(token_id, safe='')}")
