"""References inside task parameters, in a fixed syntax (no template engine, no evaluation).

A parameter value that is exactly one of these strings is replaced by the engine:

- ``${tasks.<task>.outputs.<key>}``: output ``key`` of task ``task``, which must be upstream of
  the referring task (reachable through ``needs``);
- ``${params.<name>}``: the workflow parameter ``name``.

Only whole values are references: ``"s3://${params.bucket}"`` is a plain string. A whole value
of the form ``${...}`` that matches neither shape is an error rather than a literal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_OUTPUT = re.compile(
    r"^\$\{tasks\.([a-z][a-z0-9_-]{0,63})\.outputs\.([A-Za-z_][A-Za-z0-9_]{0,63})\}$"
)
_PARAM = re.compile(r"^\$\{params\.([A-Za-z_][A-Za-z0-9_]{0,63})\}$")


@dataclass(frozen=True, slots=True)
class OutputRef:
    task: str
    key: str


@dataclass(frozen=True, slots=True)
class ParamRef:
    name: str


@dataclass(frozen=True, slots=True)
class MalformedRef:
    text: str


Reference = OutputRef | ParamRef | MalformedRef


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a reference, accepted wherever a parameter value is."""
    return {
        "type": "string",
        "anyOf": [{"pattern": _OUTPUT.pattern}, {"pattern": _PARAM.pattern}],
        "description": "A reference: ${tasks.<task>.outputs.<key>} or ${params.<name>}",
    }


def looks_like_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def parse(value: Any) -> Reference | None:
    """The reference a parameter value is, or None for an ordinary value."""
    if not looks_like_reference(value):
        return None
    if match := _OUTPUT.match(value):
        return OutputRef(match.group(1), match.group(2))
    if match := _PARAM.match(value):
        return ParamRef(match.group(1))
    return MalformedRef(value)


def find(value: Any, path: str) -> Iterator[tuple[str, Reference]]:
    """Every reference inside ``value`` (nested dicts and lists), with its path."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from find(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from find(item, f"{path}[{index}]")
    else:
        reference = parse(value)
        if reference is not None:
            yield path, reference


class UnresolvedReference(LookupError):
    """A reference whose value is not there when the task is queued."""


def resolve(value: Any, outputs: dict[str, dict[str, Any]], params: dict[str, Any]) -> Any:
    """``value`` with every reference replaced by the upstream output or the job parameter it
    names (nested dicts and lists too). Raises :class:`UnresolvedReference` when one is
    missing: validation made sure each names something, but a task may not produce it."""
    if isinstance(value, dict):
        return {key: resolve(item, outputs, params) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, outputs, params) for item in value]
    reference = parse(value)
    if reference is None:
        return value
    if isinstance(reference, OutputRef):
        produced = outputs.get(reference.task) or {}
        if reference.key not in produced:
            raise UnresolvedReference(f"task {reference.task} produced no output {reference.key!r}")
        return produced[reference.key]
    if isinstance(reference, ParamRef):
        if reference.name not in params:
            raise UnresolvedReference(f"the job has no parameter {reference.name!r}")
        return params[reference.name]
    raise UnresolvedReference(f"malformed reference {reference.text!r}")
