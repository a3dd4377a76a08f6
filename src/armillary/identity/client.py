"""Typed client of the identity service, used by every service (``kit.authz``) to ask who a
caller is and what they may do. In-process over ASGI when embedded, HTTP when distributed."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx

from armillary.contracts.identity import (
    JWKS,
    JobToken,
    JobTokenRequest,
    PrincipalInfo,
    ProjectAccessInfo,
)
from armillary.kit.errors import Conflict, NotFound, ServiceUnavailable, Unauthorized
from armillary.kit.service_auth import ServiceCredentials
from armillary.kit.service_client import ServiceClient

_TIMEOUT = 5.0


class IdentityClient:
    def __init__(self, service: ServiceClient) -> None:
        self._service = service

    @classmethod
    def in_process(cls, app: Any) -> IdentityClient:
        return cls(ServiceClient.in_process("identity", app, timeout=_TIMEOUT))

    @classmethod
    def over_http(
        cls, base_url: str, *, credentials: ServiceCredentials | None = None
    ) -> IdentityClient:
        """``credentials``: the calling service's, for the internal routes (job tokens)."""
        return cls(
            ServiceClient.over_http("identity", base_url, timeout=_TIMEOUT, credentials=credentials)
        )

    async def jwks(self) -> JWKS:
        response = await self._get("/api/v1/auth/jwks")
        return JWKS.model_validate(response.json())

    async def principal(self, token: str) -> PrincipalInfo | None:
        response = await self._get("/api/v1/auth/principal", token=token)
        if response.status_code == 401:
            return None
        return PrincipalInfo.model_validate(response.json())

    async def project_access(self, token: str, project: str) -> ProjectAccessInfo | None:
        response = await self._get(
            f"/api/v1/projects/{quote(project, safe='')}/access", token=token
        )
        if response.status_code == 404:
            return None
        if response.status_code == 401:
            raise Unauthorized("Invalid token")
        return ProjectAccessInfo.model_validate(response.json())

    async def issue_job_token(
        self,
        *,
        user_id: UUID,
        project_id: UUID,
        job_id: UUID,
        ttl_seconds: int,
        task: str | None = None,
        attempt: int | None = None,
        task_type: str | None = None,
        datasets_read: list[str] | None = None,
        datasets_write: list[str] | None = None,
    ) -> JobToken:
        """A short-lived access token for job ``job_id``'s tasks: the rights of ``user_id``
        (who started it) capped to ``project_id`` and to what a job token may do (plus what
        ``task_type`` declares). Given ``task`` and ``attempt``, it stops working when that
        attempt ends or loses its lease; in any case when the job ends. :class:`NotFound` when
        the user is not a member of the project, :class:`Conflict` when inactive, not allowed
        to run jobs there, or the job or attempt has already ended; ``ttl_seconds`` must be
        within 30..86400 (``ValueError`` otherwise).
        The token is a credential: keep it out of argv, logs and task output."""
        body = JobTokenRequest(
            user_id=user_id,
            project_id=project_id,
            job_id=job_id,
            ttl_seconds=ttl_seconds,
            task=task,
            attempt=attempt,
            task_type=task_type,
            datasets_read=datasets_read,
            datasets_write=datasets_write,
        )
        response = await self._service.send(
            "POST", "/internal/v1/job-tokens", json=body.model_dump(mode="json")
        )
        if response.status_code == 404:
            raise NotFound("No such member of this project")
        if response.status_code == 409:
            raise Conflict("No job token for this user, job or attempt")
        if response.status_code != 201:
            raise ServiceUnavailable("The identity service could not issue a job token")
        return JobToken.model_validate(response.json())

    async def aclose(self) -> None:
        await self._service.aclose()

    async def _get(self, path: str, *, token: str | None = None) -> httpx.Response:
        response = await self._service.send("GET", path, token=token)
        if response.status_code >= 500 or response.status_code in (403, 429):
            raise ServiceUnavailable("The identity service could not answer")
        return response
