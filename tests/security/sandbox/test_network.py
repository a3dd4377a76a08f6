"""F3: a task has no network. It reaches the platform only through its socket, whose proxy
adds the job token and follows redirects itself; every other connection fails, and the only
socket file in the sandbox is the platform's."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, StreamingResponse
from tests.integration.workflows.engine import serve
from tests.ports import free_port
from tests.security.sandbox.conftest import Log, python

from armillary.workflows.execution.local import LocalExecutor
from armillary.workflows.execution.protocol import Outcome

TOKEN = "job-token-for-the-proxy-test"


def upstream_app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/echo")
    async def echo(request: Request) -> dict[str, str | None]:
        return {"authorization": request.headers.get("authorization")}

    @app.get("/api/redirect")
    async def redirect(request: Request) -> RedirectResponse:
        return RedirectResponse(str(request.url_for("blob")), status_code=307)

    @app.get("/store/blob", name="blob")
    async def blob(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(64):
                yield b"x" * 16384
            # The object store must never see the job's token.
            yield b"|" + str(request.headers.get("authorization")).encode()

        return StreamingResponse(chunks())

    @app.post("/api/upload")
    async def upload(request: Request) -> PlainTextResponse:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return PlainTextResponse(str(size))

    return app


@pytest.fixture(scope="module")
async def api() -> AsyncIterator[str]:
    async with contextlib.asynccontextmanager(serve)(upstream_app(), free_port()) as url:
        yield url


CLIENT = """
import os, urllib.request, urllib.error
def main():
    base = os.environ["ARMILLARY_API_URL"]
    def get(path, headers=None):
        request = urllib.request.Request(base + path, headers=headers or {})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    echo = get("/api/echo", {"Authorization": "Bearer forged"})
    status, body = get("/api/redirect")
    upload = urllib.request.Request(base + "/api/upload", data=b"y" * 3_000_000, method="POST")
    with urllib.request.urlopen(upload, timeout=30) as response:
        uploaded = response.read().decode()
    try:
        get("http://example.com/")
        absolute = "allowed"
    except Exception as exc:
        absolute = type(exc).__name__
    return {"echo": echo, "redirect": [status, len(body), body[-60:]], "uploaded": uploaded}
"""


async def test_the_proxy_adds_the_token_and_follows_redirects_streamed(
    executor: LocalExecutor, api: str
) -> None:
    result = await executor.run(python(CLIENT, token=TOKEN, api_url=api))
    assert result.outcome == Outcome.SUCCEEDED, result.error
    outputs = result.outputs
    assert outputs is not None
    # The task's own Authorization header is replaced by the attempt's token.
    assert outputs["echo"] == [200, '{"authorization":"Bearer ' + TOKEN + '"}']
    status, size, tail = outputs["redirect"]
    assert status == 200
    assert size == 64 * 16384 + len("|None")
    assert tail.endswith("|None")  # the redirect target got no token
    assert outputs["uploaded"] == "3000000"
    result.cleanup()


ATTACK = """
import os, socket, stat, subprocess
def main(api_port):
    reached = {}
    for name, port in [("postgres", 5432), ("redis", 6379), ("rabbitmq", 5672),
                       ("mariadb", 3306), ("api", api_port), ("ssh", 22)]:
        for host in ("127.0.0.1", "::1"):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.settimeout(2)
                    s.connect((host, port))
                reached[f"{name}@{host}"] = "connected"
            except OSError as exc:
                pass
    for path in ("/var/run/postgresql/.s.PGSQL.5432", "/run/postgresql/.s.PGSQL.5432",
                 "/run/mysqld/mysqld.sock", "/var/run/docker.sock", "/run/docker.sock",
                 "/var/run/redis/redis-server.sock"):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(path)
            reached[path] = "connected"
        except OSError:
            pass
    try:
        socket.getaddrinfo("example.com", 443)
        reached["dns"] = "resolved"
    except OSError:
        pass
    found = subprocess.run(["find", "/", "-type", "s"], capture_output=True, text=True)
    # find trusts the directory entry, which for a bind-mounted socket is bubblewrap's empty
    # mount point; lstat sees the socket itself.
    walked = []
    for root, dirs, files in os.walk("/"):
        if root == "/" and "proc" in dirs:
            dirs.remove("proc")
        for name in files + dirs:
            path = os.path.join(root, name)
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    walked.append(path)
            except OSError:
                pass
    return {"reached": reached, "find": found.stdout.split(), "walked": walked}
"""


async def test_no_connection_leaves_the_sandbox_but_the_platform_socket(
    executor: LocalExecutor, api: str
) -> None:
    port = int(api.rsplit(":", 1)[1])
    result = await executor.run(python(ATTACK, args={"api_port": port}, api_url=api))
    assert result.outcome == Outcome.SUCCEEDED, result.error
    outputs = result.outputs
    assert outputs is not None
    assert outputs["reached"] == {}
    assert set(outputs["find"]) <= {"/run/armillary/api.sock"}
    assert outputs["walked"] == ["/run/armillary/api.sock"]
    result.cleanup()


async def test_the_api_socket_is_no_general_proxy(executor: LocalExecutor, api: str) -> None:
    source = """
import socket
def main():
    s = socket.socket(socket.AF_UNIX)
    s.connect("/run/armillary/api.sock")
    s.sendall(b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    return {"answer": s.recv(200).decode().split("\\r\\n")[0]}
"""
    log = Log()
    result = await executor.run(python(source, api_url=api), on_log=log)
    assert result.outcome == Outcome.SUCCEEDED, (result.error, log.text)
    assert result.outputs == {"answer": "HTTP/1.1 400 "}
    result.cleanup()
