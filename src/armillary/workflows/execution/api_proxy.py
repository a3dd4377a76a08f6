"""The worker-side end of a sandbox's only way out: an HTTP proxy to the platform API.

Each sandbox gets its own listening socket (a Unix socket bound into the sandbox; a loopback
TCP port in the insecure development mode). Every request that arrives on it goes to the
configured API with the attempt's job token added, so the task never holds a token: it
cannot leak one, and nothing in its memory is worth scanning for. Only origin-form targets
(``/api/...``) are accepted, so the socket is no general-purpose proxy.

A redirect from the API (a presigned object-store URL) is followed here, without the token,
and its body streamed to the task: the task has no network to follow it itself. Bodies are
streamed both ways, never held whole.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import h11
import httpx
import structlog

from armillary.kit import tracing
from armillary.kit.tls import shared_client_context

from . import sandbox_socket, worker_calls

log = structlog.get_logger("armillary.workflows.execution")

CHUNK = 64 * 1024
MAX_HEADER_BYTES = 64 * 1024
# Connection-level headers are not forwarded (RFC 9110 §7.6.1); the proxy sets its own.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"authorization",
        b"cookie",
    }
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class ApiProxy:
    """Serves one sandbox: forwards its requests to the API as its attempt's job."""

    def __init__(
        self,
        *,
        redirect_origins: frozenset[str] | None = None,
        timeout: float = 300.0,
        ca_file: Path | None = None,
    ) -> None:
        self.upstream = ""
        # None: follow the API's redirects wherever they point (the API, not the task,
        # chooses them); a set: only to these scheme://host:port origins.
        self.redirect_origins = redirect_origins
        self._token: str | None = None
        self._calls: worker_calls.CallSession | None = None
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=10.0),
            follow_redirects=False,
            trust_env=False,
            # An HTTPS API is verified (chain and host name), against its own CA if given.
            verify=shared_client_context(ca_file),
        )
        self._server: asyncio.AbstractServer | None = None
        self.requests = 0

    def authorize(
        self, token: str, upstream: str, calls: worker_calls.CallSession | None = None
    ) -> None:
        """Forward to ``upstream`` (the API's base URL) as the attempt's job, and serve its
        worker ``calls``; until then every request is refused (503)."""
        self.upstream = upstream.rstrip("/")
        self._token = token
        self._calls = calls

    async def listen_unix(self, path: Path, owner: int | None) -> None:
        """Listen on a Unix socket at ``path`` (created here, 0600, given to the sandbox's
        uid ``owner`` when there is one: the only user that may connect)."""
        self._server = await sandbox_socket.listen(self._serve, path, owner)

    async def listen_tcp(self) -> str:
        """Listen on a loopback port; returns the base URL (insecure development mode)."""
        self._server = await asyncio.start_server(self._serve, host="127.0.0.1", port=0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        """Stop listening, end open connections, stop the worker calls, forget the token."""
        self._token = None
        if self._calls is not None:
            await self._calls.close()
            self._calls = None
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                self._server.close_clients()  # type: ignore[attr-defined]
            self._server = None
        await self._client.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        try:
            while True:
                event = await _next_event(conn, reader)
                if not isinstance(event, h11.Request):
                    return
                await self._forward(conn, event, reader, writer)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (h11.ProtocolError, ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _forward(
        self,
        conn: h11.Connection,
        request: h11.Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.requests += 1
        target = request.target.decode("ascii", "replace")
        if not target.startswith("/") or target.startswith("//"):
            await _drain(conn, reader)
            await _reply(conn, writer, 400, b"only requests to the platform API are forwarded")
            return
        if self._token is None:
            await _drain(conn, reader)
            await _reply(conn, writer, 503, b"the sandbox has no attempt yet")
            return
        method = request.method.decode("ascii")
        if target.startswith(worker_calls.PREFIX):
            await self._worker_call(conn, method, target, reader, writer)
            return
        headers = [(k, v) for k, v in request.headers if k.lower() not in _HOP_BY_HOP]
        headers.append((b"authorization", f"Bearer {self._token}".encode()))
        upstream = self._client.build_request(
            method,
            self.upstream + target,
            headers=headers,
            content=_body(conn, reader),
        )
        # The task's call continues its attempt's trace (the header it sent, ADR 0031).
        parent = next(
            (v.decode("latin-1") for k, v in headers if k.lower() == b"traceparent"), None
        )
        try:
            with tracing.attached(parent):
                response = await self._client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            log.warning("sandbox.api_unreachable", error=type(exc).__name__)
            await _reply(conn, writer, 502, b"the platform API is not reachable")
            return
        try:
            if response.status_code in _REDIRECTS and method in ("GET", "HEAD"):
                response = await self._follow(response)
            await _relay(conn, writer, response)
        finally:
            await response.aclose()

    async def _worker_call(
        self,
        conn: h11.Connection,
        method: str,
        target: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """A call the worker answers itself (:mod:`.worker_calls`), never forwarded."""
        name = target[len(worker_calls.PREFIX) :].split("?", 1)[0]
        if method != "POST" or self._calls is None:
            await _drain(conn, reader)
            await _reply(conn, writer, 404, b"no worker calls for this task")
            return
        answer = await self._calls.call(name, _body(conn, reader))
        if answer.file is None:
            body = worker_calls.info_header(answer.info)
            headers = [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await _send(conn, writer, h11.Response(status_code=answer.status, headers=headers))
            await _send(conn, writer, h11.Data(data=body))
            await _send(conn, writer, h11.EndOfMessage())
            return
        size = answer.file.stat().st_size
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(size).encode()),
            (b"x-armillary-result", worker_calls.info_header(answer.info)),
        ]
        await _send(conn, writer, h11.Response(status_code=answer.status, headers=headers))
        with answer.file.open("rb") as source:
            while chunk := await asyncio.to_thread(source.read, CHUNK):
                await _send(conn, writer, h11.Data(data=chunk))
        await _send(conn, writer, h11.EndOfMessage())

    async def _follow(self, response: httpx.Response) -> httpx.Response:
        """The response at the redirect's target, fetched without the token; the redirect
        itself when its target is not allowed."""
        location = response.headers.get("location")
        if not location:
            return response
        url = urljoin(str(response.url), location)
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if parts.scheme not in ("http", "https") or (
            self.redirect_origins is not None and origin not in self.redirect_origins
        ):
            log.warning("sandbox.redirect_refused", origin=origin)
            return response
        await response.aclose()
        target = httpx.Request("GET", url, headers={"user-agent": "armillary-sandbox-proxy"})
        return await self._client.send(target, stream=True)


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(CHUNK))
            continue
        return event


async def _body(conn: h11.Connection, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        event = await _next_event(conn, reader)
        if isinstance(event, h11.Data):
            yield bytes(event.data)
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return


async def _drain(conn: h11.Connection, reader: asyncio.StreamReader) -> None:
    async for _chunk in _body(conn, reader):
        pass


async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, event: h11.Event) -> None:
    data = conn.send(event)
    if data:
        writer.write(data)
        await writer.drain()


async def _reply(
    conn: h11.Connection, writer: asyncio.StreamWriter, status: int, detail: bytes
) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(detail)).encode())]
    await _send(conn, writer, h11.Response(status_code=status, headers=headers))
    await _send(conn, writer, h11.Data(data=detail))
    await _send(conn, writer, h11.EndOfMessage())


async def _relay(
    conn: h11.Connection, writer: asyncio.StreamWriter, response: httpx.Response
) -> None:
    headers = [
        (k, v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP | {b"set-cookie"}
    ]
    length = response.headers.get("content-length")
    # httpx decodes nothing when streaming raw bytes, so the upstream length stays true.
    if length is not None:
        headers.append((b"content-length", length.encode()))
    else:
        headers.append((b"transfer-encoding", b"chunked"))
    await _send(conn, writer, h11.Response(status_code=response.status_code, headers=headers))
    async for chunk in response.aiter_raw(CHUNK):
        await _send(conn, writer, h11.Data(data=chunk))
    await _send(conn, writer, h11.EndOfMessage())
