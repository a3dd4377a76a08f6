"""Typed client of the workflows service for other services (e.g. the registry reading the
job a model version came from). In-process over ASGI when embedded
(``WorkflowsClient.in_process(workflows.app.create_internal_app(runtime))``), HTTP when
distributed. Every call forwards the caller's own token, so the answer is what that caller
may see: a job token sees its own project only."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import quote

from armillary.kit.errors import ServiceUnavailable, Unauthorized
from armillary.kit.service_client import ServiceClient

_TIMEOUT = 10.0
# Answers that mean "no such job for this caller".
_NOT_VISIBLE = frozenset({403, 404})


class WorkflowsClient:
    def __init__(self, service: ServiceClient) -> None:
        self._service = service

    @classmethod
    def in_process(cls, app: Any) -> WorkflowsClient:
        return cls(ServiceClient.in_process("workflows", app, timeout=_TIMEOUT))

    @classmethod
    def over_http(cls, base_url: str) -> WorkflowsClient:
        return cls(ServiceClient.over_http("workflows", base_url, timeout=_TIMEOUT))

    async def job(self, token: str, job_id: str) -> dict[str, Any] | None:
        """The job as ``GET /api/v1/jobs/{id}`` shows it (its version, status, task runs with
        their outputs, artifacts and attempts), or None when it does not exist or the token
        may not see it. Raises :class:`Unauthorized` for an invalid token,
        :class:`ServiceUnavailable` when the workflows service cannot answer."""
        response = await self._service.send(
            "GET", f"/api/v1/jobs/{quote(job_id, safe='')}", token=token
        )
        if response.status_code == 401:
            raise Unauthorized("Invalid token")
        if response.status_code in _NOT_VISIBLE:
            return None
        if response.status_code != 200:
            raise ServiceUnavailable("The workflows service could not answer")
        return cast(dict[str, Any], response.json())

    async def aclose(self) -> None:
        await self._service.aclose()
