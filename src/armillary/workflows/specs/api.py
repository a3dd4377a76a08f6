"""The spec's JSON Schema and the registered task types, for editors and tools."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from armillary.contracts.task_base import TaskTypeContract
from armillary.kit.authz import Caller

from ..components import current_workflows
from .schema import spec_json_schema

router = APIRouter(prefix="/api/v1", tags=["workflows"])


class TaskTypeOut(BaseModel):
    name: str
    description: str
    params_schema: dict[str, Any]
    outputs_schema: dict[str, Any]
    dynamic_outputs: bool
    server_checks: dict[str, str]


# Both documents describe each estimator's hyperparameters, which imports scikit-learn and
# the boosting libraries the first time: in a worker thread, not on the event loop.


@router.get("/workflow-spec/schema", name="workflows.spec_schema")
async def get_spec_schema(request: Request, _caller: Caller) -> dict[str, Any]:
    """The JSON Schema of a workflow spec (YAML or JSON): the registered task types as an
    ``enum``, and each type's parameters (for ``train``: the allowed estimators and their
    hyperparameters with types and ranges)."""
    types = current_workflows(request).task_types
    return await run_in_threadpool(spec_json_schema, types)


@router.get("/task-types", name="workflows.task_types")
async def list_task_types(request: Request, _caller: Caller) -> list[TaskTypeOut]:
    """Every registered task type with the JSON Schema of its parameters and outputs (for
    ``train``: the allowed estimators as an ``enum``, each with its hyperparameters)."""
    types = current_workflows(request).task_types
    return await run_in_threadpool(_task_types_out, types)


def _task_types_out(types: Mapping[str, TaskTypeContract]) -> list[TaskTypeOut]:
    return [
        TaskTypeOut(
            name=contract.name,
            description=contract.description,
            params_schema=contract.params.model_json_schema(),
            outputs_schema=contract.outputs.model_json_schema(),
            dynamic_outputs=contract.dynamic_outputs,
            server_checks=contract.server_checks,
        )
        for contract in sorted(types.values(), key=lambda c: c.name)
    ]
