"""The shape of a task type (its contract) and of what a running task knows (its context).

Kept apart from the registry of types in :mod:`armillary.contracts.tasks`, so that the modules
declaring types import this one and the registry imports them, with no cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel


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
    # Actions this type's job token holds beyond every job token's own (kit.authz
    # JOB_TOKEN_ACTIONS), e.g. ``model:alias`` for a type that points aliases.
    job_actions: tuple[str, ...] = ()
    # Work this type asks its worker to do (``armillary.worker_calls`` entry points), for what
    # no sandbox may hold, e.g. cloud credentials: a SageMaker job is started by the worker.
    worker_calls: tuple[str, ...] = ()
    # Parameters that name the project's datasets a task reads or writes (a name, or a list
    # of names). A job token may touch only the datasets its job's tasks name (ADR 0014).
    reads_datasets: tuple[str, ...] = ()
    writes_datasets: tuple[str, ...] = ()


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
    # The W3C traceparent of the attempt's span (ADR 0031), sent on API calls.
    traceparent: str | None = None

    def token(self) -> str:
        """The short-lived token scoped to this job."""
        return self._token

    def api_headers(self) -> dict[str, str]:
        """Headers that authenticate a call to the platform API as this job."""
        headers = {"Authorization": f"Bearer {self._token}"}
        if self.traceparent:
            headers["traceparent"] = self.traceparent
        return headers


@dataclass(frozen=True)
class WorkerCall:
    """One request a task made of its worker (``TaskTypeContract.worker_calls``).

    ``params`` are the attempt's own, from the worker's copy of its spec (never the task's
    word); ``upload`` is the request body, saved in ``context.workdir``, a directory of the
    worker's that no sandbox sees. ``context`` carries the job token, so the implementation
    can call the API as the job. ``stop`` is set when the attempt ends: a long call (a remote
    training job) stops its remote work and returns.
    """

    params: Mapping[str, Any]
    context: TaskContext
    upload: Path
    stop: threading.Event


@dataclass(frozen=True)
class WorkerCallResult:
    """What the task gets back: ``file`` as the response body, ``info`` as JSON beside it."""

    file: Path
    info: Mapping[str, Any]


class WorkerCallFailed(Exception):
    """The call could not be done; the message is for the task's log and the job's error."""


WorkerCallHandler = Callable[[WorkerCall], WorkerCallResult]
