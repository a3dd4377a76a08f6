"""The workflow spec (YAML or JSON) as Pydantic models; its JSON Schema is published.

Parameter values may be references, written as a whole string in a fixed syntax (nothing is
evaluated; see :mod:`armillary.workflows.specs.references`):

- ``${tasks.<task>.outputs.<key>}``: an output of a task upstream of this one (via ``needs``);
- ``${params.<name>}``: a parameter of the workflow (its default, or the value a job passes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from armillary.contracts.task_base import TaskTypeContract

from . import references

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]

# Where an attempt runs: in a sandbox (always, unless the spec opts out), or inside the
# worker's own process, for the trusted built-in types below only (ADR 0047).
SANDBOX: Final = "sandbox"
IN_PROCESS: Final = "in_process"
Isolation = Literal["sandbox", "in_process"]
# Types that run no user code and need neither the API nor limits: `noop` only. Never
# `python`, `transform` (user SQL), `ingest`, code bundles or anything that calls out.
IN_PROCESS_TYPES = frozenset({"noop"})


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
    isolation: Isolation = Field(
        default=SANDBOX,
        description=(
            "`sandbox` (the default), or `in_process`: run inside the worker without a "
            "sandbox, an opt-in allowed only for the trusted built-in types "
            f"{', '.join(sorted(IN_PROCESS_TYPES))} (ADR 0047)"
        ),
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


_REFERENCE = {"$ref": "#/$defs/Reference"}


def spec_json_schema(task_types: Mapping[str, TaskTypeContract] | None = None) -> dict[str, Any]:
    """The JSON Schema of a workflow spec. With ``task_types``, a task's ``type`` is one of
    them and its ``params`` follow that type's parameter schema (the estimators of ``train``
    with their hyperparameters, ...), where any value may also be a reference."""
    schema = WorkflowSpec.model_json_schema()
    if task_types is None:
        return schema
    defs: dict[str, Any] = schema["$defs"]
    defs["Reference"] = references.json_schema()
    task = defs["TaskSpec"]
    task["properties"]["type"]["enum"] = sorted(task_types)
    task["allOf"] = [
        _params_rule(name, contract, defs) for name, contract in sorted(task_types.items())
    ]
    return schema


def _params_rule(name: str, contract: TaskTypeContract, defs: dict[str, Any]) -> dict[str, Any]:
    """``if type == name then params follow its schema``; the type's own definitions are
    prefixed with its name, as two types may each have a model of the same name."""
    prefix = f"{name}."
    params = contract.params.model_json_schema(ref_template=f"#/$defs/{prefix}{{model}}")
    for def_name, definition in params.pop("$defs", {}).items():
        defs[prefix + def_name] = _accepting_references(definition)
    defs[prefix + "params"] = _accepting_references(params)
    return {
        "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
        "then": {"properties": {"params": {"$ref": f"#/$defs/{prefix}params"}}},
    }


def _accepting_references(schema: Any) -> Any:
    """``schema`` where every value a spec gives (a property, a list item, a map's value) may
    also be a reference, as validation resolves them later. Conditions (``if``) are kept as
    they are: a reference must not make every branch apply."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in ("properties", "patternProperties"):
        if isinstance(schema.get(key), dict):
            out[key] = {name: _or_reference(value) for name, value in schema[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            out[key] = _or_reference(schema[key])
    for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
        if isinstance(schema.get(key), list):
            wrap = _or_reference if key == "prefixItems" else _accepting_references
            out[key] = [wrap(item) for item in schema[key]]
    for key in ("then", "else"):
        if isinstance(schema.get(key), dict):
            out[key] = _accepting_references(schema[key])
    return out


def _or_reference(schema: Any) -> dict[str, Any]:
    return {"anyOf": [_accepting_references(schema), _REFERENCE]}
