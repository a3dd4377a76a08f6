"""In the sandbox: run the task type implementation and check what it returns.

The result is one JSON document: ``{"ok": true, "outputs": {...}}`` or
``{"ok": false, "error": "...", "kind": "error" | "memory"}``. Anything the task prints goes
to the attempt's log.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from armillary.contracts.tasks import TASK_TYPES, TaskContext, TaskTypeContract

from . import sandbox
from .protocol import ResourceLimits

ENTRY_POINT_GROUP = "armillary.task_types"
TOKEN_PLACEHOLDER = "added-by-the-platform-proxy"  # noqa: S105 - not a secret: a stand-in
MAX_OUTPUT_BYTES = 1024 * 1024  # of JSON: outputs travel through the API and the database

TaskFunction = Callable[[dict[str, Any], dict[str, dict[str, Any]], TaskContext], Any]

# Filled by the launcher's preload, before the attempt arrives: scanning the installed
# distributions' entry points takes milliseconds the attempt should not spend.
IMPLEMENTATIONS: dict[str, TaskFunction] = {}


class OutputError(ValueError):
    """The implementation returned something that is not valid outputs."""


def check_outputs(
    outputs: object,
    contract: TaskTypeContract,
    declared: Sequence[str],
    *,
    max_bytes: int = MAX_OUTPUT_BYTES,
) -> dict[str, Any]:
    """The outputs as JSON-compatible data, or :class:`OutputError` saying what is wrong."""
    if not isinstance(outputs, dict):
        raise OutputError(f"the task must return a dict of outputs, not {type(outputs).__name__}")
    bad_keys = [repr(key) for key in outputs if not isinstance(key, str)]
    if bad_keys:
        raise OutputError(f"output names must be strings: {', '.join(bad_keys)}")
    if not contract.dynamic_outputs:
        try:
            outputs = contract.outputs.model_validate(outputs).model_dump(mode="json")
        except ValidationError as exc:
            raise OutputError(f"outputs do not match the {contract.name} type: {exc}") from None
    try:
        encoded = json.dumps(outputs, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise OutputError(f"outputs are not JSON-serialisable: {exc}") from None
    if len(encoded.encode()) > max_bytes:
        raise OutputError(
            f"outputs are {len(encoded.encode())} bytes of JSON, more than the limit of "
            f"{max_bytes}; write large results to the artifacts directory instead"
        )
    if contract.dynamic_outputs:
        missing = [name for name in declared if name not in outputs]
        if missing:
            raise OutputError(f"missing declared outputs: {', '.join(missing)}")
    result: dict[str, Any] = json.loads(encoded)
    return result


def load_implementation(task_type: str) -> TaskFunction:
    """The registered implementation of ``task_type`` (usually imported by the preload)."""
    if task_type in IMPLEMENTATIONS:
        return IMPLEMENTATIONS[task_type]
    for entry_point in entry_points(group=ENTRY_POINT_GROUP, name=task_type):
        function: TaskFunction = entry_point.load()
        return function
    raise LookupError(f"no implementation is installed for task type {task_type!r}")


def describe_error(exc: BaseException, user_files: Sequence[str]) -> str:
    """One readable message: the exception, and the frames of user code when there are any.

    Only frames from files in ``user_files`` (prefixes) are shown, so no platform path leaks.
    """
    if isinstance(exc, SyntaxError):  # its own format shows the offending line
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    else:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename.startswith(tuple(user_files))
    ]
    if not frames:
        return message
    lines = "".join(traceback.format_list(frames[-5:]))
    return f"{message}\n{lines}".rstrip()


def _user_files(spec: dict[str, Any]) -> list[str]:
    files = [f"<task:{spec['task']}>"]
    if spec.get("bundle_dir"):
        files.append(str(Path(spec["bundle_dir"])) + os.sep)
    return files


def _attempt(
    spec: dict[str, Any], workdir: sandbox.Workdir, limits: ResourceLimits
) -> dict[str, Any]:
    contract = TASK_TYPES.get(spec["task_type"])
    if contract is None:
        return _failure(f"unknown task type {spec['task_type']!r}")
    try:
        params = contract.params.model_validate(spec["params"]).model_dump(mode="json")
    except ValidationError as exc:
        return _failure(f"invalid params for the {contract.name} type: {exc}")
    context = TaskContext(
        job_id=spec["job_id"],
        project_id=spec["project_id"],
        task=spec["task"],
        attempt_id=spec["attempt_id"],
        workdir=workdir.root,
        artifacts_dir=workdir.artifacts,
        api_url=spec["api_url"],
        # The worker's proxy puts the real token on each API request: the task holds none,
        # only a placeholder that keeps clients' "Authorization: Bearer ..." well-formed.
        _token=spec.get("job_token") or TOKEN_PLACEHOLDER,
        bundle_dir=Path(spec["bundle_dir"]) if spec.get("bundle_dir") else None,
        traceparent=spec.get("traceparent"),
    )
    try:
        function = load_implementation(contract.name)
        outputs = function(params, spec["inputs"], context)
    except MemoryError:
        limit = limits.memory_bytes
        where = f"its memory limit of {limit // 1024**2} MiB" if limit else "the memory available"
        print(f"Task failed: MemoryError: it needed more than {where}", file=sys.stderr)
        return _failure(f"MemoryError: the task needed more than {where}", kind="memory")
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from user code too
        error = describe_error(exc, _user_files(spec))
        print(f"Task failed: {error}", file=sys.stderr)
        failure = _failure(error)
        # A failure may explain itself in a report (a quality gate's checks): keep it.
        report = getattr(exc, "report", None)
        if isinstance(report, dict):
            try:
                encoded = json.dumps(report, allow_nan=False, default=str)
            except (TypeError, ValueError) as exc:
                encoded = ""
                print(f"Report dropped: not JSON ({exc})", file=sys.stderr)
            if len(encoded) > MAX_OUTPUT_BYTES:
                print("Report dropped: larger than the output limit", file=sys.stderr)
            elif encoded:
                failure["report"] = json.loads(encoded)
        return failure
    try:
        return {"ok": True, "outputs": check_outputs(outputs, contract, spec["declared_outputs"])}
    except OutputError as exc:
        return _failure(str(exc))


def _failure(error: str, kind: str = "error") -> dict[str, Any]:
    return {"ok": False, "error": error, "kind": kind}


def run_in_sandbox(
    spec: dict[str, Any], workdir: sandbox.Workdir, limits: ResourceLimits
) -> dict[str, Any]:
    """Run the attempt ``spec`` in this process (inside its sandbox); returns the result."""
    return _attempt(spec, workdir, limits)


def failure(error: str) -> dict[str, Any]:
    """A result saying the attempt failed with ``error``."""
    return _failure(error)
