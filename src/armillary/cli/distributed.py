"""``armillary up --distributed``: the production shape on one machine. The Envoy gateway on
ARMILLARY_PORT, one process per service, the scheduler and a pool of workers, on the
PostgreSQL, Redis and RabbitMQ given, each process restarted with back-off when it dies.

The same process layout is what the container images and the Helm chart package; this is
the way to try it without them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from armillary.cli.engine import worker_env
from armillary.cli.output import terminal
from armillary.kit.settings import CONSOLE_PORT

if TYPE_CHECKING:
    from armillary.kit.settings import Settings

SERVICES = ("identity", "data", "workflows", "registry", "serving", "tracking")
FIRST_RESTART_SECONDS = 1.0
MAX_RESTART_SECONDS = 30.0
# A process that stayed up this long starts its back-off from the beginning again.
HEALTHY_AFTER_SECONDS = 60.0

err = terminal(stderr=True)


class NotDistributable(Exception):
    """The settings cannot run the distributed shape (the message says what is missing)."""


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay: float = FIRST_RESTART_SECONDS
    next_start: float = 0.0
    restarts: int = 0

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.argv, env=self.env, start_new_session=True
        )
        self.started_at = time.monotonic()

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()


@dataclass
class Supervisor:
    children: list[Child]
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        for child in self.children:
            child.start()
        while not self.stopping.wait(0.5):
            self._tend(time.monotonic())

    def _tend(self, now: float) -> None:
        for child in self.children:
            code = child.exited()
            if code is None:
                continue
            if child.next_start == 0.0:
                # Exponential back-off, reset by a long enough healthy run.
                if now - child.started_at >= HEALTHY_AFTER_SECONDS:
                    child.delay = FIRST_RESTART_SECONDS
                child.next_start = now + child.delay
                err.print(
                    f"[yellow]{child.name} exited ({code}); restarting in {child.delay:.0f} s"
                    "[/yellow]"
                )
                child.delay = min(child.delay * 2, MAX_RESTART_SECONDS)
            elif now >= child.next_start:
                child.next_start = 0.0
                child.restarts += 1
                child.start()

    def stop(self) -> None:
        self.stopping.set()
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()


def check(settings: Settings) -> None:
    problems = []
    if not (settings.database_url or "").startswith("postgresql"):
        problems.append("ARMILLARY_DATABASE_URL must be a PostgreSQL URL")
    if not settings.redis_url:
        problems.append("ARMILLARY_REDIS_URL is not set")
    if not settings.rabbitmq_url:
        problems.append("ARMILLARY_RABBITMQ_URL is not set")
    if problems:
        raise NotDistributable("; ".join(problems))


def ensure_service_keys(settings: Settings) -> None:
    """Each service's key pair, made once under the keys directory (every process of this
    machine reads its own private key and the others' public keys from there)."""
    from armillary.kit.service_auth import write_key_pair

    directory = settings.service_keys_dir()
    for service in SERVICES:
        if not (directory / f"{service}.key").exists():
            write_key_pair(directory, service)


def role_environments(settings: Settings) -> dict[str, dict[str, str]]:
    """Make each service's role (``armillary db roles``, passwords kept under the home
    directory) and return the environment that makes a service's process connect as it."""
    import asyncio

    from sqlalchemy.engine import make_url

    from armillary.migrations import roles

    directory = settings.home / "database-roles"
    passwords = roles.passwords_in(directory)
    asyncio.run(roles.grant(settings, passwords))
    admin_url = make_url(settings.database_url or "")
    return {
        service: {
            "ARMILLARY_DATABASE_URL": admin_url.set(
                username=roles.role_name(service), password=None
            ).render_as_string(hide_password=False),
            "ARMILLARY_DATABASE_PASSWORD_FILE": str(directory / service),
        }
        for service in roles.SERVICES
    }


