"""The workflow engine's processes, ``armillary worker`` and ``armillary scheduler``.

Kept apart from the composition root (:mod:`armillary.app`) so that, in the distributed
shape, a worker or the scheduler loads the workflows service alone; in the embedded shape
they compose every service (the events they commit are dispatched to every service's
consumers in-process), and import :mod:`armillary.app` for that.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from armillary.contracts.identity import JobTokenRequest
from armillary.identity.client import IdentityClient
from armillary.kit import service_client
from armillary.kit.metrics import serve_metrics
from armillary.kit.runtime import Runtime
from armillary.kit.service_auth import ServiceCredentials
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.workflows.components import workflows_of
from armillary.workflows.execution.local import LocalExecutor, UidSettings
from armillary.workflows.execution.worker import Worker
from armillary.workflows.scheduling.scheduler import Scheduler
from armillary.workflows.settings import WorkflowSettings


def _stop_on_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)


def serve_engine_metrics(settings: WorkflowSettings, host: str) -> WSGIServer | None:
    """Processes without an HTTP API of their own (scheduler, worker) still need to be
    scraped: on ARMILLARY_WORKFLOWS_METRICS_PORT, bound to ARMILLARY_METRICS_HOST (loopback
    unless a pod's scraper must reach it)."""
    if settings.metrics_port is None:
        return None
    return serve_metrics(host, settings.metrics_port)


def default_work_root(settings: Settings) -> Path:
    """Attempts' private directories: under ARMILLARY_HOME, never in a shared /tmp where
    another user could create the directory first (each sandbox sees only its own)."""
    return settings.home / "work"


def _private_home(settings: Settings) -> None:
    # Task code runs as another user where the platform runs as root: keep it out of the
    # platform's files (database, keys, local object store).
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    if home.stat().st_uid == os.getuid():
        home.chmod(0o700)


def local_executor(
    work_root: Path,
    wf: WorkflowSettings,
    storage: StorageSettings | None = None,
    api_ca_file: Path | None = None,
) -> LocalExecutor:
    """The worker's sandboxing executor, configured from the settings (it checks the work
    root itself: the worker's own, 0700, no link). The sandboxes' proxies may reach the
    configured object store's endpoint, wherever it is, for presigned transfers."""
    return LocalExecutor(
        work_root,
        preload=wf.executor_preload,
        prestarted=wf.executor_prestarted,
        insecure_no_sandbox=wf.executor_insecure_no_sandbox,
        uids=UidSettings(first=wf.executor_uid_first, count=wf.executor_uid_count),
        pids_max=wf.executor_pids_max,
        cgroup_root=Path(wf.executor_cgroup_root) if wf.executor_cgroup_root else None,
        redirect_origins=(storage or StorageSettings()).presigned_origins(),
        api_ca_file=api_ca_file,
    )


def distributed(settings: Settings) -> bool:
    """The distributed shape: events over RabbitMQ and identity in a process of its own."""
    return settings.event_transport == "rabbitmq" and bool(settings.identity_url)


def engine_runtime(
    settings: Settings,
    role: str,
    *,
    storage_settings: StorageSettings | None = None,
    workflow_settings: WorkflowSettings | None = None,
) -> Runtime:
    """A worker's or scheduler's runtime. Distributed: the workflows service alone, the
    others over HTTP, events to their consumers over RabbitMQ. Embedded: every service, since
    the events this process commits are dispatched here, to consumers of every service."""
    if distributed(settings):
        from armillary.services import create_service_runtime

        return create_service_runtime(
            "workflows",
            settings,
            storage_settings=storage_settings,
            workflow_settings=workflow_settings,
            role=role,
        )
    from armillary.app import create_runtime  # every service: see the module's docstring

    return create_runtime(
        settings, storage_settings=storage_settings, workflow_settings=workflow_settings, role=role
    )


async def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    storage_settings: StorageSettings | None = None,
    workflow_settings: WorkflowSettings | None = None,
) -> None:
    """A worker process: runs queued tasks in local bubblewrap sandboxes until SIGTERM."""
    _private_home(settings)
    runtime = engine_runtime(
        settings, "worker", storage_settings=storage_settings, workflow_settings=workflow_settings
    )
    workflows = workflows_of(runtime)
    store = workflows.store
    if store is None:  # pragma: no cover - install() always sets it
        raise RuntimeError("the workflows service has no object store")
    directory = runtime.require_access().directory
    if not isinstance(directory, IdentityClient):  # pragma: no cover - wired above
        raise RuntimeError("the identity client is not wired")
    issuer = job_token_issuer(settings, directory)
    if issuer is not directory:

        async def close_issuer(_runtime: Runtime) -> None:
            await issuer.aclose()

        runtime.shutdown_hooks.append(close_issuer)

    async def issue(request: JobTokenRequest) -> tuple[str, datetime]:
        token = await issuer.issue_job_token(**request.model_dump())
        return token.token, token.expires_at

    wf = workflows.settings
    work_root = Path(wf.work_dir) if wf.work_dir else default_work_root(settings)
    worker = Worker(
        runtime.db,
        store,
        local_executor(work_root, wf, storage_settings, api_ca_file=settings.tls_ca_file),
        wf,
        issue_token=issue,
        api_url=wf.task_api_url or f"http://{settings.host}:{settings.port}",
        work_root=work_root,
        concurrency=concurrency,
    )
    serve_engine_metrics(wf, settings.metrics_host)
    await runtime.start()
    _stop_on_signals(worker.stop)
    try:
        await worker.run()
    finally:
        await runtime.stop()


def job_token_issuer(settings: Settings, in_process: IdentityClient) -> IdentityClient:
    """Who mints a worker's job tokens: with ARMILLARY_IDENTITY_URL set (the distributed
    shape), identity's own process, asked with the workflows service's credential (ADR 0021);
    otherwise ``in_process``."""
    if not settings.identity_url:
        return in_process
    service_client.trust(settings.tls_ca_file)
    credentials = ServiceCredentials.from_pem("workflows", settings.service_key_pem("workflows"))
    return IdentityClient.over_http(settings.identity_url, credentials=credentials)


async def run_scheduler(
    settings: Settings,
    *,
    storage_settings: StorageSettings | None = None,
    workflow_settings: WorkflowSettings | None = None,
) -> None:
    """A scheduler process (one is active at a time; others wait for its lock) until SIGTERM."""
    runtime = engine_runtime(
        settings,
        "scheduler",
        storage_settings=storage_settings,
        workflow_settings=workflow_settings,
    )
    workflows = workflows_of(runtime)
    scheduler = Scheduler(runtime.db, workflows.settings, store=workflows.store)
    serve_engine_metrics(workflows.settings, settings.metrics_host)
    await runtime.start()
    _stop_on_signals(scheduler.stop)
    try:
        await scheduler.run()
    finally:
        await runtime.stop()
