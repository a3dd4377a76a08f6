"""A running engine for tests: the API served over real HTTP in the test's event loop, and the
scheduler and workers as processes of their own (`armillary scheduler`, `armillary worker`),
all on the test's PostgreSQL database and ARMILLARY_HOME."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from tests.conftest import REDIS_URL, TEST_SECRET, Api, auth

from armillary.kit.http_server import server_options
from armillary.kit.settings import Settings

TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Engine:
    settings: Settings
    base_url: str
    logs: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """Start ``armillary <args>`` as process ``name`` (its output in ``logs/name.log``)."""
        out = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "armillary.cli", *args],
            env={**self.env, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        return process

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def output(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)


def engine_env(settings: Settings, base_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
    env.update(
        ARMILLARY_HOME=str(settings.home),
        ARMILLARY_DATABASE_URL=str(settings.database_url),
        ARMILLARY_REDIS_URL=REDIS_URL,
        ARMILLARY_SECRET_KEY=TEST_SECRET,
        ARMILLARY_LOG_JSON="true",
        # Twelve heartbeats: a worker starved by a loaded two-core CI machine still renews in
        # time (at 3 s, attempts being killed or cancelled were closed as lost), and a killed
        # worker's task still comes back within seconds.
        ARMILLARY_WORKFLOWS_LEASE_SECONDS="6",
        ARMILLARY_WORKFLOWS_HEARTBEAT_SECONDS="0.5",
        ARMILLARY_WORKFLOWS_POLL_SECONDS="0.5",
        ARMILLARY_WORKFLOWS_LOG_FLUSH_SECONDS="0.2",
        ARMILLARY_WORKFLOWS_TASK_API_URL=base_url,
        ARMILLARY_WORKFLOWS_TASK_MEMORY_MB="1024",
        # No warm sandboxes: these tests start many short-lived workers, and each warm one
        # preloads numpy and polars under coverage (several CPU seconds on a two-core CI
        # machine) mostly to be thrown away when the worker stops. Attempts start their own;
        # the warm pool has its tests in test_local_executor.py.
        ARMILLARY_WORKFLOWS_EXECUTOR_PRESTARTED="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


async def serve(app: FastAPI, port: int) -> AsyncIterator[str]:
    """Serve ``app`` (already started) on 127.0.0.1:``port`` in this event loop."""
    # The product's own server options (its keep-alive above all), minus TLS and lifespan.
    options = {**server_options(Settings(tls_cert_file=None)), "lifespan": "off"}
    config = uvicorn.Config(app, host="127.0.0.1", port=port, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class Steps(Api):
    """A user's steps over real HTTP."""

    async def workflow(self, token: str, project: str, spec: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/v1/projects/{project}/workflows", json=spec, headers=auth(token)
        )
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    async def run(
        self, token: str, project: str, workflow: str, **parameters: Any
    ) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/v1/projects/{project}/workflows/{workflow}/jobs",
            json={"parameters": parameters},
            headers=auth(token),
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def job(self, token: str, job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/jobs/{job_id}", headers=auth(token))
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def wait(
        self, token: str, job_id: str, *, until: set[str] = TERMINAL, timeout: float = 90
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(token, job_id)
            if job["status"] in until:
                return job
            assert time.monotonic() < deadline, f"job still {job['status']}: {job}"
            await asyncio.sleep(0.1)

    async def wait_task(
        self, token: str, job_id: str, task: str, status: str, timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(token, job_id)
            run = next(t for t in job["tasks"] if t["name"] == task)
            if run["status"] == status:
                return dict(run)
            assert time.monotonic() < deadline, f"{task} still {run['status']}: {job}"
            await asyncio.sleep(0.05)

    async def logs(self, token: str, job_id: str, task: str, **params: Any) -> str:
        response = await self.client.get(
            f"/api/v1/jobs/{job_id}/tasks/{task}/logs", params=params, headers=auth(token)
        )
        assert response.status_code == 200, response.text
        return response.text


def tasks_by_name(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in job["tasks"]}


def client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=30)
