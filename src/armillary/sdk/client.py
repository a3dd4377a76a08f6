"""The HTTP client: base URL, bearer tokens and their renewal, errors as exceptions."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from .datasets import Datasets
from .errors import ArmillaryError, ConnectionFailed, error_from_response
from .jobs import Jobs
from .models import Models
from .personal_tokens import PersonalTokens
from .runs import Runs
from .types import Tokens

#: Connect quickly or fail; allow a minute of silence between bytes of an answer.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
USER_AGENT = "armillary-sdk"

BodyFactory = Callable[[], Iterable[bytes]]


class Client:
    """A synchronous client of one Armillary server.

    ``token`` is an access token to send as ``Authorization: Bearer``; or call
    :meth:`login`. With a ``refresh_token`` (which :meth:`login` keeps), a request answered 401
    renews the token pair once and is sent again. Refresh tokens rotate on every renewal, so a
    caller that stores them (the CLI does) passes ``on_tokens`` to be told of each new pair.
    ``transport`` replaces httpx's network transport (tests, proxies, custom TLS).

    Use as a context manager, or call :meth:`close`, to release connections.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        refresh_token: str | None = None,
        expires_at: float | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        on_tokens: Callable[[Tokens], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._access_token = token
        self._refresh_token = refresh_token
        self._expires_at = expires_at
        self._on_tokens = on_tokens
        # Redirects are followed by hand: a redirect may lead to another host (a presigned
        # object-store URL), which must never see our bearer token.
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        self.datasets = Datasets(self)
        self.jobs = Jobs(self)
        self.models = Models(self)
        self.personal_tokens = PersonalTokens(self)
        self.runs = Runs(self)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- authentication --------------------------------------------------------------------

    @property
    def tokens(self) -> Tokens | None:
        """The current token pair, or ``None`` before :meth:`login` (or without a token)."""
        if self._access_token is None:
            return None
        return Tokens(self._access_token, self._refresh_token, self._expires_at)

    def login(self, email: str, password: str) -> Tokens:
        """Sign in with email and password; the client then sends the new access token and
        renews it with the refresh token when it expires."""
        response = self._send(
            "POST",
            "/api/v1/auth/token",
            data={"username": email, "password": password},
            authenticated=False,
        )
        return self._store_tokens(response)

    def refresh(self) -> Tokens:
        """Trade the refresh token for a new pair (the old refresh token stops working)."""
        if self._refresh_token is None:
            raise ArmillaryError(401, "Unauthorized", "No refresh token; sign in again")
        response = self._send(
            "POST",
            "/api/v1/auth/refresh",
            json={"refresh_token": self._refresh_token},
            authenticated=False,
        )
        return self._store_tokens(response)

    def logout(self) -> None:
        """Revoke the refresh token's family on the server and forget the tokens here."""
        body = {"refresh_token": self._refresh_token} if self._refresh_token else None
        self._send("POST", "/api/v1/auth/logout", json=body).close()
        self._access_token = self._refresh_token = self._expires_at = None

    def _store_tokens(self, response: httpx.Response) -> Tokens:
        payload = response.json()
        self._access_token = str(payload["access_token"])
        self._refresh_token = payload.get("refresh_token")
        expires_in = payload.get("expires_in")
        self._expires_at = time.time() + float(expires_in) if expires_in is not None else None
        tokens = Tokens(self._access_token, self._refresh_token, self._expires_at)
        if self._on_tokens is not None:
            self._on_tokens(tokens)
        return tokens

    # -- requests --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        stream: bool = False,
        timeout: float | httpx.Timeout | None = None,
    ) -> httpx.Response:
        """Send an authenticated request to an API ``path`` (``/api/v1/...``).

        Raises :class:`ArmillaryError` for a 4xx or 5xx answer and :class:`ConnectionFailed`
        when the server cannot be reached. With ``stream=True`` the body is left unread and
        the caller must close the response.
        """
        return self._send(method, path, params=params, json=json, stream=stream, timeout=timeout)

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        body: BodyFactory | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        timeout: float | httpx.Timeout | None = None,
        authenticated: bool = True,
    ) -> httpx.Response:
        renewed = False
        while True:
            request_headers = dict(headers or {})
            if authenticated and self._access_token:
                request_headers["Authorization"] = f"Bearer {self._access_token}"
            request = self._http.build_request(
                method,
                url,
                params=params,
                json=json,
                data=data,
                # A fresh body per attempt: a streamed file is read again from its start.
                content=body() if body is not None else None,
                headers=request_headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"Could not reach {self.base_url}: {exc}") from exc
            if (
                response.status_code == 401
                and authenticated
                and not renewed
                and self._refresh_token is not None
            ):
                response.close()
                self.refresh()
                renewed = True
                continue
            if response.is_error:
                try:
                    raise error_from_response(response)
                finally:
                    response.close()
            return response

    def _fetch_external(self, url: str) -> httpx.Response:
        """GET a URL the API redirected to, streamed, without our credentials."""
        request = self._http.build_request("GET", url, headers={})
        request.headers.pop("Authorization", None)
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"Could not fetch {request.url.host}: {exc}") from exc
        if response.is_error:
            try:
                raise error_from_response(response)
            finally:
                response.close()
        return response
