"""The one way a service calls another: in process over ASGI when embedded, over HTTP when
distributed, and in both cases with

- a timeout on every call, retries included (each try gets what is left of it: a hung
  upstream costs a caller its timeout once, not once per try);
- retries only for idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS), on a connection
  failure or a 502/503/504, with exponential backoff and full jitter;
- a circuit breaker per upstream: after ``threshold`` consecutive failures calls fail fast
  (``ServiceUnavailable``, answered 503 with Retry-After) for ``reset_seconds``; then one
  probe goes through, and its success closes the circuit again.

In process (the embedded shape) the upstream is this very process: its failures are this
process's own (its database away), which the caller's 503 already reports, so there is no
breaker and no retry there, only the timeout.

The typed clients (``identity.client``, ``registry.client``, ...) hold one of these and map
answers to their own types.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog

from armillary.kit.errors import ServiceUnavailable
from armillary.kit.metrics import SERVICE_CALL_FAILURES, SERVICE_CIRCUIT_OPEN
from armillary.kit.service_auth import ServiceCredentials, is_internal
from armillary.kit.tls import shared_client_context

log = structlog.get_logger("armillary.service_client")

# The CA bundle service calls verify against (ARMILLARY_TLS_CA_FILE), set once per process by
# the composition root before it builds clients (``trust``); None: the system's CAs.
_trusted_ca: Path | None = None


def trust(ca_file: Path | None) -> None:
    """Service calls of this process verify HTTPS upstreams against ``ca_file``."""
    global _trusted_ca
    _trusted_ca = ca_file


IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRIED_STATUSES = frozenset({502, 503, 504})


@dataclass
class CircuitBreaker:
    """Closed (calls go through), open (they fail fast), half-open (one probe goes through).
    ``service`` names it in ``armillary_service_circuit_open``."""

    threshold: int = 5
    reset_seconds: float = 10.0
    service: str = ""
    failures: int = 0
    opened_at: float | None = None
    probing: bool = field(default=False)

    def __post_init__(self) -> None:
        # Exported closed from the start: every process that calls another service over HTTP
        # shows its breakers, not only those that have opened once.
        if self.service:
            SERVICE_CIRCUIT_OPEN.labels(self.service).set(0)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.probing else "open"

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if not self.probing and time.monotonic() - self.opened_at >= self.reset_seconds:
            self.probing = True  # this caller is the probe; the others keep failing fast
            return True
        return False

    def succeeded(self) -> None:
        if self.opened_at is not None:
            log.info("service_circuit.closed", service=self.service)
        self.failures, self.opened_at, self.probing = 0, None, False
        SERVICE_CIRCUIT_OPEN.labels(self.service).set(0)

    def failed(self) -> None:
        self.failures += 1
        SERVICE_CALL_FAILURES.labels(self.service).inc()
        if self.probing or self.failures >= self.threshold:
            if self.opened_at is None or self.probing:
                log.warning("service_circuit.opened", service=self.service)
            self.opened_at, self.probing = time.monotonic(), False
            SERVICE_CIRCUIT_OPEN.labels(self.service).set(1)


class ServiceClient:
    """Calls to one upstream service (``name`` appears in errors and logs)."""

    def __init__(
        self,
        name: str,
        http: httpx.AsyncClient,
        *,
        retries: int = 2,
        backoff_seconds: float = 0.1,
        breaker: CircuitBreaker | None = None,
        credentials: ServiceCredentials | None = None,
        audience: str | None = None,
        deadline_seconds: float | None = None,
    ) -> None:
        """``breaker`` None: none (calls in process). ``deadline_seconds``: the most one call
        takes, retries included (None: the client's timeout per try). ``credentials``: this
        service's, sent
        (for ``audience``, by default ``name``) on calls to the upstream's ``/internal``
        routes (ADR 0021); in process none is needed."""
        self.name = name
        self._http = http
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.breaker = breaker
        self.credentials = credentials
        self.audience = audience or name
        self.deadline_seconds = deadline_seconds

    @classmethod
    def in_process(cls, name: str, app: Any, *, timeout: float = 10.0) -> ServiceClient:
        transport = httpx.ASGITransport(app=app)
        http = httpx.AsyncClient(transport=transport, base_url=f"http://{name}", timeout=timeout)
        return cls(name, http, retries=0, deadline_seconds=timeout)

    @classmethod
    def over_http(
        cls,
        name: str,
        base_url: str,
        *,
        timeout: float = 10.0,
        credentials: ServiceCredentials | None = None,
        audience: str | None = None,
    ) -> ServiceClient:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            limits=limits,
            # https:// upstreams are verified (chain and host name) against the platform's CA.
            verify=shared_client_context(_trusted_ca),
        )
        return cls(
            name,
            http,
            breaker=CircuitBreaker(service=name),
            credentials=credentials,
            audience=audience,
            deadline_seconds=timeout,
        )

    async def send(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        params: Any = None,
        json: Any = None,
    ) -> httpx.Response:
        """The upstream's answer (any status but 502/503/504 after retries); raises
        :class:`ServiceUnavailable` when it cannot be reached, keeps failing, or its circuit
        is open."""
        if self.breaker is not None and not self.breaker.allow():
            raise ServiceUnavailable(f"The {self.name} service is unavailable")
        if token is None and self.credentials is not None and is_internal(path):
            token = self.credentials.token_for(self.audience)
        headers = {"authorization": f"Bearer {token}"} if token else None
        tries = 1 + (self.retries if method.upper() in IDEMPOTENT else 0)
        deadline = (
            None if self.deadline_seconds is None else time.monotonic() + self.deadline_seconds
        )
        for attempt in range(tries):
            timeout: float | httpx.Timeout | Any = httpx.USE_CLIENT_DEFAULT
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
            last = attempt == tries - 1
            try:
                response = await self._http.request(
                    method, path, headers=headers, params=params, json=json, timeout=timeout
                )
            except httpx.HTTPError as exc:
                if not await self._failed(last, attempt, type(exc).__name__):
                    raise ServiceUnavailable(f"The {self.name} service is unreachable") from exc
                continue
            if response.status_code in RETRIED_STATUSES:
                if await self._failed(last, attempt, str(response.status_code)):
                    continue
                return response
            if self.breaker is not None:
                self.breaker.succeeded()
            return response
        # The deadline ran out between tries.
        raise ServiceUnavailable(f"The {self.name} service is unreachable")

    async def _failed(self, last: bool, attempt: int, error: str) -> bool:
        """Count a failure; True when the call is to be tried again (after the backoff)."""
        if self.breaker is not None:
            self.breaker.failed()
        log.warning("service_call.failed", service=self.name, error=error, attempt=attempt + 1)
        if last or (self.breaker is not None and self.breaker.opened_at is not None):
            return False
        # Full jitter: many callers retrying at once spread out instead of arriving together.
        await asyncio.sleep(random.uniform(0, self.backoff_seconds * 2**attempt))  # noqa: S311
        return True

    @property
    def http(self) -> httpx.AsyncClient:
        """The pooled client itself, without retries or breaker (tests, raw calls)."""
        return self._http

    async def aclose(self) -> None:
        await self._http.aclose()
