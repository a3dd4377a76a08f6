"""The executor interface: what a worker hands an executor and what it gets back.

An executor runs one *attempt* of a task (a task type implementation with resolved params and
the outputs of its upstream tasks) in isolation, with resource limits, streaming its log, and
reports how it ended. :class:`~armillary.workflows.execution.local.LocalExecutor` is the
implementation for the worker's own machine (bubblewrap sandboxes, ADR 0011).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """Limits of one attempt; ``None`` means unlimited."""

    # The sandbox's cgroup memory limit (where there is one) and RLIMIT_DATA inside it.
    memory_bytes: int | None = 2 * 1024**3
    cpu_seconds: int | None = None  # RLIMIT_CPU
    wall_seconds: float | None = None  # the task's timeout; the parent kills at it


@dataclass(frozen=True, slots=True)
class AttemptSpec:
    """Everything an executor needs to run one attempt of a task."""

    attempt_id: str  # uuid text, unique per attempt
    job_id: str
    project_id: str
    task: str  # task name in the workflow
    task_type: str  # e.g. "python", "noop"
    params: dict[str, Any]  # already resolved (references replaced)
    inputs: dict[str, dict[str, Any]]  # outputs of the upstream tasks, by task name
    declared_outputs: list[str]  # output names the spec declares (may be empty)
    limits: ResourceLimits
    api_url: str  # the platform's API base URL for the task to call
    # Short-lived job-scoped token: held by the worker's API proxy for the sandbox, which adds
    # it to each request; it never enters the sandbox (ADR 0011).
    job_token: str = field(repr=False)
    bundle_dir: str | None = None  # an extracted code bundle, prepared by the worker
    # The W3C traceparent of the child's span (ADR 0031): it reaches the child in the spec,
    # over the control socket, and the task's API calls send it on.
    traceparent: str | None = None


class Outcome(StrEnum):
    """How an attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    MEMORY_EXCEEDED = "memory_exceeded"
    CANCELLED = "cancelled"
    CRASHED = "crashed"


@dataclass
class AttemptResult:
    """The end of an attempt. ``artifacts`` stay valid until :meth:`cleanup`."""

    outcome: Outcome
    outputs: dict[str, Any] | None
    error: str | None
    exit_code: int | None
    artifacts: dict[str, Path]
    workdir: Path
    # What a failed attempt said about itself (a quality gate's report), if anything.
    report: dict[str, Any] | None = None

    def cleanup(self) -> None:
        """Remove the attempt's private working directory."""
        shutil.rmtree(self.workdir, ignore_errors=True)


LogSink = Callable[[bytes], Awaitable[None]]


class Executor(Protocol):
    """Runs attempts; several :meth:`run` calls may be in flight at once."""

    async def start(self) -> None: ...

    async def run(
        self,
        spec: AttemptSpec,
        *,
        on_log: LogSink | None = None,
        cancel: asyncio.Event | None = None,
    ) -> AttemptResult: ...

    async def close(self) -> None: ...
