"""Wires the workflows service into a runtime."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter

from armillary.contracts.tasks import TaskTypeContract
from armillary.kit.runtime import Runtime

from .components import SERVICE, Workflows
from .definitions.api import router as workflows_router
from .jobs.api import router as jobs_router
from .specs.api import router as specs_router

ROUTERS: list[APIRouter] = [workflows_router, specs_router, jobs_router]


def install(
    runtime: Runtime, *, task_types: Mapping[str, TaskTypeContract] | None = None
) -> Workflows:
    workflows = Workflows.create(runtime, task_types=task_types)
    runtime.services[SERVICE] = workflows
    return workflows
