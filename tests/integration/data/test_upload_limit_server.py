"""An oversize upload is cut off at the limit: against a real uvicorn server on loopback, a
client streaming a 200 MiB body gets its 413 long before it has sent the body, and the server
stored nothing."""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, auth
from tests.moto_server import free_port

from armillary.app import create_app
from armillary.data.settings import DataSettings
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings

MIB = 1024 * 1024
LIMIT = 1 * MIB
BODY = 200 * MIB
CHUNK = 64 * 1024
BOUNDARY = "limit-test-boundary"


class Server:
    """uvicorn serving the app in a thread, with its own event loop."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn exited during start-up"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def server(settings_factory: Callable[..., Settings], tmp_path: Path) -> Iterator[Server]:
    spool = tmp_path / "spool"
    spool.mkdir()
    app = create_app(
        settings_factory(),
        configure_logs=False,
        storage_settings=StorageSettings(backend="local"),
        data_settings=DataSettings(max_upload_bytes=LIMIT, spool_dir=str(spool)),
    )
    running = Server(app)
    running.start()
    try:
        yield running
    finally:
        running.stop()


class CountingBody:
    """The multipart body as HTTP/1.1 chunks, pulled lazily; counts the file bytes pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0
        self.exhausted = False

    def frames(self, chunked: bool) -> Iterator[bytes]:
        head = (
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="file"; filename="big.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        line = b"1,2,3,4,5,6,7\n"
        block = (line * (CHUNK // len(line) + 1))[:CHUNK]
        pieces: list[bytes] = [head]
        while True:
            for piece in pieces:
                yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
            if self.pulled >= self.total:
                break
            self.pulled += CHUNK
            pieces = [block]
        yield (f"{len(tail):x}\r\n".encode() + tail + b"\r\n0\r\n\r\n") if chunked else tail
        self.exhausted = True


def _content_length(total: int) -> int:
    body = CountingBody(0)
    overhead = sum(len(p) for p in body.frames(chunked=False))
    return overhead + total


def _send(url_port: int, path: str, token: str, body: CountingBody, chunked: bool) -> bytes:
    """Stream the body until the server answers; return what it answered."""
    sock = socket.create_connection(("127.0.0.1", url_port), timeout=30)
    framing = (
        "Transfer-Encoding: chunked"
        if chunked
        else f"Content-Length: {_content_length(body.total)}"
    )
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{url_port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n\r\n"
    ).encode()
    sock.sendall(request)
    sock.setblocking(False)
    frames = body.frames(chunked)
    pending = memoryview(b"")
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 5)
            if readable:
                break  # the server answered
            if not writable:
                continue
            if not pending:
                try:
                    pending = memoryview(next(frames))
                except StopIteration:
                    break
            try:
                pending = pending[sock.send(pending) :]
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        sock.settimeout(10)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            answer += data
        return answer
    finally:
        sock.close()


def _scene(base_url: str) -> tuple[str, str, str]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        login = client.post(
            "/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        token = login.json()["access_token"]
        project = client.post(
            "/api/v1/projects", json={"slug": "limits", "name": "Limits"}, headers=auth(token)
        )
        assert project.status_code == 201, project.text
        created = client.post(
            "/api/v1/projects/limits/datasets", json={"name": "big"}, headers=auth(token)
        )
        assert created.status_code == 201, created.text
        return token, project.json()["id"], "/api/v1/projects/limits/datasets/big/versions"


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
async def test_oversize_body_is_cut_off_at_the_limit(
    server: Server, tmp_path: Path, chunked: bool
) -> None:
    token, project_id, path = await asyncio.to_thread(_scene, server.url)
    body = CountingBody(BODY)
    started = time.monotonic()
    answer = await asyncio.to_thread(_send, server.port, path, token, body, chunked)
    elapsed = time.monotonic() - started
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:500]
    assert b"application/problem+json" in answer
    assert str(LIMIT).encode() in answer
    # The answer came while the client was still sending, long before the end of the body.
    assert not body.exhausted
    assert body.pulled < 20 * MIB, body.pulled
    assert elapsed < 30

    # Nothing stored: no version, no object, no spool file.
    objects = tmp_path / "home" / "objects"
    assert _files(tmp_path / "spool") == []
    assert _files(objects) == []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        listed = client.get(path, params={"include_deleted": "true"}, headers=auth(token))
        assert listed.json()["total"] == 0
        # The server is still healthy and takes a file within the limit.
        small = client.post(
            path, files={"file": ("small.csv", b"a,b\n1,2\n", "text/csv")}, headers=auth(token)
        )
        assert small.status_code == 201, small.text
    [key] = _files(objects)
    assert key.startswith(f"projects/{project_id}/datasets/"), key


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
