"""Attempts of trusted built-in types that run inside the worker's process (ADR 0047).

A spec may opt a task out of the sandbox with ``isolation: in_process``; validation allows it
for :data:`~armillary.workflows.specs.schema.IN_PROCESS_TYPES` only, and this module checks
again when the attempt runs (a spec stored before a rule changed must not get user code into
the worker). The implementations come from a fixed table here, not from the entry points an
installed distribution could add to: nothing here calls the API, so no job token is issued.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import ValidationError

from armillary.contracts.tasks import TASK_TYPES, TaskContext

from .. import tasks
from ..specs.schema import IN_PROCESS, IN_PROCESS_TYPES
from .child import OutputError, TaskFunction, check_outputs
from .protocol import AttemptResult, AttemptSpec, LogSink, Outcome

IMPLEMENTATIONS: dict[str, TaskFunction] = {"noop": tasks.run_noop}
LOG_LINE = (
    b"[armillary] running in the worker's process, without a sandbox (isolation: in_process)\n"
)


def allowed(isolation: str, task_type: str) -> bool:
    """Whether an attempt may run in-process: the spec asked, and the type is trusted."""
    return isolation == IN_PROCESS and task_type in IN_PROCESS_TYPES & IMPLEMENTATIONS.keys()


async def run(
    spec: AttemptSpec,
    workdir: Path,
    *,
    on_log: LogSink | None = None,
    cancel: asyncio.Event | None = None,
) -> AttemptResult:
    """The attempt's result, as the sandboxed path would give it. ``workdir`` is never
    created: these types write no files."""
    if not allowed(IN_PROCESS, spec.task_type):
        raise ValueError(f"task type {spec.task_type!r} never runs in the worker's process")
    if on_log is not None:
        await on_log(LOG_LINE)
    if cancel is not None and cancel.is_set():
        return AttemptResult(Outcome.CANCELLED, None, "cancelled", None, {}, workdir)
    contract = TASK_TYPES[spec.task_type]
    try:
        params = contract.params.model_validate(spec.params).model_dump(mode="json")
    except ValidationError as exc:
        return await _failed(f"invalid params for the {contract.name} type: {exc}", workdir, on_log)
    context = TaskContext(
        job_id=spec.job_id,
        project_id=spec.project_id,
        task=spec.task,
        attempt_id=spec.attempt_id,
        workdir=workdir,
        artifacts_dir=workdir / "artifacts",
        api_url=spec.api_url,
        traceparent=spec.traceparent,
    )
    try:
        outputs = IMPLEMENTATIONS[spec.task_type](params, spec.inputs, context)
    except Exception as exc:  # a built-in type's failure fails the attempt, not the worker
        return await _failed(f"{type(exc).__name__}: {exc}", workdir, on_log)
    try:
        checked = check_outputs(outputs, contract, spec.declared_outputs)
    except OutputError as exc:
        return await _failed(str(exc), workdir, on_log)
    return AttemptResult(Outcome.SUCCEEDED, checked, None, None, {}, workdir)


async def _failed(error: str, workdir: Path, on_log: LogSink | None) -> AttemptResult:
    if on_log is not None:
        await on_log(f"Task failed: {error}\n".encode())
    return AttemptResult(Outcome.FAILED, None, error, None, {}, workdir)
