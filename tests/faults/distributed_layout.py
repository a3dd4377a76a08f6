"""The distributed shape as real processes for fault tests: `armillary serve <service>` (one or
more copies of each), schedulers and workers, on a private PostgreSQL (or a pooler in front of
it), the shared Redis and a RabbitMQ virtual host of the test's own; no gateway (the tests
call the service ports)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from armillary.cli.distributed import role_environments
from armillary.kit.service_auth import write_key_pair
from tests.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    REDIS_URL,
    TEST_SECRET,
    Api,
    auth,
    make_settings,
)
from tests.ports import free_port

SERVICES = ("identity", "data", "workflows", "registry", "serving")
NOOP = {"name": "nightly", "tasks": [{"name": "fit", "type": "noop"}]}
FINISHED = ("succeeded", "failed", "cancelled")


@dataclass
class Layout:
    root: Path
    env: dict[str, str]
    # Each service copy's port: "identity", "identity-2", ...
    ports: dict[str, int]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Each process's /metrics listener, when launched with ``metrics=True``.
    metrics_ports: dict[str, int] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def copies(self, service: str) -> list[str]:
        return [name for name in self.ports if name.split("-")[0] == service]

    def start(self, name: str, argv: list[str], **env: str) -> None:
        out = (self.root / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "armillary.cli", *argv],
            env={**self.env, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        for name in self.ports:
            while True:
                self.assert_alive()
                try:
                    if httpx.get(f"{self.url(name)}/readyz", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, self.output(name)
                time.sleep(0.3)

    def assert_alive(self) -> None:
        exited = {n: p.poll() for n, p in self.processes.items() if p.poll() is not None}
        assert not exited, (exited, [self.output(n) for n in exited])

    def output(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


def launch(
    root: Path,
    database_url: str,
    vhost: str,
    *,
    copies: int = 1,
    schedulers: int = 1,
    workers: int = 1,
    service_env: dict[str, str] | None = None,
    database_roles: bool = False,
    metrics: bool = False,
) -> Layout:
    """Start the layout (the caller stops it with :meth:`Layout.stop_all`). ``service_env``
    goes to the service processes only (a pooler's DSN): schedulers and workers hold session
    features (leader lock, LISTEN) and keep ``database_url``. With ``database_roles`` each
    process connects as its service's own role (ADR 0026), as `up --distributed
    --database-roles` runs them. With ``metrics`` each process serves /metrics on a port of
    its own (``Layout.metrics_ports``), as the deployed shape does."""
    home = root / "home"
    as_role: dict[str, dict[str, str]] = {}
    if database_roles:
        as_role = role_environments(make_settings(home, database_url=database_url))
    for service in SERVICES:
        write_key_pair(home / "service-keys", service)
    ports = {
        (service if n == 0 else f"{service}-{n + 1}"): free_port()
        for service in SERVICES
        for n in range(copies)
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
    env.update(
        {f"ARMILLARY_{s.upper()}_URL": f"http://127.0.0.1:{ports[s]}" for s in SERVICES},
        ARMILLARY_HOME=str(home),
        ARMILLARY_DATABASE_URL=database_url,
        ARMILLARY_REDIS_URL=REDIS_URL,
        ARMILLARY_EVENT_TRANSPORT="rabbitmq",
        ARMILLARY_RABBITMQ_URL=f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        ARMILLARY_SECRET_KEY=TEST_SECRET,
        ARMILLARY_ADMIN_EMAIL=ADMIN_EMAIL,
        ARMILLARY_ADMIN_PASSWORD=ADMIN_PASSWORD,
        ARMILLARY_ARGON2_TIME_COST="1",
        ARMILLARY_ARGON2_MEMORY_COST_KIB="8",
        ARMILLARY_RATE_LIMIT_AUTH="1000/minute",
        ARMILLARY_RATE_LIMIT_READ="100000/minute",
        ARMILLARY_RATE_LIMIT_WRITE="10000/minute",
        ARMILLARY_METRICS_PORT="0",
        ARMILLARY_LOG_LEVEL="WARNING",
        ARMILLARY_WORKFLOWS_TASK_API_URL=f"http://127.0.0.1:{ports['workflows']}",
        PYTHONUNBUFFERED="1",
    )
    layout = Layout(root, env, ports)

    def metrics_env(name: str, variable: str) -> dict[str, str]:
        if not metrics:
            return {}
        layout.metrics_ports[name] = free_port()
        return {variable: str(layout.metrics_ports[name])}

    try:
        for name, port in ports.items():
            service = name.split("-")[0]
            argv = ["serve", service, "--host", "127.0.0.1", "--port", str(port)]
            extra = metrics_env(name, "ARMILLARY_METRICS_PORT")
            layout.start(name, argv, **{**as_role.get(service, {}), **(service_env or {}), **extra})
        workflows_role = as_role.get("workflows", {})
        for kind, count in (("scheduler", schedulers), ("worker", workers)):
            for n in range(count):
                name = f"{kind}-{n + 1}"
                extra = metrics_env(name, "ARMILLARY_WORKFLOWS_METRICS_PORT")
                layout.start(name, [kind], **{**workflows_role, **extra})
        layout.wait_ready()
    except BaseException:
        layout.stop_all()
        raise
    return layout


@dataclass
class Scene:
    """A data scientist's project with the noop workflow ``nightly``."""

    token: str
    project: str


@asynccontextmanager
async def http(layout: Layout, name: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=layout.url(name), timeout=30) as client:
        yield client


async def scene(layout: Layout) -> Scene:
    async with http(layout, "identity") as identity, http(layout, "workflows") as workflows:
        api = Api(identity)
        user = await api.create_user(await api.admin_token(), "data_scientist")
        project = (await api.create_project(user["token"]))["slug"]
        created = await workflows.post(
            f"/api/v1/projects/{project}/workflows", json=NOOP, headers=auth(user["token"])
        )
        assert created.status_code == 201, created.text
    return Scene(user["token"], project)


async def submit(client: httpx.AsyncClient, scene: Scene) -> httpx.Response:
    return await client.post(
        f"/api/v1/projects/{scene.project}/workflows/nightly/jobs",
        json={},
        headers=auth(scene.token),
    )


async def wait_jobs(
    layout: Layout, scene: Scene, job_ids: list[str], timeout: float = 180
) -> dict[str, Any]:
    """Each job's final status, once all are finished."""
    deadline = time.monotonic() + timeout
    done: dict[str, Any] = {}
    async with http(layout, "workflows") as client:
        while len(done) < len(job_ids):
            for job_id in job_ids:
                if job_id in done:
                    continue
                answer = await client.get(f"/api/v1/jobs/{job_id}", headers=auth(scene.token))
                if answer.status_code == 200 and answer.json()["status"] in FINISHED:
                    done[job_id] = answer.json()["status"]
            assert time.monotonic() < deadline, (done, layout.output("worker-1"))
            await asyncio.sleep(0.5)
    return done


def read_paths(scene: Scene) -> dict[str, str]:
    """A read of each service's for ``scene``'s project, each from the database (identity's
    project page answers from the cached access answer, ADR 0048: its members do not)."""
    base = f"/api/v1/projects/{scene.project}"
    return {
        "identity": f"{base}/members",
        "data": f"{base}/datasets",
        "workflows": f"{base}/workflows",
        "registry": f"{base}/models",
        "serving": f"{base}/deployments",
    }
