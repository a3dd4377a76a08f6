"""The console's client of the public HTTP API: every read and write a page makes goes
through the same routes, permissions, rate limits and audit as the CLI's and the SDK's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from fastapi import Request

from .errors import ApiFailed, NotFoundPage, SignInRequired
from .settings import ConsoleSettings

USER_AGENT = "armillary-console"
# The host name the in-process API sees; nothing resolves it.
_IN_PROCESS_BASE = "http://armillary-api"


class ConsoleApi:
    """Calls the API as the signed-in user (``token``), or anonymously for sign-in."""

    def __init__(self, http: httpx.AsyncClient, token: str | None) -> None:
        self._http = http
        self.token = token

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        authenticated: bool = True,
    ) -> httpx.Response:
        headers = {}
        if authenticated:
            if not self.token:
                raise SignInRequired
            headers["Authorization"] = f"Bearer {self.token}"
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = await self._http.request(
                method, path, params=clean, json=json, data=data, headers=headers
            )
        except httpx.HTTPError as exc:
            raise ApiFailed(503, "The platform's API cannot be reached") from exc
        if response.status_code == 401 and authenticated:
            raise SignInRequired
        return response

    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        content: bytes | AsyncIterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """A request whose body and answer stream (an upload, a download): the caller must
        ``aclose()`` the response. Same token and errors as ``request``."""
        if not self.token:
            raise SignInRequired
        sent = {**(headers or {}), "Authorization": f"Bearer {self.token}"}
        built = self._http.build_request(method, path, params=params, content=content, headers=sent)
        try:
            response = await self._http.send(built, stream=True)
        except httpx.HTTPError as exc:
            raise ApiFailed(503, "The platform's API cannot be reached") from exc
        if response.status_code == 401:
            await response.aclose()
            raise SignInRequired
        return response

    async def download(self, path: str) -> tuple[httpx.Response, AsyncIterator[bytes]]:
        """A file's bytes streamed from the API (``redirect=false``: the browser has no token
        for the store, and the CSP forbids other origins): the answer's headers and its
        body, closed when read to the end. A 403 or 404 is "not found"."""
        response = await self.stream("GET", path, params={"redirect": "false"})
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            if response.status_code in (403, 404):
                raise NotFoundPage
            raise ApiFailed.from_response(response)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()

        return response, body()

    async def read(self, path: str, **params: Any) -> Any:
        """A GET whose 403 and 404 mean "not found" to the user (the API hides projects
        from non-members with 404; a 403 says no more than that here)."""
        response = await self.request("GET", path, params=params)
        if response.status_code in (403, 404):
            raise NotFoundPage
        if response.status_code >= 400:
            raise ApiFailed.from_response(response)
        return response.json()


def _forwarded_for(request: Request) -> str:
    peer = request.client.host if request.client else "127.0.0.1"
    earlier = request.headers.get("x-forwarded-for")
    return f"{earlier}, {peer}" if earlier else peer


def _in_process_transport(request: Request) -> httpx.AsyncBaseTransport:
    # The browser's address travels as the ASGI client, so the API's per-address limits,
    # sign-in throttling and audit records see the real client, not the console.
    client = request.client
    address = (client.host, client.port) if client else ("127.0.0.1", 0)
    # An unhandled error in the API is its 500 answer here, shown as the error page.
    return httpx.ASGITransport(app=request.app, client=address, raise_app_exceptions=False)


async def console_api(request: Request) -> AsyncIterator[ConsoleApi]:
    """FastAPI dependency: a client for this request, with the session's token if any."""
    from .session import session_token

    settings: ConsoleSettings = request.app.state.console_settings
    timeout = httpx.Timeout(settings.api_timeout_seconds)
    headers = {"User-Agent": USER_AGENT}
    if settings.api_url:
        # Over HTTP the console is one more proxy on the browser's way to the API: it appends
        # the address it saw, so an API that trusts the gateway's and the console's addresses
        # (ARMILLARY_TRUSTED_PROXIES) limits, throttles and audits the browser's, not the
        # console's shared one.
        headers["X-Forwarded-For"] = _forwarded_for(request)
        http = httpx.AsyncClient(base_url=settings.api_url, timeout=timeout, headers=headers)
    else:
        # Behind a trusted proxy, the API resolves the client from X-Forwarded-For exactly as
        # it would for the browser's own request (same peer, same header).
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            headers["X-Forwarded-For"] = forwarded
        http = httpx.AsyncClient(
            base_url=_IN_PROCESS_BASE,
            transport=_in_process_transport(request),
            timeout=timeout,
            headers=headers,
        )
    async with http:
        yield ConsoleApi(http, session_token(request))
