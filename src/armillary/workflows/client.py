"""Typed client of the workflows service for other services (e.g. the registry reading the
job a model version came from). In-process over ASGI when embedded
(``WorkflowsClient.in_process(workflows.app.create_internal_app(runtime))``), HTTP when
distributed. Every call forwards the caller's own token, so the answer is what that caller
may see: a job token sees its own project only."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import quote

import httpx

from armillary.kit.errors import ServiceUnavailable, Unauthorized

_TIMEOUT = httpx.Timeout(10.0)
# Answers that mean "no such job for this caller".
_NOT_VISIBLE = frozenset({403, 404})


class WorkflowsClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    @classmethod
    def in_process(cls, app: Any) -> WorkflowsClient:
        transport = httpx.ASGITransport(app=app)
        return cls(
            httpx.AsyncClient(transport=transport, base_url="http://workflows", timeout=_TIMEOUT)
        )

    @classmethod
    def over_http(cls, base_url: str) -> WorkflowsClient:
        return cls(httpx.AsyncClient(base_url=base_url, timeout=_TIMEOUT))

    async def job(self, token: str, job_id: str) -> dict[str, Any] | None:
        """The job as ``GET /api/v1/jobs/{id}`` shows it (its version, status, task runs with
        their outputs, artifacts and attempts), or None when it does not exist or the token
        may not see it. Raises :class:`Unauthorized` for an invalid token,
        :class:`ServiceUnavailable` when the workflows service cannot answer."""
        try:
            response = await self._http.get(
                f"/api/v1/jobs/{quote(job_id, safe='')}",
                headers={"authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise ServiceUnavailable("The workflows service is unreachable") from exc
        if response.status_code == 401:
            raise Unauthorized("Invalid token")
        if response.status_code in _NOT_VISIBLE:
            return None
        if response.status_code != 200:
            raise ServiceUnavailable("The workflows service could not answer")
        return cast(dict[str, Any], response.json())

    async def aclose(self) -> None:
        await self._http.aclose()
