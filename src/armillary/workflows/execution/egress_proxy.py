"""The worker-side end of an egress sandbox's way out: a CONNECT proxy that checks each
destination.

A sandbox has no network of its own, whatever its task type. A type that declares egress
(``ingest``, remote training) gets ``HTTPS_PROXY``/``HTTP_PROXY`` pointing at a loopback
forwarder inside the sandbox (:mod:`.forwarder`), which relays to a Unix socket this proxy
listens on. The proxy accepts ``CONNECT host:port`` (TLS stays end to end) and absolute-form
``GET``/``HEAD`` for plain http. It resolves the host once, refuses private, loopback,
link-local and metadata addresses unless the operator's allow rules admit them
(:mod:`armillary.kit.egress`, the policy every outbound connection of the platform follows),
connects to the checked address (pinned: no second lookup) and then only relays bytes.

Each destination is logged (host, port, address, allowed or refused); never a path, query
string or credential, which the proxy does not even see for https.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from armillary.kit.egress import (
    AllowRule,
    AsyncResolver,
    RefusedDestination,
    UnresolvableHost,
    resolve_checked,
    system_resolver,
)

from . import sandbox_socket

log = structlog.get_logger("armillary.workflows.execution")

MAX_HEAD_BYTES = 16 * 1024
EGRESS_HEADER = "x-armillary-egress"  # on the proxy's own answers: refused or failed
CONNECT_TIMEOUT = 10.0
_CHUNK = 64 * 1024
# Sent upstream by the client for the proxy alone.
_PROXY_HEADERS = (b"proxy-authorization", b"proxy-connection", b"connection", b"keep-alive")


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.http_status = status
        self.detail = detail


class EgressProxy:
    """Serves one sandbox's outbound connections, each to a checked, pinned address."""

    def __init__(
        self,
        *,
        allow: Sequence[AllowRule] = (),
        trusted: Collection[tuple[str, int]] = (),
        resolver: AsyncResolver = system_resolver,
    ) -> None:
        self.allow = tuple(allow)
        # (host, port) pairs the operator configured for the platform itself (its object
        # store): a task reads presigned URLs there, wherever the store lives.
        self.trusted = frozenset(trusted)
        self._resolver = resolver
        self._server: asyncio.AbstractServer | None = None

    async def listen_unix(self, path: Path, owner: int | None) -> None:
        """Listen at ``path`` (0600, owned by the sandbox's uid ``owner`` when there is one)."""
        self._server = await sandbox_socket.listen(self._serve, path, owner)

    async def close(self) -> None:
        """Stop listening and end every open tunnel."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                self._server.close_clients()  # type: ignore[attr-defined]
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        try:
            if len(head) > MAX_HEAD_BYTES:
                raise _Refused(431, "the request head is too large")
            method, target, headers = _parse_head(head)
            upstream = await self._open(method, target)
        except _Refused as refused:
            await _answer(writer, refused.http_status, refused.detail)
            return
        up_reader, up_writer = upstream
        if method == b"CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up_writer.write(_origin_form(method, target, headers))
        await _relay_both_ways(reader, writer, up_reader, up_writer)

    async def _open(
        self, method: bytes, target: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = _destination(method, target)
        try:
            if (host.lower(), port) in self.trusted:
                address = await resolve_checked(
                    host, port, allow_private=True, resolver=self._resolver
                )
            else:
                address = await resolve_checked(
                    host, port, allow=self.allow, resolver=self._resolver
                )
        except RefusedDestination as exc:
            log.warning("sandbox.egress", host=host, port=port, allowed=False, reason=str(exc))
            raise _Refused(403, f"egress refused: {host} port {port}: {exc}") from None
        except UnresolvableHost:
            log.warning("sandbox.egress", host=host, port=port, allowed=False, reason="dns")
            raise _Refused(502, f"egress failed: {host} does not resolve") from None
        log.info("sandbox.egress", host=host, port=port, address=str(address), allowed=True)
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(str(address), port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            raise _Refused(502, f"egress failed: {host} port {port} is not reachable") from None


def _parse_head(head: bytes) -> tuple[bytes, str, list[tuple[bytes, bytes]]]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise _Refused(400, "not an HTTP/1.x proxy request")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise _Refused(400, "a malformed header")
        headers.append((name.strip(), value.strip()))
    return parts[0], parts[1].decode("ascii", "replace"), headers


def _destination(method: bytes, target: str) -> tuple[str, int]:
    """``host, port`` of a CONNECT authority or an absolute http URL; anything else refused."""
    if method == b"CONNECT":
        host, sep, port_text = target.rpartition(":")
        host = host.strip("[]")
    elif method in (b"GET", b"HEAD"):
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            raise _Refused(400, "only CONNECT, or GET/HEAD of an absolute http:// URL")
        host, sep, port_text = parts.hostname, ":", str(parts.port or 80)
    else:
        raise _Refused(405, "only CONNECT, GET and HEAD go through the egress proxy")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _Refused(400, "a bad destination")
    return host, int(port_text)


def _origin_form(method: bytes, target: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request as the origin server expects it: path only, no proxy headers, and one
    request per connection (the tunnel is plain bytes after this)."""
    parts = urlsplit(target)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [method + b" " + path.encode() + b" HTTP/1.1"]
    lines += [n + b": " + v for n, v in headers if n.lower() not in _PROXY_HEADERS]
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _answer(writer: asyncio.StreamWriter, status: int, detail: str) -> None:
    # The reason phrase carries the detail too: clients report it for a refused CONNECT
    # (httpx's ProxyError) without reading the body.
    phrase = "".join(c if c.isprintable() and c.isascii() else "?" for c in detail)
    body = detail.encode()
    writer.write(
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain\r\n"
        f"{EGRESS_HEADER}: {'refused' if status == 403 else 'failed'}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(_CHUNK):
            target.write(data)
            await target.drain()
        if target.can_write_eof():
            target.write_eof()


async def _relay_both_ways(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    outbound = asyncio.create_task(_pipe(reader, up_writer))
    try:
        # The answer's end ends the exchange: a client that keeps its side open must not
        # hold the tunnel (and its task) forever.
        await _pipe(up_reader, writer)
    finally:
        outbound.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await outbound
        for stream in (writer, up_writer):
            stream.close()
