"""Wires the workflows service into a runtime, and its app for other services' clients."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from fastapi import APIRouter, FastAPI

from armillary.contracts.tasks import TaskTypeContract
from armillary.kit.runtime import Runtime
from armillary.kit.service_status import service_status_router
from armillary.kit.storage import ObjectStore, StorageSettings, open_object_store

from .alerts import consumers as alert_consumers
from .alerts.alertmanager import router as alertmanager_router
from .alerts.api import router as alerts_router
from .alerts.delivery import ALERTS, Alerts
from .artifacts.api import router as artifacts_router
from .code.api import router as code_router
from .components import SERVICE, Workflows
from .definitions.api import router as workflows_router
from .jobs import onnx_exports
from .jobs.api import router as jobs_router
from .logs.api import router as logs_router
from .scheduling.scheduler import Scheduler
from .settings import WorkflowSettings
from .specs.api import router as specs_router
from .system.api import router as system_router

ROUTERS: list[APIRouter] = [
    workflows_router,
    specs_router,
    jobs_router,
    logs_router,
    artifacts_router,
    code_router,
    alerts_router,
    alertmanager_router,
    service_status_router("workflows"),
    system_router,
]


def install(
    runtime: Runtime,
    *,
    task_types: Mapping[str, TaskTypeContract] | None = None,
    storage_settings: StorageSettings | None = None,
    store: ObjectStore | None = None,
    settings: WorkflowSettings | None = None,
    run_scheduler: bool = False,
) -> Workflows:
    """Put the workflows service on ``runtime``; with ``run_scheduler`` the scheduler runs in
    this process while the runtime does (the embedded shape)."""
    workflows = Workflows.create(runtime, task_types=task_types)
    workflows.settings = settings or WorkflowSettings()
    # Code bundles: the same store settings as the data service (ARMILLARY_STORAGE_*).
    workflows.store = store or open_object_store(
        storage_settings or StorageSettings(),
        home=runtime.settings.home,
        signing_secret=runtime.settings.resolved_secret_key(),
    )
    runtime.services[SERVICE] = workflows
    onnx_exports.subscribe(runtime.bus)
    _install_alerts(runtime, workflows.settings)
    if run_scheduler:
        scheduler = Scheduler(runtime.db, workflows.settings, store=workflows.store)

        async def start_scheduler(rt: Runtime) -> None:
            rt.tasks.append(asyncio.create_task(scheduler.run(), name="workflows.scheduler"))

        async def stop_scheduler(_rt: Runtime) -> None:
            scheduler.stop()

        runtime.startup_hooks.append(start_scheduler)
        runtime.shutdown_hooks.append(stop_scheduler)
    return workflows


def create_internal_app(runtime: Runtime) -> FastAPI:
    """The workflows routes on a runtime someone else starts (the embedded composition), for
    other services' :class:`~.client.WorkflowsClient` in-process. Never exposed to clients:
    no edge layers (rate limits), the caller's own token still authorizes every request."""
    from armillary.kit.app_factory import build_app

    return build_app(
        runtime,
        title="Armillary workflows (internal)",
        routers=ROUTERS,
        edge=False,
        manage_runtime=False,
    )


def _install_alerts(runtime: Runtime, settings: WorkflowSettings) -> None:
    """Alert consumers on the bus; the delivery loop (and deadline check) while running."""
    alerts = Alerts.create(runtime, settings)
    runtime.services[ALERTS] = alerts
    alert_consumers.subscribe(runtime.bus, alerts)
    if not settings.alert_delivery_enabled:
        return

    async def start_alerts(rt: Runtime) -> None:
        rt.tasks.append(asyncio.create_task(alerts.run(), name="workflows.alerts"))

    async def stop_alerts(_rt: Runtime) -> None:
        alerts.stop()

    runtime.startup_hooks.append(start_alerts)
    runtime.shutdown_hooks.append(stop_alerts)