def children(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    role_env: dict[str, dict[str, str]] | None = None,
) -> list[Child]:
    """The process layout: gateway, six services, the console, a scheduler, ``workers``
    workers; with ``role_env``, each service connecting to the database as its role."""
    as_role = role_env or {}
    python = [sys.executable, "-m", "armillary.cli"]
    ports = metrics_ports(settings.metrics_port, workers)
    base = {**os.environ, "ARMILLARY_EVENT_TRANSPORT": "rabbitmq"}
    without_admin = {k: v for k, v in base.items() if k != "ARMILLARY_ADMIN_PASSWORD"}
    urls = settings.service_urls()
    layout = [
        Child(
            "gateway",
            [*python, "gateway"],
            {**without_admin, "ARMILLARY_HOST": host, "ARMILLARY_PORT": str(port)},
        )
    ]
    for service in SERVICES:
        url = urls[service]
        service_port = url.rsplit(":", 1)[-1].split("/")[0]
        env = base if service == "identity" else without_admin  # identity makes the admin
        layout.append(
            Child(
                service,
                [*python, "serve", service, "--host", "127.0.0.1", "--port", service_port],
                {**env, **as_role.get(service, {}), **_metrics_env(ports.get(service))},
            )
        )
    # The web console, a client of the gateway like any other (it has no database).
    api_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    api_scheme = "https" if settings.tls_cert_file else "http"
    console_port = console_url().rsplit(":", 1)[-1].split("/")[0]
    layout.append(
        Child(
            "console",
            [*python, "serve", "console", "--host", "127.0.0.1", "--port", console_port],
            {
                **without_admin,
                "ARMILLARY_CONSOLE_API_URL": f"{api_scheme}://{api_host}:{port}",
                **_metrics_env(ports.get("console")),
            },
        )
    )
    workflows_role = as_role.get("workflows", {})
    layout.append(
        Child(
            "scheduler",
            [*python, "scheduler"],
            {**without_admin, **workflows_role, **_metrics_env(ports.get("scheduler"), True)},
        )
    )
    # Tasks reach the API through the gateway, as any client does.
    tasks = {**worker_env(settings, host, port), **_keep_event_settings(base), **workflows_role}
    layout += [
        Child(
            f"worker-{n + 1}",
            [*python, "worker"],
            {**tasks, **_metrics_env(ports.get(f"worker-{n + 1}"), True)},
        )
        for n in range(workers)
    ]
    return layout


def console_url() -> str:
    """Where the gateway finds the console (ARMILLARY_CONSOLE_URL, as the gateway reads it)."""
    return os.environ.get("ARMILLARY_CONSOLE_URL") or f"http://127.0.0.1:{CONSOLE_PORT}"


def metrics_ports(first: int, workers: int) -> dict[str, int]:
    """Each process's own /metrics port, from ARMILLARY_METRICS_PORT on: the services in
    order, the scheduler, the workers, then the console (none when that setting is 0). The
    gateway's Envoy stats are on its admin listener."""
    if not first:
        return {}
    names = [*SERVICES, "scheduler", *(f"worker-{n + 1}" for n in range(workers)), "console"]
    return {name: first + offset for offset, name in enumerate(names)}


def _metrics_env(port: int | None, engine: bool = False) -> dict[str, str]:
    """The variables that make a child serve its metrics on ``port`` (off without one)."""
    env = {"ARMILLARY_METRICS_PORT": str(port or 0)}
    if engine:
        # The scheduler and workers serve theirs on the workflow engine's own setting.
        env["ARMILLARY_METRICS_PORT"] = "0"
        if port:
            env["ARMILLARY_WORKFLOWS_METRICS_PORT"] = str(port)
    return env


def _keep_event_settings(env: dict[str, str]) -> dict[str, str]:
    return {k: env[k] for k in ("ARMILLARY_EVENT_TRANSPORT",)}


def run(
    settings: Settings, host: str, port: int, workers: int, *, database_roles: bool = False
) -> None:
    check(settings)
    ensure_service_keys(settings)
    role_env = role_environments(settings) if database_roles else None
    supervisor = Supervisor(children(settings, host, port, workers, role_env))

    def stop(_signum: int, _frame: object) -> None:
        supervisor.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    err.print(
        f"Armillary (distributed) on http://{host}:{port}: gateway, "
        f"{', '.join(SERVICES)}, console, scheduler, {workers} workers"
    )
    try:
        supervisor.run()
    finally:
        supervisor.stop()
