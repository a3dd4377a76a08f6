"""The workflow engine's processes: ``armillary worker``, ``armillary scheduler``, and the
local worker pool ``armillary up`` supervises."""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from armillary.kit.settings import Settings

RESTART_DELAY_SECONDS = 2.0
_PR_SET_PDEATHSIG = 1


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Attempts run at once [ARMILLARY_WORKFLOWS_WORKER_CONCURRENCY]"),
    ] = None,
) -> None:
    """Run tasks: take queued tasks under a lease and run each attempt in a sandboxed child
    process, until SIGTERM."""
    from armillary.engine import run_worker
    from armillary.kit import tracing
    from armillary.kit.logging import configure_logging
    from armillary.kit.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    tracing.setup("worker")
    asyncio.run(run_worker(settings, concurrency=concurrency))


def scheduler() -> None:
    """Run the scheduler (one is active at a time: others stand by for its lock)."""
    from armillary.engine import run_scheduler
    from armillary.kit import tracing
    from armillary.kit.logging import configure_logging
    from armillary.kit.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    tracing.setup("scheduler")
    asyncio.run(run_scheduler(settings))


class WorkerPool:
    """Local worker processes, restarted when one dies, stopped when this process exits."""

    def __init__(self, count: int, env: dict[str, str]) -> None:
        self.count = count
        self.env = env
        self.processes: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Event()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "armillary.cli", "worker"],
            env=self.env,
            preexec_fn=_die_with_parent,
        )

    def start(self) -> None:
        self.processes = [self._spawn() for _ in range(self.count)]
        atexit.register(self.stop)
        threading.Thread(target=self._supervise, name="worker-pool", daemon=True).start()

    def _supervise(self) -> None:
        while not self._stopping.wait(RESTART_DELAY_SECONDS):
            for index, process in enumerate(self.processes):
                if process.poll() is not None and not self._stopping.is_set():
                    self.processes[index] = self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()


def _die_with_parent() -> None:
    # A worker outlives neither a killed `armillary up` nor its terminal.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# What a worker reads (F16): its settings, the runtime's own variables, cloud credentials of
# the object store and of remote backends. Not the bootstrap admin's password, nor anything
# else `armillary up` happened to inherit (other services' tokens, an SSH agent).
# OTEL_*: the workers trace as the API does (ADR 0031); the sandboxes never see them.
_WORKER_ENV_PREFIXES = ("ARMILLARY_", "AWS_", "LC_", "PYTHON", "COVERAGE_", "OTEL_")
_WORKER_ENV_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "TZ",
        "TMPDIR",
        "VIRTUAL_ENV",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
    }
)
_WORKER_ENV_WITHHELD = frozenset({"ARMILLARY_ADMIN_PASSWORD"})


def _worker_needs(name: str) -> bool:
    if name in _WORKER_ENV_WITHHELD:
        return False
    return name in _WORKER_ENV_NAMES or name.startswith(_WORKER_ENV_PREFIXES)


def worker_env(settings: Settings, host: str, port: int) -> dict[str, str]:
    """The workers' environment: the variables of this one a worker uses (no admin password,
    nothing else inherited), plus the address tasks call the API on."""
    env = {name: value for name, value in os.environ.items() if _worker_needs(name)}
    if "ARMILLARY_WORKFLOWS_TASK_API_URL" not in env:
        reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
        scheme = "https" if settings.tls_cert_file else "http"
        env["ARMILLARY_WORKFLOWS_TASK_API_URL"] = f"{scheme}://{reachable}:{port}"
    env["ARMILLARY_HOME"] = str(settings.home.resolve())
    return env
