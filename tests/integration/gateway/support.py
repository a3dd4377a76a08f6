"""Envoy in front of the embedded platform: every service cluster points at one process."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY
from tests.integration.workflows.engine import serve
from tests.ports import free_port

from armillary.gateway.runner import envoy_command, write_config
from armillary.gateway.settings import UPSTREAMS, GatewaySettings


@dataclass
class Gateway:
    url: str
    stats_url: str
    settings: GatewaySettings
    process: subprocess.Popen[bytes]
    log: Path


def upstream_requests() -> float:
    """Requests the platform (the upstream) handled, by its own Prometheus counter; the
    gateway's JWKS fetches left out."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name != "armillary_http_requests":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total") and "jwks" not in sample.labels["route"]:
                total += sample.value
    return total


@contextlib.asynccontextmanager
async def gateway_for(app: FastAPI, tmp_path: Path, **overrides: str) -> AsyncIterator[Gateway]:
    """Serve ``app`` on a free port and run Envoy in front of it; ``overrides`` replace
    settings (e.g. one service's URL)."""
    runtime_settings = app.state.runtime.settings
    async with contextlib.asynccontextmanager(serve)(app, free_port()) as upstream:
        values: dict[str, object] = {f"{service}_url": upstream for service in UPSTREAMS}
        values.update(
            host="127.0.0.1",
            port=free_port(),
            jwt_issuer=runtime_settings.jwt_issuer,
            jwt_audience=runtime_settings.jwt_audience,
            gateway_admin_port=free_port(),
            gateway_stats_port=free_port(),
            gateway_ejection_seconds=30,
            gateway_route_timeout_seconds=20,
        )
        values.update(overrides)
        settings = GatewaySettings.model_validate(values)
        config = write_config(settings, tmp_path / "envoy.yaml")
        log = tmp_path / "envoy.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                envoy_command(settings, config), stdout=out, stderr=subprocess.STDOUT
            )
        gateway = Gateway(
            url=f"http://127.0.0.1:{settings.port}",
            stats_url=f"http://127.0.0.1:{settings.gateway_stats_port}",
            settings=settings,
            process=process,
            log=log,
        )
        try:
            await _ready(gateway)
            yield gateway
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _ready(gateway: Gateway, timeout: float = 30) -> None:
    """Envoy is up once its public listener answers (it opens after the first JWKS fetch)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            assert gateway.process.poll() is None, gateway.log.read_text(errors="replace")
            with contextlib.suppress(httpx.TransportError):
                response = await client.get(f"{gateway.url}/api/v1/auth/jwks")
                if response.status_code == 200:
                    return
            assert time.monotonic() < deadline, gateway.log.read_text(errors="replace")
            await asyncio.sleep(0.1)
