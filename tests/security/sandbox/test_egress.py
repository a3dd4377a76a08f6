"""F3, egress: a type that declares it (``ingest``) still has no network of its own. It goes
out only through the worker's CONNECT proxy, which refuses loopback, private and metadata
addresses unless the operator allows them, and logs each destination. ``python`` tasks
cannot reach that proxy at all. Runs as root (a uid per attempt) or not (the worker's uid):
neither case changes what is proved here."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from tests.security.sandbox.conftest import Log, python

from armillary.workflows.execution import local
from armillary.workflows.execution.egress_proxy import EgressProxy
from armillary.workflows.execution.local import EGRESS_ALLOW_ENV, LocalExecutor
from armillary.workflows.execution.protocol import AttemptSpec, Outcome

ROWS = 40


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    served = Path(tempfile.mkdtemp(prefix="armillary-egress-"))
    lines = ["a,b"] + [f"{i},x{i}" for i in range(ROWS)]
    (served / "data.csv").write_text("\n".join(lines) + "\n")
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    shutil.rmtree(served, ignore_errors=True)


async def _executor(base: Path, allow: str | None) -> LocalExecutor:
    with pytest.MonkeyPatch.context() as patch:
        if allow is None:
            patch.delenv(EGRESS_ALLOW_ENV, raising=False)
        else:
            patch.setenv(EGRESS_ALLOW_ENV, allow)  # read at start, and by the task's own guard
        executor = LocalExecutor(base, prestarted=0, watchdog_interval=0.05, stop_grace_seconds=0.5)
        await executor.start()
    return executor


@pytest.fixture
async def strict(base_dir: Path) -> AsyncIterator[LocalExecutor]:
    executor = await _executor(base_dir / "strict", None)
    yield executor
    await executor.close()


@pytest.fixture
async def allowing(base_dir: Path, http_port: int) -> AsyncIterator[LocalExecutor]:
    # The operator admits the test server's port, and (in vain) the link-local range.
    executor = await _executor(base_dir / "allowing", f"127.0.0.1/32:{http_port} 169.254.0.0/16")
    yield executor
    await executor.close()


def ingest(url: str) -> AttemptSpec:
    return replace(python(""), task_type="ingest", params={"url": url, "format": "csv"})


async def test_ingest_fetches_through_the_proxy_where_the_operator_allows_it(
    allowing: LocalExecutor, http_port: int
) -> None:
    with capture_logs() as logs:
        result = await allowing.run(ingest(f"http://127.0.0.1:{http_port}/data.csv?sig=s3cr3t"))
    assert result.outcome == Outcome.SUCCEEDED, result.error
    assert result.outputs is not None
    assert result.outputs["rows"] == ROWS
    # The sandbox has no network: the bytes came through the proxy, which logged the
    # destination and nothing of the path or query.
    egress = [e for e in logs if e["event"] == "sandbox.egress"]
    assert egress, "the fetch did not go through the egress proxy"
    assert egress[0]["host"] == "127.0.0.1"
    assert egress[0]["port"] == http_port
    assert egress[0]["address"] == "127.0.0.1"
    assert egress[0]["allowed"] is True
    assert "s3cr3t" not in repr(logs)
    result.cleanup()


async def test_ingest_is_refused_loopback_without_the_operators_allowance(
    strict: LocalExecutor, http_port: int
) -> None:
    # A host name: the task's own guard cannot resolve it (no network); the proxy does, once.
    with capture_logs() as logs:
        result = await strict.run(ingest(f"http://localhost:{http_port}/data.csv"))
    assert result.outcome == Outcome.FAILED
    assert result.error is not None
    assert "egress refused: localhost port" in result.error
    assert "loopback" in result.error
    refused = [e for e in logs if e["event"] == "sandbox.egress"]
    assert [(e["host"], e["allowed"]) for e in refused] == [("localhost", False)]
    result.cleanup()


ESCAPE = """
import os, socket
def connect(address, host, port):
    with socket.create_connection(address, timeout=5) as s:
        s.sendall(f"CONNECT {host}:{port} HTTP/1.1\\r\\nHost: {host}:{port}\\r\\n\\r\\n".encode())
        return s.recv(300).decode(errors="replace").split("\\r\\n")[0]
