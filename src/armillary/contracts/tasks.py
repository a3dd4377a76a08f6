"""Task type contracts: each type's name, parameter model and output model.

The workflow service validates every task of a spec against these contracts without importing
the service that implements the type; implementations register under the
``armillary.task_types`` entry point group and are loaded by the workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .data_tasks import DATA_TASK_TYPES, DatasetName
from .quality import VALIDATE
from .registry import REGISTRY_TASK_TYPES
from .serving import SERVING_TASK_TYPES
from .task_base import TaskContext, TaskTypeContract
from .training import TRAINING_TASK_TYPES

__all__ = ["TASK_TYPES", "TaskContext", "TaskTypeContract"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoOutputs(BaseModel):
    """A type whose outputs are declared by the spec, or that produces none."""

    model_config = ConfigDict(extra="forbid")


class PythonParams(_Params):
    source: str | None = Field(
        default=None, max_length=200_000, description="Inline Python source defining the function"
    )
    bundle: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Name of a code bundle uploaded to the project",
    )
    entrypoint: str = Field(
        default="main",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        max_length=200,
        description="Function to call: a name in the source, or module.function in a bundle",
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed to the function"
    )
    reads: list[DatasetName] = Field(
        default_factory=list,
        max_length=100,
        description="Datasets of the project the function reads through the API (its job "
        "token may read no others)",
    )
    writes: list[DatasetName] = Field(
        default_factory=list,
        max_length=100,
        description="Datasets of the project the function writes versions of (no others)",
    )

    @model_validator(mode="after")
    def _one_code_source(self) -> PythonParams:
        if (self.source is None) == (self.bundle is None):
            raise ValueError("give exactly one of `source` (inline code) or `bundle`")
        return self


class NoopParams(_Params):
    values: dict[str, Any] = Field(
        default_factory=dict,
        description="Returned as the task's outputs (declare their names in `outputs`)",
    )


class SleepParams(_Params):
    seconds: float = Field(ge=0, le=86_400, description="How long to sleep")


class SleepOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(description="How long the task slept")


class FailParams(_Params):
    message: str = Field(default="failed on purpose", max_length=2_000)


PYTHON = TaskTypeContract(
    name="python",
    description=(
        "Calls a user function, from inline `source` or a project code `bundle`, with `args` "
        "and the outputs of the tasks it needs; it returns a JSON object of outputs, whose "
        "names the task declares in `outputs`. Runs in a separate process with resource limits."
    ),
    params=PythonParams,
    outputs=NoOutputs,
    dynamic_outputs=True,
    reads_datasets=("reads",),
    writes_datasets=("writes",),
    server_checks={"bundle": "code bundle exists in the project"},
)
NOOP = TaskTypeContract(
    name="noop",
    description="Does nothing and returns `values` as its outputs (for tests and benchmarks).",
    params=NoopParams,
    outputs=NoOutputs,
    dynamic_outputs=True,
)
SLEEP = TaskTypeContract(
    name="sleep",
    description="Sleeps for `seconds` (for tests of timeouts and cancellation).",
    params=SleepParams,
    outputs=SleepOutputs,
)
FAIL = TaskTypeContract(
    name="fail",
    description="Fails with `message` (for tests of retries and upstream failures).",
    params=FailParams,
    outputs=NoOutputs,
)

TASK_TYPES: dict[str, TaskTypeContract] = {c.name: c for c in (PYTHON, NOOP, SLEEP, FAIL, VALIDATE)}

# The other services' task types, declared in their own modules, in one registry that every
# service sees.
TASK_TYPES.update(DATA_TASK_TYPES)
TASK_TYPES.update(TRAINING_TASK_TYPES)
TASK_TYPES.update(REGISTRY_TASK_TYPES)
TASK_TYPES.update(SERVING_TASK_TYPES)


def declared_datasets(
    tasks: Iterable[tuple[str, Mapping[str, Any]]],
) -> tuple[frozenset[str], frozenset[str]]:
    """The datasets a job's tasks (type, params) name as read and as written: all its job
    tokens may touch (ADR 0014)."""
    reads: set[str] = set()
    writes: set[str] = set()
    for task_type, params in tasks:
        contract = TASK_TYPES.get(task_type)
        if contract is None:
            continue
        for names, found in ((contract.reads_datasets, reads), (contract.writes_datasets, writes)):
            for param in names:
                value = params.get(param)
                values = value if isinstance(value, list) else [value]
                found.update(v for v in values if isinstance(v, str))
    return frozenset(reads), frozenset(writes)
