"""The tracking SDK's connection to the tracking service (:mod:`armillary.tracking.sdk`):
where the API is and who is asking, from the sandbox's variables inside a task, or the
arguments, ``ARMILLARY_URL``/``ARMILLARY_TOKEN`` or ``armillary login``'s stored credentials
outside one; and MLflow's REST calls with retries. httpx and the SDK's own modules only."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from armillary.sdk.client import Client as ApiClient
from armillary.sdk.credentials import (
    TOKEN_ENV,
    URL_ENV,
    Credentials,
    load_credentials,
    save_credentials,
)
from armillary.sdk.types import Tokens

PROJECT_ENV = "ARMILLARY_PROJECT"
EXPERIMENT_ENV = "ARMILLARY_EXPERIMENT"
# Set inside a sandboxed task (workflows.execution.launcher).
TASK_API_ENV = "ARMILLARY_API_URL"
TASK_PROJECT_ENV = "ARMILLARY_PROJECT_ID"
TASK_JOB_ENV = "ARMILLARY_JOB_ID"

_RETRIES = 4
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class TrackingError(Exception):
    """A call to the tracking service failed: ``status`` (0: no answer), MLflow's
    ``error_code`` and the server's message. Never carries the token."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"{error_code} ({status}): {message}" if status else message)
        self.status = status
        self.error_code = error_code
        self.message = message


class _Auth:
    """The bearer token to send, and its renewal after a 401 (stored credentials only)."""

    def __init__(
        self,
        token: str | None,
        stored: Credentials | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._token = token
        self._credentials = stored
        self._lock = threading.Lock()
        # Renews stored credentials (its refresh token), telling keep() of each new pair.
        self._api: ApiClient | None = None
        if stored is not None:
            self._api = ApiClient(
                stored.url,
                stored.access_token,
                refresh_token=stored.refresh_token,
                expires_at=stored.expires_at,
                on_tokens=self.keep,
                transport=transport,
            )

    @property
    def token(self) -> str | None:
        return self._token

    def renew(self, rejected: str | None) -> bool:
        """Trade the refresh token for a new pair, once for all threads that saw ``rejected``
        refused (refresh tokens rotate: a second trade of the same one would fail)."""
        if self._api is None:
            return False
        with self._lock:
            if self._token != rejected:
                return True  # another thread renewed it meanwhile
            try:
                tokens = self._api.refresh()
            except Exception:
                return False
            self._token = tokens.access_token
            return True

    def close(self) -> None:
        if self._api is not None:
            self._api.close()

    def keep(self, tokens: Tokens) -> None:
        """Write renewed tokens back, as the CLI does: the old refresh token is spent."""
        if self._credentials is not None:
            self._credentials = self._credentials.with_tokens(tokens)
            save_credentials(self._credentials)


class Connection:
    """The tracking API of one project: JSON calls with retries, and artifact uploads."""

    def __init__(
        self,
        url: str,
        project: str,
        auth: _Auth,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.project = project
        self.auth = auth
        self._http = httpx.Client(
            base_url=self.url,
            transport=transport,
            timeout=_TIMEOUT,
            headers={"User-Agent": "armillary-tracking"},
        )

    @property
    def api(self) -> str:
        return f"/mlflow/{quote(self.project, safe='')}/api/2.0/mlflow"

    def close(self) -> None:
        self._http.close()
        self.auth.close()

    def call(
        self, method: str, endpoint: str, *, body: Any = None, params: Any = None
    ) -> dict[str, Any]:
        """``endpoint`` of MLflow's API (e.g. ``runs/create``); retried on 429, 5xx and
        network errors, renewed once on 401."""
        path = f"{self.api}/{endpoint}"
        response = self._send(method, path, json=body, params=params)
        if response.status_code >= 400:
            raise _error(response)
        answer: dict[str, Any] = response.json() if response.content else {}
        return answer

    def upload(self, artifact_uri: str, relative: str, file: Path) -> None:
        """PUT ``file`` through the mlflow-artifacts proxy under the run's artifact root."""
        root = artifact_uri.removeprefix("mlflow-artifacts:").lstrip("/")
        key = "/".join(quote(part, safe="") for part in f"{root}/{relative}".split("/"))
        path = f"/mlflow/{quote(self.project, safe='')}/api/2.0/mlflow-artifacts/artifacts/{key}"
        response = self._send("PUT", path, file=file)
        if response.status_code >= 400:
            raise _error(response)

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        file: Path | None = None,
    ) -> httpx.Response:
        renewed = False
        for attempt in range(_RETRIES + 1):
            token = self.auth.token
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            try:
                if file is not None:
                    with file.open("rb") as body:
                        response = self._http.request(
                            method, path, content=body, headers=headers, params=params
                        )
                else:
                    response = self._http.request(
                        method, path, json=json, headers=headers, params=params
                    )
            except httpx.TransportError as exc:
                if attempt == _RETRIES:
                    raise TrackingError(0, "UNREACHABLE", f"{self.url}: {exc}") from None
                time.sleep(0.25 * 2**attempt)
                continue
            if response.status_code == 401 and not renewed and self.auth.renew(token):
                renewed = True
                continue
            if response.status_code in _RETRY_STATUSES and attempt < _RETRIES:
                time.sleep(_retry_after(response, 0.25 * 2**attempt))
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return min(float(response.headers.get("Retry-After", default)), 30.0)
    except ValueError:
        return default


def _error(response: httpx.Response) -> TrackingError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    message = body.get("message") or body.get("detail") or response.reason_phrase
    return TrackingError(response.status_code, body.get("error_code", "ERROR"), str(message))


def connect(
    url: str | None = None,
    project: str | None = None,
    token: str | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
) -> Connection:
    """A connection from the arguments, else the sandbox's variables, else the CLI's."""
    environ = os.environ
    in_task = bool(environ.get(TASK_JOB_ENV) and environ.get(TASK_API_ENV))
    if in_task and url is None:
        # The worker's proxy adds the job token: the task holds none.
        url = environ[TASK_API_ENV]
        project = project or environ.get(TASK_PROJECT_ENV) or environ.get(PROJECT_ENV)
        auth = _Auth(token)
    else:
        url, auth = _outside_task(url, token, transport)
        project = project or environ.get(PROJECT_ENV)
    if not project:
        raise TrackingError(
            0, "NO_PROJECT", f"Name the project: configure(project=...) or {PROJECT_ENV}"
        )
    return Connection(url, project, auth, transport=transport)


def _outside_task(
    url: str | None, token: str | None, transport: httpx.BaseTransport | None
) -> tuple[str, _Auth]:
    url = url or os.environ.get(URL_ENV)
    token = token or os.environ.get(TOKEN_ENV)
    if url and token:
        return url, _Auth(token)
    stored = load_credentials()
    if stored is None or (url and url.rstrip("/") != stored.url.rstrip("/")):
        raise TrackingError(
            0, "NOT_SIGNED_IN", f"Run `armillary login`, or set {URL_ENV} and {TOKEN_ENV}"
        )
    return stored.url, _Auth(stored.access_token, stored, transport)
