"""Typed client of the registry for other services (e.g. the prediction service resolving an
alias). In-process over ASGI when embedded (``RegistryClient.in_process(
registry.app.create_internal_app(runtime))``), HTTP when distributed. Every call forwards the
caller's own token, so the answer is what that caller may see."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote
from uuid import UUID

from armillary.kit.errors import ServiceUnavailable, Unauthorized
from armillary.kit.service_auth import ServiceCredentials
from armillary.kit.service_client import ServiceClient

_TIMEOUT = 10.0
_NOT_VISIBLE = frozenset({400, 403, 404, 422})


class RegistryClient:
    def __init__(self, service: ServiceClient, private: ServiceClient | None = None) -> None:
        self._service = service
        # The registry's private app (internal routes, no caller token), for resolve().
        self._private = private

    @classmethod
    def in_process(cls, app: Any, private_app: Any | None = None) -> RegistryClient:
        """``private_app`` (``registry.app.create_private_app(runtime)``) enables
        :meth:`resolve`."""
        private = None
        if private_app is not None:
            private = ServiceClient.in_process("registry-private", private_app, timeout=_TIMEOUT)
        return cls(ServiceClient.in_process("registry", app, timeout=_TIMEOUT), private)

    @classmethod
    def over_http(
        cls,
        base_url: str,
        private_base_url: str | None = None,
        *,
        credentials: ServiceCredentials | None = None,
    ) -> RegistryClient:
        """``private_base_url``: where the registry's internal routes listen (``/internal``,
        on its own port in the distributed shape), to enable :meth:`resolve`; the calls there
        carry ``credentials``, the calling service's (ADR 0021). The same URL as
        ``base_url`` shares one connection pool and one circuit breaker."""
        public = ServiceClient.over_http(
            "registry", base_url, timeout=_TIMEOUT, credentials=credentials
        )
        if private_base_url == base_url:
            return cls(public, public)
        private = None
        if private_base_url:
            private = ServiceClient.over_http(
                "registry-private",
                private_base_url,
                timeout=_TIMEOUT,
                credentials=credentials,
                audience="registry",
            )
        return cls(public, private)

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

    async def resolve(
        self,
        project_id: UUID | str,
        model: str,
        *,
        version: int | None = None,
        alias: str | None = None,
    ) -> dict[str, Any] | None:
        """The version of ``model`` in project ``project_id`` that ``version`` or ``alias``
        (exactly one) names: ``{model_id, model_version_id, model, version, format, signature,
        problem, artifacts: {name: {key, size_bytes, sha256}}}``, or None when there is none.
        Asks the registry's private routes, with no caller token: for services that have
        already authorized their caller (the prediction service)."""
        if (version is None) == (alias is None):
            raise ValueError("give exactly one of version and alias")
        if self._private is None:
            raise ServiceUnavailable("The registry's private routes are not wired")
        params: dict[str, str | int] = {"project_id": str(project_id), "model": model}
        if version is not None:
            params["version"] = version
        else:
            params["alias"] = str(alias)
        response = await self._private.send(
            "GET", "/internal/v1/model-versions/resolve", params=params
        )
        if response.status_code in _NOT_VISIBLE:
            return None
        if response.status_code != 200:
            raise ServiceUnavailable("The registry could not answer")
        body = response.json()
        return body if isinstance(body, dict) else None

    async def models_api(
        self,
        method: str,
        token: str,
        project: str,
        path: str = "",
        *,
        json: Any = None,
        params: Any = None,
    ) -> tuple[int, Any]:
        """A call to the public models API of ``project`` (slug or id),
        ``/api/v1/projects/<project>/models<path>``, with the caller's own token: the status
        and the JSON body (None when there is none), for a caller that maps the registry's
        answers to its own (the tracking service's MLflow registry API). Raises
        :class:`ServiceUnavailable` when the registry cannot answer."""
        response = await self._service.send(
            method,
            f"/api/v1/projects/{_segment(project)}/models{path}",
            token=token,
            json=json,
            params=params,
        )
        if response.status_code >= 500:
            raise ServiceUnavailable("The registry could not answer")
        if not response.content:
            return response.status_code, None
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    async def aclose(self) -> None:
        await self._service.aclose()
        if self._private is not None and self._private is not self._service:
            await self._private.aclose()

    async def _get(self, path: str, token: str) -> dict[str, Any] | None:
        response = await self._service.send("GET", path, token=token)
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
