"""The scheduler's and the worker's metrics listener binds where ARMILLARY_METRICS_HOST says:
loopback by default, another address when a pod's scraper must reach it."""

from __future__ import annotations

import socket
import urllib.request

from tests.ports import free_port

from armillary.engine import serve_engine_metrics
from armillary.workflows.settings import WorkflowSettings


def _refused(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) != 0


def test_off_without_a_port() -> None:
    assert serve_engine_metrics(WorkflowSettings(metrics_port=None), "127.0.0.1") is None


def test_binds_the_configured_host_only() -> None:
    port = free_port()
    server = serve_engine_metrics(WorkflowSettings(metrics_port=port), "127.0.0.2")
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5) as response:
            assert b"python_info" in response.read()
        assert _refused("127.0.0.1", port)  # not every address: only the configured one
    finally:
        server.shutdown()
        server.server_close()