def main(http_port):
    proxy = ("127.0.0.1", 8418)
    direct = {}
    for name, port in [("postgres", 5432), ("redis", 6379), ("http", http_port)]:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            direct[name] = "connected"
        except OSError:
            pass
    through = {
        "postgres": connect(proxy, "127.0.0.1", 5432),
        "redis": connect(proxy, "127.0.0.1", 6379),
        "metadata": connect(proxy, "169.254.169.254", 80),
        "private": connect(proxy, "10.1.2.3", 443),
        "allowed": connect(proxy, "127.0.0.1", http_port),
    }
    # Plain http: an absolute-form GET through the same proxy (what HTTP_PROXY clients send).
    with socket.create_connection(proxy, timeout=10) as s:
        url = f"http://127.0.0.1:{http_port}/data.csv"
        s.sendall(f"GET {url} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    fetched = len(answer.split(b"\\r\\n\\r\\n", 1)[1].splitlines())
    return {"direct": direct, "through": through, "fetched": fetched,
            "proxy": os.environ.get("HTTPS_PROXY")}
"""


async def test_code_in_an_egress_sandbox_reaches_only_what_the_proxy_admits(
    allowing: LocalExecutor, http_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Models a compromised ingest (a parser exploit): code running in an egress sandbox."""
    monkeypatch.setattr(local, "EGRESS_TYPES", local.EGRESS_TYPES | {"python"})
    log = Log()
    result = await allowing.run(python(ESCAPE, args={"http_port": http_port}), on_log=log)
    assert result.outcome == Outcome.SUCCEEDED, (result.error, log.text)
    outputs = result.outputs
    assert outputs is not None
    assert outputs["direct"] == {}, "an egress sandbox shares no network with the host"
    through = outputs["through"]
    for name in ("postgres", "redis"):
        assert through[name].startswith("HTTP/1.1 403 "), through
        assert "loopback" in through[name]
    # Never admitted, even though the operator's rule covers link-local.
    assert through["metadata"].startswith("HTTP/1.1 403 ")
    assert "metadata" in through["metadata"]
    assert through["private"].startswith("HTTP/1.1 403 ")
    assert "private" in through["private"]
    assert through["allowed"] == "HTTP/1.1 200 Connection established"
    assert outputs["fetched"] == ROWS + 1
    assert outputs["proxy"] == "http://127.0.0.1:8418"
    result.cleanup()


NO_WAY_OUT = """
import os, socket
def main():
    try:
        socket.create_connection(("127.0.0.1", 8418), timeout=2).close()
        port = "connected"
    except OSError:
        port = "refused"
    names = [n for n in os.environ if "proxy" in n.lower()]
    return {"port": port, "socket": os.path.exists("/run/armillary/egress.sock"), "env": names}
"""


async def test_a_python_task_cannot_reach_the_egress_proxy(strict: LocalExecutor) -> None:
    result = await strict.run(python(NO_WAY_OUT))
    assert result.outcome == Outcome.SUCCEEDED, result.error
    assert result.outputs == {"port": "refused", "socket": False, "env": []}
    result.cleanup()


async def test_a_name_is_resolved_once_and_its_private_answer_refused(tmp_path: Path) -> None:
    """DNS rebinding: the answer the proxy checks is the address it would connect to."""
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["93.184.215.14"] if len(lookups) > 1 else ["10.0.0.5"]

    proxy = EgressProxy(resolver=rebinding)
    path = tmp_path / "egress.sock"
    await proxy.listen_unix(path, None)
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"CONNECT internal.example:443 HTTP/1.1\r\nHost: internal.example\r\n\r\n")
        answer = (await reader.read(300)).decode()
        writer.close()
    finally:
        await proxy.close()
    assert answer.startswith("HTTP/1.1 403 ")
    assert "a private address" in answer
    assert lookups == ["internal.example"]
