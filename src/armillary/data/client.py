"""Typed client of the data service for other services (e.g. the workflow service checking a
pipeline's input schema). In-process over ASGI when embedded (``DataClient.in_process(
data.app.create_internal_app(runtime))``), HTTP when distributed. Every call forwards the
caller's own token, so the answer is what that caller may see: a job token sees its one
project only."""

from __future__ import annotations

from typing import Any, Literal, cast
from urllib.parse import quote

import httpx

from armillary.contracts.data import DatasetColumn
from armillary.kit.errors import ServiceUnavailable, Unauthorized
from armillary.kit.service_client import ServiceClient

_TIMEOUT = 10.0
# Answers that mean "no such dataset or version for this caller".
_NOT_VISIBLE = frozenset({400, 403, 404, 422})


class DataClient:
    def __init__(self, service: ServiceClient) -> None:
        self._service = service

    @classmethod
    def in_process(cls, app: Any) -> DataClient:
        return cls(ServiceClient.in_process("data", app, timeout=_TIMEOUT))

    @classmethod
    def over_http(cls, base_url: str) -> DataClient:
        return cls(ServiceClient.over_http("data", base_url, timeout=_TIMEOUT))

    async def version_columns(
        self, token: str, project: str, dataset: str, version: int | Literal["latest"]
    ) -> list[dict[str, str]] | None:
        """The columns (``[{"name", "dtype"}]``) of version ``version`` of ``dataset`` (name or
        id) in ``project`` (slug or id), or of its latest live version; None when the
        dataset or version does not exist or the token may not see it. Raises
        :class:`Unauthorized` for an invalid token, :class:`ServiceUnavailable` when the data
        service cannot answer."""
        base = f"/api/v1/projects/{_segment(project)}/datasets/{_segment(dataset)}/versions"
        if version == "latest":
            response = await self._get(base, token, params={"limit": 1})
            if response is None:
                return None
            items = response.json().get("items") or []
            if not items:
                return None
            found = items[0]
        else:
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise ValueError("version must be a number >= 1 or 'latest'")
            response = await self._get(f"{base}/{version}", token)
            if response is None:
                return None
            found = response.json()
        return [
            DatasetColumn.model_validate(column).model_dump() for column in found.get("columns", [])
        ]

    async def dataset_version(
        self, token: str, project: str, dataset: str, version: int
    ) -> dict[str, Any] | None:
        """Version ``version`` of ``dataset`` (name or id) in ``project`` (slug or id) as
        ``GET .../datasets/{dataset}/versions/{version}`` shows it (size, SHA-256, columns,
        lineage, holds, ...); None when it does not exist or the token may not see it.
        Raises as :meth:`version_columns` does."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError("version must be a number >= 1")
        path = (
            f"/api/v1/projects/{_segment(project)}/datasets/{_segment(dataset)}/versions/{version}"
        )
        response = await self._get(path, token)
        return None if response is None else cast(dict[str, Any], response.json())

    async def aclose(self) -> None:
        await self._service.aclose()

    async def _get(
        self, path: str, token: str, *, params: dict[str, Any] | None = None
    ) -> httpx.Response | None:
        response = await self._service.send("GET", path, token=token, params=params)
        if response.status_code == 401:
            raise Unauthorized("Invalid token")
        if response.status_code in _NOT_VISIBLE:
            return None
        if response.status_code != 200:
            raise ServiceUnavailable("The data service could not answer")
        return response


def _segment(value: str) -> str:
    return quote(value, safe="")
