"""Validation of a workflow spec: a pure function that reports every error with its path.

Paths read like the document: ``tasks[2].params.seconds``, ``tasks[1].needs[0]``,
``schedule.cron``; the empty path is the whole document. Checks that need the server (a
dataset or code bundle exists) are not made here; they are returned as ``skipped``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from croniter import croniter  # type: ignore[import-untyped]
from pydantic import BaseModel, ValidationError

from armillary.contracts.suggestions import did_you_mean
from armillary.contracts.tasks import TASK_TYPES, TaskTypeContract

from . import references
from .schema import IN_PROCESS, IN_PROCESS_TYPES, TaskSpec, WorkflowSpec


class ErrorKind(StrEnum):
    SCHEMA = "schema"  # the document's own shape
    UNKNOWN_TASK_TYPE = "unknown_task_type"
    INVALID_PARAMS = "invalid_params"
    INVALID_OUTPUTS = "invalid_outputs"
    DUPLICATE_TASK = "duplicate_task"
    MISSING_DEPENDENCY = "missing_dependency"
    CYCLE = "cycle"
    INVALID_CRON = "invalid_cron"
    MALFORMED_REFERENCE = "malformed_reference"
    UNKNOWN_OUTPUT = "unknown_output"
    UNKNOWN_PARAMETER = "unknown_parameter"
    INPUT_NOT_UPSTREAM = "input_not_upstream"
    # `isolation: in_process` on a type that must run in a sandbox (ADR 0047).
    ISOLATION_NOT_ALLOWED = "isolation_not_allowed"
    # Made by the server only: an object a task names does not exist in the project.
    MISSING_OBJECT = "missing_object"


class SpecError(BaseModel):
    path: str
    message: str
    kind: ErrorKind


class SkippedCheck(BaseModel):
    path: str
    check: str


@dataclass
class ValidationResult:
    errors: list[SpecError] = field(default_factory=list)
    skipped: list[SkippedCheck] = field(default_factory=list)
    spec: WorkflowSpec | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, path: str, message: str, kind: ErrorKind) -> None:
        self.errors.append(SpecError(path=path, message=message, kind=kind))


def validate_spec(
    document: Any, task_types: Mapping[str, TaskTypeContract] = TASK_TYPES
) -> ValidationResult:
    """Every error of ``document`` (a parsed YAML or JSON spec); ``spec`` is set when none."""
    result = ValidationResult()
    try:
        parsed: WorkflowSpec | None = WorkflowSpec.model_validate(document)
    except ValidationError as exc:
        parsed = None
        for error in exc.errors():
            result.add(
                join_path("", _loc_path(document, error["loc"])),
                error["msg"],
                ErrorKind.SCHEMA,
            )
    # The semantic checks run on whatever parts are well formed, so that one bad field does
    # not hide the other errors.
    raw = document if isinstance(document, dict) else {}
    tasks = _well_formed_tasks(raw.get("tasks"))
    # Tasks whose own fields are wrong still exist: naming them is no further error.
    declared = _declared_names(raw.get("tasks"))
    parameters = raw.get("parameters") if isinstance(raw.get("parameters"), dict) else {}
    _check_cron(raw.get("schedule"), result)
    names = _check_names(tasks, result)
    graph = _check_needs(tasks, names, declared, result)
    _check_cycles(tasks, graph, result)
    for index, task in tasks:
        _check_isolation(index, task, result)
        contract = task_types.get(task.type)
        if contract is None:
            known = ", ".join(sorted(task_types))
            hint = did_you_mean(task.type, task_types)
            result.add(
                f"tasks[{index}].type",
                f"unknown task type {task.type!r}{hint}; known: {known}",
                ErrorKind.UNKNOWN_TASK_TYPE,
            )
            continue
        _check_params(index, task, contract, result)
        _check_declared_outputs(index, task, contract, result)
        for param, check in contract.server_checks.items():
            if param in task.params and references.parse(task.params[param]) is None:
                result.skipped.append(
                    SkippedCheck(path=f"tasks[{index}].params.{param}", check=check)
                )
    _check_references(tasks, names, declared, graph, parameters or {}, task_types, result)
    if result.ok:
        result.spec = parsed
    return result


def _check_isolation(index: int, task: TaskSpec, result: ValidationResult) -> None:
    """Only the trusted built-in types may skip the sandbox; user code never does."""
    if task.isolation == IN_PROCESS and task.type not in IN_PROCESS_TYPES:
        allowed = ", ".join(sorted(IN_PROCESS_TYPES))
        result.add(
            f"tasks[{index}].isolation",
            f"task {task.name!r} of type {task.type!r} cannot run in_process: only the "
            f"built-in types {allowed} may skip the sandbox (ADR 0047)",
            ErrorKind.ISOLATION_NOT_ALLOWED,
        )


def join_path(base: str, part: str) -> str:
    if not part:
        return base
    if not base or part.startswith("["):
        return base + part if base else part.removeprefix(".")
    return f"{base}.{part.removeprefix('.')}"


def _loc_path(value: Any, loc: Sequence[int | str]) -> str:
    """A pydantic error location as a path, following the document as far as it goes (a
    union's member tags after a scalar are not part of the document)."""
    path = ""
    current: Any = value
    for part in loc:
        if isinstance(part, int) and isinstance(current, list):
            path += f"[{part}]"
            current = current[part] if 0 <= part < len(current) else None
        elif isinstance(current, dict):
            path += f".{part}"
            current = current.get(part)
        elif current is None and isinstance(part, str):
            path += f".{part}"  # a missing field
        else:
            break
    return path.removeprefix(".")


def _inside_reference(value: Any, loc: Sequence[int | str]) -> bool:
    """Whether the value at ``loc`` (or one holding it) is a reference: a reference is
    accepted wherever any value is, as its value is known only when the job runs."""
    current = value
    for part in loc:
        if references.looks_like_reference(current):
            return True
        found, current = _child(current, part)
        if not found:
            break
    return references.looks_like_reference(current)


def _child(value: Any, part: int | str) -> tuple[bool, Any]:
    if isinstance(value, dict) and part in value:
        return True, value[part]
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        return True, value[part]
    return False, None


def _well_formed_tasks(raw_tasks: Any) -> list[tuple[int, TaskSpec]]:
    if not isinstance(raw_tasks, list):
        return []
    tasks = []
    for index, raw in enumerate(raw_tasks):
        try:
            tasks.append((index, TaskSpec.model_validate(raw)))
        except ValidationError:
            continue  # reported by the whole-document check
    return tasks


def _declared_names(raw_tasks: Any) -> set[str]:
    if not isinstance(raw_tasks, list):
        return set()
    return {
        raw["name"]
        for raw in raw_tasks
        if isinstance(raw, dict) and isinstance(raw.get("name"), str)
    }


def _check_cron(schedule: Any, result: ValidationResult) -> None:
    if not isinstance(schedule, dict) or not isinstance(schedule.get("cron"), str):
        return
    expression = schedule["cron"]
    if not croniter.is_valid(expression):
        result.add(
            "schedule.cron", f"not a valid cron expression: {expression!r}", ErrorKind.INVALID_CRON
        )


def _check_names(tasks: list[tuple[int, TaskSpec]], result: ValidationResult) -> dict[str, int]:
    """Task name -> index of its first definition."""
    names: dict[str, int] = {}
    for index, task in tasks:
        if task.name in names:
            result.add(
                f"tasks[{index}].name",
                f"duplicate task name {task.name!r} (first defined at tasks[{names[task.name]}])",
                ErrorKind.DUPLICATE_TASK,
            )
            continue
        names[task.name] = index
    return names


def _check_needs(
    tasks: list[tuple[int, TaskSpec]],
    names: dict[str, int],
    declared: set[str],
    result: ValidationResult,
) -> dict[str, list[tuple[str, int]]]:
    """Task name -> (needed task, position in ``needs``) for needs that name a task."""
    graph: dict[str, list[tuple[str, int]]] = {}
    for index, task in tasks:
        if names.get(task.name) != index:
            continue  # a duplicate: its edges would be ambiguous
        edges = graph.setdefault(task.name, [])
        for position, needed in enumerate(task.needs):
            if needed not in names:
                if needed in declared:
                    continue  # a malformed task, reported already
                hint = did_you_mean(needed, declared)
                result.add(
                    f"tasks[{index}].needs[{position}]",
                    f"needs {needed!r}, which is not a task of this workflow{hint}",
                    ErrorKind.MISSING_DEPENDENCY,
                )
                continue
            edges.append((needed, position))
    return graph


def _check_cycles(
    tasks: list[tuple[int, TaskSpec]],
    graph: dict[str, list[tuple[str, int]]],
    result: ValidationResult,
) -> None:
    index_of = {task.name: index for index, task in reversed(tasks)}
    done: set[str] = set()
    on_stack: list[str] = []
    reported: set[frozenset[str]] = set()

    def visit(name: str) -> None:
        on_stack.append(name)
        for needed, position in graph.get(name, []):
            if needed in on_stack:
                cycle = [*on_stack[on_stack.index(needed) :], needed]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    result.add(
                        f"tasks[{index_of[name]}].needs[{position}]",
                        "tasks form a cycle: " + " -> ".join(cycle),
                        ErrorKind.CYCLE,
                    )
            elif needed not in done:
                visit(needed)
        on_stack.pop()
        done.add(name)

    for _index, task in tasks:
        if task.name not in done and task.name in graph:
            visit(task.name)


def _check_params(
    index: int, task: TaskSpec, contract: TaskTypeContract, result: ValidationResult
) -> None:
    try:
        contract.params.model_validate(task.params)
    except ValidationError as exc:
        for error in exc.errors():
            if _inside_reference(task.params, error["loc"]):
                continue
            result.add(
                join_path(f"tasks[{index}].params", _loc_path(task.params, error["loc"])),
                error["msg"],
                ErrorKind.INVALID_PARAMS,
            )


def _check_declared_outputs(
    index: int, task: TaskSpec, contract: TaskTypeContract, result: ValidationResult
) -> None:
    if task.outputs and not contract.dynamic_outputs:
        result.add(
            f"tasks[{index}].outputs",
            f"task type {contract.name!r} declares its own outputs "
            f"({', '.join(contract.outputs.model_fields) or 'none'}); remove `outputs`",
            ErrorKind.INVALID_OUTPUTS,
        )
    seen: set[str] = set()
    for position, name in enumerate(task.outputs):
        if name in seen:
            result.add(
                f"tasks[{index}].outputs[{position}]",
                f"output {name!r} is declared twice",
                ErrorKind.INVALID_OUTPUTS,
            )
        seen.add(name)


def _upstream(name: str, graph: dict[str, list[tuple[str, int]]]) -> set[str]:
    found: set[str] = set()
    pending = [needed for needed, _ in graph.get(name, [])]
    while pending:
        current = pending.pop()
        if current not in found:
            found.add(current)
            pending.extend(needed for needed, _ in graph.get(current, []))
    return found


def _outputs_of(task: TaskSpec, task_types: Mapping[str, TaskTypeContract]) -> set[str] | None:
    """The output names a task produces; None when its type is unknown (already reported)."""
    contract = task_types.get(task.type)
    if contract is None:
        return None
    if contract.dynamic_outputs:
        return set(task.outputs)
    return set(contract.outputs.model_fields)


def _check_references(
    tasks: list[tuple[int, TaskSpec]],
    names: dict[str, int],
    declared: set[str],
    graph: dict[str, list[tuple[str, int]]],
    parameters: dict[str, Any],
    task_types: Mapping[str, TaskTypeContract],
    result: ValidationResult,
) -> None:
    by_name = {task.name: task for index, task in tasks if names.get(task.name) == index}
    for index, task in tasks:
        upstream = _upstream(task.name, graph) if names.get(task.name) == index else set()
        _check_inputs(index, task, upstream, task_types, result)
        for path, reference in references.find(task.params, f"tasks[{index}].params"):
            if isinstance(reference, references.MalformedRef):
                result.add(
                    path,
                    f"{reference.text!r} is not a reference: write "
                    "${tasks.<task>.outputs.<key>} or ${params.<name>}",
                    ErrorKind.MALFORMED_REFERENCE,
                )
            elif isinstance(reference, references.ParamRef):
                if reference.name not in parameters:
                    result.add(
                        path,
                        f"refers to parameter {reference.name!r}, which the workflow does not "
                        "define in `parameters`",
                        ErrorKind.UNKNOWN_PARAMETER,
                    )
            elif reference.task in by_name or reference.task not in declared:
                _check_output_reference(
                    path, task, reference, by_name, upstream, task_types, result
                )


def _check_inputs(
    index: int,
    task: TaskSpec,
    upstream: set[str],
    task_types: Mapping[str, TaskTypeContract],
    result: ValidationResult,
) -> None:
    """A data task reads the tables of tasks it names: each must run before it."""
    contract = task_types.get(task.type)
    if contract is None:
        return
    for param in contract.input_params:
        value = task.params.get(param)
        named = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        for position, name in enumerate(named):
            if not isinstance(name, str) or references.parse(name) is not None:
                continue
            if name not in upstream:
                suffix = "" if isinstance(value, str) else f"[{position}]"
                result.add(
                    f"tasks[{index}].params.{param}{suffix}",
                    f"reads the table of task {name!r}, which is not upstream of {task.name!r}: "
                    "name a task it `needs` (directly or through another task)",
                    ErrorKind.INPUT_NOT_UPSTREAM,
                )


def _check_output_reference(
    path: str,
    task: TaskSpec,
    reference: references.OutputRef,
    by_name: dict[str, TaskSpec],
    upstream: set[str],
    task_types: Mapping[str, TaskTypeContract],
    result: ValidationResult,
) -> None:
    source = by_name.get(reference.task)
    if source is None:
        message = (
            f"refers to task {reference.task!r}, which is not a task of this workflow"
            + did_you_mean(reference.task, by_name)
        )
    elif reference.task not in upstream:
        message = (
            f"refers to task {reference.task!r}, which is not upstream of {task.name!r}: "
            "add it to `needs` (directly or through another task)"
        )
    else:
        outputs = _outputs_of(source, task_types)
        if outputs is None or reference.key in outputs:
            return
        listed = ", ".join(sorted(outputs)) or "none"
        message = f"task {reference.task!r} has no output {reference.key!r} (its outputs: {listed})"
    result.add(path, message, ErrorKind.UNKNOWN_OUTPUT)
