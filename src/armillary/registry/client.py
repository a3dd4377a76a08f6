"""Typed client of the registry for other services (e.g. the prediction service resolving an
alias). In-process over ASGI when embedded (``RegistryClient.in_process(
registry.app.create_internal_app(runtime))``), HTTP when distributed. Every call forwards the
caller's own token, so the answer is what that caller may see."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from armillary.kit.errors import ServiceUnavailable, Unauthorized

_TIMEOUT = httpx.Timeout(10.0)
_NOT_VISIBLE = frozenset({400, 403, 404, 422})


class RegistryClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    @classmethod
    def in_process(cls, app: Any) -> RegistryClient:
        transport = httpx.ASGITransport(app=app)
        return cls(
            httpx.AsyncClient(transport=transport, base_url="http://registry", timeout=_TIMEOUT)
        )

    @classmethod
    def over_http(cls, base_url: str) -> RegistryClient:
        return cls(httpx.AsyncClient(base_url=base_url, timeout=_TIMEOUT))

    async def alias(
        self, token: str, project: str, model: str, alias: str
    ) -> dict[str, Any] | None:
        """``{"alias", "version", "model_version"}`` for ``alias`` of ``model`` in ``project``
        (slug or id), or None when there is no such alias for this caller. Raises
        :class:`Unauthorized` for an invalid token, :class:`ServiceUnavailable` when the
        registry cannot answer."""
        return await self._get(f"{_model(project, model)}/aliases/{_segment(alias)}", token)

    async def version(
        self, token: str, project: str, model: str, version: int
    ) -> dict[str, Any] | None:
        """The record of version ``version`` of ``model``, or None when not visible."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError("version must be a number >= 1")
        return await self._get(f"{_model(project, model)}/versions/{version}", token)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, token: str) -> dict[str, Any] | None:
        try:
            response = await self._http.get(path, headers={"authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise ServiceUnavailable("The registry is unreachable") from exc
        if response.status_code == 401:
            raise Unauthorized("Invalid token")
        if response.status_code in _NOT_VISIBLE:
            return None
        if response.status_code != 200:
            raise ServiceUnavailable("The registry could not answer")
        body = response.json()
        return body if isinstance(body, dict) else None


def _model(project: str, model: str) -> str:
    return f"/api/v1/projects/{_segment(project)}/models/{_segment(model)}"


def _segment(value: str) -> str:
    return quote(value, safe="")
