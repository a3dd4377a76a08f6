"""Task type contracts: each type's name, parameter model and output model.

The workflow service validates every task of a spec against these contracts without importing
the service that implements the type; implementations register under the
``armillary.task_types`` entry point group and are loaded by the workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


@dataclass(frozen=True, slots=True)
class TaskTypeContract:
    """What a task type takes and produces.

    ``dynamic_outputs`` types produce the outputs the spec declares in the task's ``outputs``
    list (e.g. a user's Python function); the others produce the fields of ``outputs``.
    ``server_checks`` maps a parameter to a check only the server can make (a named object
    exists in the project); offline validation lists those checks as skipped.
    """

    name: str
    description: str
    params: type[BaseModel]
    outputs: type[BaseModel]
    dynamic_outputs: bool = False
    server_checks: dict[str, str] = field(default_factory=dict)
    # Parameters that name upstream tasks whose tables the task reads (``input``: one name,
    # ``inputs``: a list): each must be upstream of the task, through ``needs``.
    input_params: tuple[str, ...] = ()


@dataclass
class TaskContext:
    """What a running task implementation knows about its attempt.

    The job token stays in memory (never in the environment, argv, files or logs) and out of
    ``repr``; implementations call the platform API with :meth:`api_headers`.
    """

    job_id: str
    project_id: str
    task: str
    attempt_id: str
    workdir: Path
    artifacts_dir: Path
    api_url: str
    _token: str = field(default="", repr=False)
    bundle_dir: Path | None = None

    def token(self) -> str:
        """The short-lived token scoped to this job."""
        return self._token

    def api_headers(self) -> dict[str, str]:
        """Headers that authenticate a call to the platform API as this job."""
        return {"Authorization": f"Bearer {self._token}"}


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

TASK_TYPES: dict[str, TaskTypeContract] = {c.name: c for c in (PYTHON, NOOP, SLEEP, FAIL)}

# The data service's task types (declared in their own module, registered here so that every
# service sees one registry). Imported last: that module builds on the classes above.
from armillary.contracts.data_tasks import DATA_TASK_TYPES  # noqa: E402

TASK_TYPES.update(DATA_TASK_TYPES)

from armillary.contracts.quality import ValidateOutputs, ValidateParams  # noqa: E402

VALIDATE = TaskTypeContract(
    name="validate",
    description=(
        "Checks the table of the upstream task `input` (schema, nulls, uniqueness, ranges, "
        "sets, patterns, row count, freshness, null ratio, SQL predicates, drift against a "
        "reference dataset version). A failed `error` check fails the task with its report, "
        "so nothing downstream runs (fail closed); `warn` checks are only recorded."
    ),
    params=ValidateParams,
    outputs=ValidateOutputs,
    input_params=("input",),
)
TASK_TYPES[VALIDATE.name] = VALIDATE
