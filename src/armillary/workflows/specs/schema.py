"""The workflow spec (YAML or JSON) as Pydantic models; its JSON Schema is published.

Parameter values may be references, written as a whole string in a fixed syntax (nothing is
evaluated; see :mod:`armillary.workflows.specs.references`):

- ``${tasks.<task>.outputs.<key>}``: an output of a task upstream of this one (via ``needs``);
- ``${params.<name>}``: a parameter of the workflow (its default, or the value a job passes).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


class ScheduleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str = Field(max_length=255, description="Cron expression, evaluated in UTC")
    catchup: Literal["skip", "catch_up"] = Field(
        default="skip",
        description="Runs missed while the platform was down: skipped, or caught up",
    )
    max_catchup_runs: int = Field(
        default=10, ge=1, le=100, description="At most this many missed runs are caught up"
    )


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Lower-case slug, unique in the workflow")
    type: str = Field(max_length=64, description="A registered task type (GET /api/v1/task-types)")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Validated against the type's parameter schema; a value may be a reference "
            "`${tasks.<task>.outputs.<key>}` or `${params.<name>}`"
        ),
    )
    needs: list[str] = Field(
        default_factory=list, max_length=1_000, description="Tasks that must succeed first"
    )
    outputs: list[Identifier] = Field(
        default_factory=list,
        max_length=200,
        description="Output names, for task types whose outputs the spec declares",
    )
    retries: int = Field(default=0, ge=0, le=10)
    retry_backoff_seconds: float = Field(
        default=10.0, ge=0, le=3_600, description="First retry delay; doubles, with jitter"
    )
    timeout_seconds: float | None = Field(default=None, gt=0, le=7 * 86_400)
    cache: bool = Field(
        default=False,
        description="Reuse the outputs of an earlier run with the same type, params and inputs",
    )


class WorkflowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Workflow spec")

    name: str = Field(pattern=NAME_PATTERN, description="Lower-case slug, unique in the project")
    description: str = Field(default="", max_length=10_000)
    parameters: dict[Identifier, Any] = Field(
        default_factory=dict, description="Parameter name -> default value"
    )
    schedule: ScheduleSpec | None = None
    tasks: list[TaskSpec] = Field(min_length=1, max_length=2_000)


def spec_json_schema() -> dict[str, Any]:
    return WorkflowSpec.model_json_schema()
